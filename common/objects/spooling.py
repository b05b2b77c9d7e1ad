"""Writing a stream to a new temporary file at disk speed, hashing it on the way.

One pass over the bytes: each chunk is hashed (SHA-256 and/or MD5, as asked) and
written as it passes, never read back. Past the first few MiB the hashing and the
writing move to two more threads, each fed through a short queue, so hashing a chunk,
writing it and producing the next one (for an upload: receiving and parsing it on the
event loop) overlap; hashlib and file writes release the GIL. Hashing is the slowest of
the three (SHA-256 runs about 1 GB/s), so it gets a thread of its own. Every few MiB
the kernel is asked to start writing back what was written (`sync_file_range`), so the
closing fsync has little left to flush.

An error while writing (ENOSPC included) is raised to the caller as it was raised, and
the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Streams longer than this are hashed and written on a second thread.
PIPELINE_AFTER = 4 * 1024 * 1024
#: Chunks waiting for the writing thread (one: it is enough to overlap the two threads,
#: and the memory held stays at three chunks).
QUEUE_CHUNKS = 1
#: Ask the kernel to write back every this many bytes.
WRITE_BEHIND = 8 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2
_DONE = object()


@dataclass(frozen=True)
class Spooled:
    """A fully written (and, unless asked otherwise, fsynced) temporary file waiting to
    be published."""

    path: Path
    size: int
    digest: bytes  # MD5 of the content (b"" when not asked for, or past `md5_up_to`)
    mtime_ns: int
    ino: int
    sha256: str | None = None  # hex, when asked for


class Sink:
    """Hashes and writes chunks to one open file, keeping track of write-behind (the
    spool's, and the directory store's part joiner)."""

    def __init__(self, fd: int, *, md5_up_to: int | None, sha256: bool) -> None:
        self.fd = fd
        self.size = 0
        self.md5: Any = hashlib.md5(usedforsecurity=False) if md5_up_to != 0 else None
        self.md5_up_to = md5_up_to
        self.sha256: Any = hashlib.sha256() if sha256 else None
        self.hashed = 0
        self._synced = 0

    def write(self, chunk: bytes | memoryview) -> None:
        self.hash(chunk)
        self.store(chunk)

    def hash(self, chunk: bytes | memoryview) -> None:
        if self.md5 is not None:
            if self.md5_up_to is not None and self.hashed + len(chunk) > self.md5_up_to:
                self.md5 = None  # too long for an MD5 ETag: stop paying for it
            else:
                self.md5.update(chunk)
        if self.sha256 is not None:
            self.sha256.update(chunk)
        self.hashed += len(chunk)

    def store(self, chunk: bytes | memoryview) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += len(chunk)
        if self.size - self._synced >= WRITE_BEHIND:
            write_behind(self.fd, self._synced, self.size - self._synced)
            self._synced = self.size


class _Worker:
    """A thread applying `step` to each chunk of a bounded queue; its first error is kept
    (and the rest of the stream drained) for the caller's thread to raise."""

    def __init__(self, step: Callable[[bytes], None], name: str) -> None:
        self.step = step
        self.queue: queue.Queue[Any] = queue.Queue(QUEUE_CHUNKS)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (chunk := self.queue.get()) is not _DONE:
            if self.error is None:
                try:
                    self.step(chunk)
                except BaseException as error:  # handed to the caller's thread
                    self.error = error


class _Pipeline:
    """Two threads: one hashes (if there is anything to hash), one writes, each chunk in
    order."""

    def __init__(self, sink: Sink) -> None:
        writer = _Worker(sink.store, "spool-writer")
        hashing = sink.md5 is not None or sink.sha256 is not None
        self.workers = (_Worker(sink.hash, "spool-hasher"), writer) if hashing else (writer,)

    def put(self, chunk: bytes) -> None:
        self.raise_error()
        for worker in self.workers:
            worker.queue.put(chunk)

    def close(self) -> None:
        for worker in self.workers:
            worker.queue.put(_DONE)
        for worker in self.workers:
            worker.thread.join()
        self.raise_error()

    def raise_error(self) -> None:
        for worker in self.workers:
            if worker.error is not None:
                raise worker.error


def spool(
    chunks: Iterable[bytes],
    tmp_dir: Path,
    *,
    md5_up_to: int | None = None,
    sha256: bool = False,
    durable: bool = True,
) -> Spooled:
    """Write `chunks` to a new temp file in `tmp_dir`, hashing as it goes: MD5 while the
    content is at most `md5_up_to` bytes (None: always; 0: never), SHA-256 if asked.
    The file is fsynced unless `durable` is False (a caller that can lose it in a power
    failure and notice, such as a multipart part, which is re-sent)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="w-", suffix=".tmp")
    sink = Sink(fd, md5_up_to=md5_up_to, sha256=sha256)
    pipeline: _Pipeline | None = None
    queued = 0
    try:
        try:
            for chunk in chunks:
                if pipeline is None and queued + len(chunk) <= PIPELINE_AFTER:
                    sink.write(chunk)
                else:
                    pipeline = pipeline or _Pipeline(sink)
                    pipeline.put(chunk)
                queued += len(chunk)
        finally:
            if pipeline is not None:
                pipeline.close()
        if durable:
            os.fsync(fd)
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    os.close(fd)
    return Spooled(
        Path(name),
        sink.size,
        sink.md5.digest() if sink.md5 is not None else b"",
        st.st_mtime_ns,
        st.st_ino,
        sink.sha256.hexdigest() if sink.sha256 is not None else None,
    )


def write_behind(fd: int, offset: int, length: int) -> None:
    """Start writing [offset, offset + length) back to disk without waiting (Linux)."""
    function = _libc_sync_file_range()
    if function is not None:
        function(fd, ctypes.c_longlong(offset), ctypes.c_longlong(length), _SYNC_FILE_RANGE_WRITE)


@functools.cache
def _libc_sync_file_range() -> Callable[..., int] | None:
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    return function
