"""A stored object where a reader can use it: the directory store's own file when there
is one (read it, never write next to it), else a remote read of the object."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def open_stored(objects: Any, key: str, size: int) -> Iterator[IO[bytes]]:
    """A seekable binary stream over a stored object: the file itself in the directory
    store, ranged reads against S3 (only the bytes looked at are fetched)."""
    local = objects.local_path(key)
    if local is not None:
        with open(local, "rb") as handle:
            yield handle
        return
    from common.objects.ranged import RangedReader

    reader: IO[bytes] = RangedReader(objects, key, size=size)  # type: ignore[assignment]
    try:
        yield reader
    finally:
        reader.close()


@contextmanager
def stored_path(objects: Any, key: str, name: str) -> Iterator[Path]:
    """A stored object as a real path (readers that need one): the object's own file on
    the directory store, else a temporary copy named `name`, removed afterwards."""
    local = objects.local_path(key)
    if local is not None:
        yield local
        return
    tmp = Path(tempfile.mkdtemp(prefix="aperture-"))
    try:
        path = tmp / Path(name).name
        with open(path, "wb") as out:
            for chunk in objects.iter_bytes(key):
                out.write(chunk)
        yield path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
