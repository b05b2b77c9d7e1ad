"""Filesystem pieces of the directory backend: atomic writes and sidecar metadata.

Writes go to a temporary file, are fsynced, then `os.replace`d into place, so a
reader sees the old object or the new one, never a torn one. Each file's ETag and
content type live in a small JSON sidecar that records the size, mtime and inode of
the file it describes; a sidecar that no longer matches its file (a crash between
the two renames, a racing writer, a file dropped in by hand) is ignored and the MD5
is recomputed, so metadata can be stale only in content type, never wrong in ETag.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import mimetypes
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from common.errors import Conflict
from common.objects.base import CHUNK_SIZE

# Spooling (writing a stream to a temp file, hashing it on the way) has its own module.
from common.objects.spooling import Spooled as Spooled
from common.objects.spooling import spool as spool


@dataclass(frozen=True)
class Sidecar:
    etag: str
    size: int
    mtime_ns: int
    ino: int
    content_type: str | None = None

    def describes(self, st: os.stat_result) -> bool:
        return (self.size, self.mtime_ns, self.ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def publish(
    tmp: Path, dest: Path, *, what: str, make_parents: bool = True, durable: bool = True
) -> None:
    """Atomically move `tmp` to `dest`, creating parent directories if asked to; the
    rename is made durable (the directory fsynced) unless `durable` is False.

    Another thread deleting the last object under a directory prunes it, which can
    race with our `mkdir`; replacing is retried a few times for that reason.
    """
    for attempt in range(5 if make_parents else 1):
        try:
            if make_parents:
                dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
            break
        except (NotADirectoryError, FileExistsError, IsADirectoryError):
            discard(tmp)
            raise Conflict(
                f"{what}: the directory store cannot hold both a key and "
                "other keys under it as a prefix"
            ) from None
        except FileNotFoundError:
            if attempt == 4 or not make_parents:
                discard(tmp)
                raise
    if durable:
        fsync_dir(dest.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename durable (best effort: not every filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def sweep_stale(directory: Path, *, older_than_s: float) -> None:
    """Remove files and directory trees in `directory` not modified for `older_than_s`
    (crash leftovers: temp files, staging directories)."""
    cutoff = time.time() - older_than_s
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)


def remove_oldest(
    files: Iterable[tuple[float, int, str | Path]], *, down_to: int, keep: Path | None = None
) -> int:
    """Remove `(mtime, size, path)` files, oldest first, until the rest sum to at most
    `down_to` bytes (never `keep`); the bytes removed. A file that cannot be removed is
    skipped; one already gone counts as removed. For caches kept to a byte budget."""
    listed = sorted(files)
    excess = sum(size for _, size, _ in listed) - down_to
    removed = 0
    for _, size, path in listed:
        if removed >= excess:
            break
        if keep is not None and Path(path) == keep:
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            continue
        removed += size
    return removed


def syncfs(path: Path) -> None:
    """Flush every dirty file and directory of the filesystem holding `path` to disk.

    For many small files written without fsync (a Deep Zoom pyramid of tens of
    thousands of tiles) this is one journal commit instead of one per file, and once it
    returns every write and rename made before the call is durable. Linux's
    `syncfs(2)`; elsewhere `sync()`, which does the same for every filesystem.
    """
    libc_syncfs = _libc_syncfs()
    if libc_syncfs is not None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc_syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    os.sync()


@functools.cache
def _libc_syncfs() -> Callable[[int], int] | None:
    try:
        function: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    return function


def content_type_of(name: str, default: str) -> str:
    """The content type a file name's extension implies, or `default`."""
    return _types().guess_type(name, strict=True)[0] or default


@functools.cache
def _types() -> mimetypes.MimeTypes:
    """Python's built-in extension table only (never the host's mime.types), so a name
    means the same type on every machine; made on first use."""
    return mimetypes.MimeTypes()


def prune_empty_dirs(start: Path, stop: Path) -> None:
    """Remove `start` and its parents while empty, never `stop` or above."""
    current = start
    while current != stop and current.is_relative_to(stop):
        try:
            current.rmdir()
        except OSError:  # not empty, already gone, or in use: all fine
            return
        current = current.parent


def write_sidecar(
    path: Path, sidecar: Sidecar, tmp_dir: Path, *, make_parents: bool = True, durable: bool = True
) -> None:
    data = json.dumps(asdict(sidecar)).encode()
    spooled = spool([data], tmp_dir, md5_up_to=0, durable=durable)
    publish(
        spooled.path,
        path,
        what=f"metadata {path.name!r}",
        make_parents=make_parents,
        durable=durable,
    )


def read_sidecar(path: Path) -> Sidecar | None:
    """The sidecar at `path`, or None if it is missing or unreadable."""
    try:
        return Sidecar(**json.loads(path.read_bytes()))
    except (OSError, ValueError, TypeError):
        return None


def file_md5(path: Path) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            md5.update(chunk)
    return md5.hexdigest()
