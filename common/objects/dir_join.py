"""Joining the parts of a directory-store multipart upload into one file, hashing each
byte once on the way.

A `Joiner` reads part files in the order given and, per chunk, feeds SHA-256 and appends
the chunk to one new file: one read, one hash, one write per byte. A `Chain` does this
while the upload is still in progress: as soon as part 1, 2, 3, ... and every part before
it are stored, it is read back (fresh in the page cache) and appended, so at completion
the object is already joined and hashed, and only its last writes need flushing.

Parts arrive out of order and in parallel: whichever request stores the part that
continues the chain carries it forward; a request that finds the chain busy leaves its
part to the thread already running (which looks for the next part after each one).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from common.objects import fsutil
from common.objects.spooling import Sink

#: Bytes read (and hashed, and written) at a time.
READ_BYTES = 4 * 1024 * 1024

#: (inode, mtime_ns, size): which file a part was when it was read.
Identity = tuple[int, int, int]


def part_path(directory: Path, number: int) -> Path:
    return directory / f"{number:05d}.part"


def identity_of(st: os.stat_result) -> Identity:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Joiner:
    """A new file in `directory` that parts are appended to, and the SHA-256 of what was
    appended. Close it with `finish` (fsynced, kept) or `discard` (removed)."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix="joined-", suffix=".tmp")
        self.fd: int | None = fd
        self.path = Path(name)
        self.sink = Sink(fd, md5_up_to=0, sha256=True)

    def append(
        self, directory: Path, number: int, check: Callable[[os.stat_result], None] | None = None
    ) -> Identity | None:
        """Append part `number` (after `check(stat)` of the very file opened, if given);
        the part's identity, or None if it is not stored. Raises OSError (ENOSPC, ...)."""
        assert self.fd is not None, "append after finish or discard"
        try:
            f = part_path(directory, number).open("rb", buffering=0)
        except FileNotFoundError:
            return None
        with f:
            st = os.fstat(f.fileno())
            if check is not None:
                check(st)
            buffer = bytearray(min(READ_BYTES, max(st.st_size, 1)))
            view = memoryview(buffer)
            left = st.st_size
            while left > 0 and (n := f.readinto(buffer)):
                self.sink.write(view[: min(n, left)])
                left -= n
        if left != 0:
            raise OSError(f"part {number} changed size while it was being joined")
        return identity_of(st)

    def finish(self) -> tuple[fsutil.Spooled, str]:
        """The joined file, fsynced, and its SHA-256."""
        assert self.fd is not None
        fd, self.fd = self.fd, None
        try:
            os.fsync(fd)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            fsutil.discard(self.path)
            raise
        os.close(fd)
        spooled = fsutil.Spooled(self.path, st.st_size, b"", st.st_mtime_ns, st.st_ino)
        return spooled, str(self.sink.sha256.hexdigest())

    def discard(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
        fsutil.discard(self.path)


class Chain:
    """Parts 1..next-1 of one upload, joined and hashed in order as they are stored."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.joiner = Joiner(directory)
        self.next = 1
        self.hashed: dict[int, Identity] = {}
        self.lock = threading.Lock()
        self.broken = False  # a read or write failed: completion joins afresh

    def advance(self, *, wait: bool) -> None:
        """Join every stored part that continues the chain. Without `wait`, leave the work
        to a thread already doing it."""
        while True:
            if not self.lock.acquire(blocking=wait):
                return
            try:
                while not self.broken and self.joiner.fd is not None:
                    try:
                        identity = self.joiner.append(self.directory, self.next)
                    except OSError:
                        self.broken = True  # ENOSPC, a part replaced mid-read: see completion
                        break
                    if identity is None:
                        break
                    self.hashed[self.next] = identity
                    self.next += 1
            finally:
                self.lock.release()
            # A part stored while the lock was being released would otherwise wait for
            # completion; look once more.
            if wait or self.broken or not part_path(self.directory, self.next).exists():
                return

    def take(self, wanted: dict[int, Identity]) -> tuple[fsutil.Spooled, str] | None:
        """The joined file and its SHA-256 if the chain holds exactly the parts `wanted`
        (numbers 1..N, the same files); else None, and the chain's file is removed."""
        with self.lock:
            if not self.broken and self.joiner.fd is not None and self.hashed == wanted:
                return self.joiner.finish()
            self.joiner.discard()
            return None

    def discard(self) -> None:
        with self.lock, contextlib.suppress(OSError):
            self.joiner.discard()
