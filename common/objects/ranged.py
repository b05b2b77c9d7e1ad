"""A seekable, read-only file over an object's byte ranges.

Readers that parse a file's structure (tifffile, nd2) seek around and read small
pieces: headers, IFDs, XML, chunk maps. `RangedReader` serves those reads with ranged
`get_bytes` calls, so reading metadata from S3 costs a few small requests however
large the object is, instead of a full download. Small reads are served from a few
cached aligned blocks (the read-ahead), so runs of tiny reads (an IFD's entries, one
tag at a time) and parsers that come back to a header cost one request.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from typing import Any

#: Bytes fetched per request when a read is smaller than this (the read-ahead).
READ_AHEAD = 64 * 1024
#: Aligned blocks of READ_AHEAD bytes kept for later reads.
CACHED_BLOCKS = 8


class RangedReader(io.RawIOBase):
    """A binary file object whose reads are `ObjectStore.get_bytes` ranges.

    Parameters
    ----------
    store : ObjectStore
        Where the object lives.
    key : str
        The object's key.
    size : int, optional
        The object's size; read with `store.head(key)` when omitted.
    read_ahead : int
        Block size: reads shorter than this fetch the aligned block(s) that hold them
        and keep the last few blocks for later reads.

    Attributes
    ----------
    bytes_fetched, requests : int
        What was read from the store so far (for tests and logs).
    """

    def __init__(
        self, store: Any, key: str, *, size: int | None = None, read_ahead: int = READ_AHEAD
    ) -> None:
        super().__init__()
        if read_ahead < 1:
            raise ValueError(f"read_ahead must be at least 1, got {read_ahead}")
        self._store = store
        self.key = key
        self.size = store.head(key).size if size is None else size
        self._read_ahead = read_ahead
        self._pos = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self.bytes_fetched = 0
        self.requests = 0

    def __repr__(self) -> str:
        return f"RangedReader({self.key!r}, size={self.size})"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if pos < 0:
            raise OSError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), max(self.size - self._pos, 0))
        if wanted == 0:
            return 0
        data = self._take(self._pos, wanted)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        return self.read(max(self.size - self._pos, 0))

    def _take(self, start: int, n: int) -> bytes:
        """Bytes [start, start+n): large reads straight from the store, small ones from
        the cached blocks that cover them."""
        if n >= self._read_ahead:
            return self._fetch(start, start + n)
        size = self._read_ahead
        first, last = start // size, (start + n - 1) // size
        joined = b"".join(self._block(i) for i in range(first, last + 1))
        offset = start - first * size
        return joined[offset : offset + n]

    def _block(self, index: int) -> bytes:
        block = self._blocks.get(index)
        if block is None:
            start = index * self._read_ahead
            block = self._fetch(start, min(self.size, start + self._read_ahead))
            self._blocks[index] = block
            if len(self._blocks) > CACHED_BLOCKS:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(index)
        return block

    def _fetch(self, start: int, end: int) -> bytes:
        data: bytes = self._store.get_bytes(self.key, start=start, end=end)
        self.requests += 1
        self.bytes_fetched += len(data)
        return data

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on a closed RangedReader")

    def close(self) -> None:
        self._blocks.clear()
        super().close()
