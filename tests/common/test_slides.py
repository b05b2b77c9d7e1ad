"""Local copies of slide files: the directory store's own file in place; for S3 a bounded
cache under the data directory, least recently used copies evicted first."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from common.capabilities import StoredFile
from common.slides import LocalSlideFiles


def stored(store: Any, name: str, data: bytes) -> StoredFile:
    file_id = uuid.uuid4()
    key = f"users/anonymous/files/{file_id}/{name}"
    store.put_bytes(key, data)
    return StoredFile(id=file_id, owner_id=None, name=name, key=key, size=len(data))


def test_directory_store_files_are_read_in_place(dir_store: Any, tmp_path: Path) -> None:
    local = LocalSlideFiles(dir_store, tmp_path / "cache", max_bytes=0)
    slide = stored(dir_store, "a.svs", b"x" * 100)
    path = local.path(slide)
    assert path.read_bytes() == b"x" * 100 and (tmp_path / "cache") not in path.parents
    assert local.downloads == 0


def test_s3_copies_are_cached_within_the_cap(s3_store: Any, tmp_path: Path) -> None:
    local = LocalSlideFiles(s3_store, tmp_path / "cache", max_bytes=2500)
    a, b, c = (stored(s3_store, f"{n}.svs", n.encode() * 1000) for n in "abc")
    path_a = local.path(a)
    assert path_a.read_bytes() == b"a" * 1000 and path_a.name == "a.svs"
    assert local.path(a) == path_a and local.downloads == 1  # reused, not fetched again
    local.path(b)
    os.utime(path_a, (0, 0))  # a is now the least recently used
    local.path(c)  # 3000 bytes > 2500: the oldest copy goes
    assert not path_a.exists() and local.path(b).exists()
    assert local.downloads == 3
    assert local.path(a).read_bytes() == b"a" * 1000 and local.downloads == 4
    local.evict(a.id)
    assert not (tmp_path / "cache" / str(a.id)).exists()
