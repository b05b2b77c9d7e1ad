"""Adapters between the input shapes the stores accept and the shapes they need.

Callers hand the stores bytes, binary file objects or iterables of bytes; backends
want either a chunk iterator (directory) or a readable file object (boto3). Both
adapters work chunk by chunk so a stream is never held whole in memory.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator

from common.errors import InvalidInput
from common.objects.base import CHUNK_SIZE, ByteSource


def iter_chunks(source: ByteSource, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the bytes of `source` in chunks of at most about `chunk_size`."""
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        for offset in range(0, len(view), chunk_size):
            yield bytes(view[offset : offset + chunk_size])
        return
    read = getattr(source, "read", None)
    if callable(read):
        while chunk := read(chunk_size):
            yield _as_bytes(chunk)
        return
    if isinstance(source, str):
        raise InvalidInput("expected bytes, a binary stream or an iterable of bytes, got str")
    for chunk in source:
        if chunk:
            yield _as_bytes(chunk)


def _as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    raise InvalidInput(f"stream chunks must be bytes, got {type(chunk).__name__}")


class HashingReader(io.RawIOBase):
    """A read-only file object over a chunk iterator that MD5s (and, if asked,
    SHA-256s) what passes through.

    boto3's managed transfers read from a file object; this lets them consume a
    generator lazily while we learn the size and digests of what was sent.
    """

    def __init__(self, chunks: Iterable[bytes], *, sha256: bool = False) -> None:
        self._chunks = iter(chunks)
        # A view, so handing out a chunk in small reads never copies the remainder.
        self._pending = memoryview(b"")
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256() if sha256 else None
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Fill `buffer` completely unless the stream ends first.

        Short reads would be legal for a raw stream, but s3transfer takes a short
        read as the end of the data and would then read the rest in one go.
        """
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            if not self._pending:
                try:
                    self._pending = memoryview(_as_bytes(next(self._chunks)))
                except StopIteration:
                    break
                continue
            n = min(len(view) - filled, len(self._pending))
            view[filled : filled + n] = self._pending[:n]
            self.md5.update(self._pending[:n])
            if self.sha256 is not None:
                self.sha256.update(self._pending[:n])
            self._pending = self._pending[n:]
            filled += n
        self.size += filled
        return filled

    def __repr__(self) -> str:
        return f"HashingReader(size={self.size})"
