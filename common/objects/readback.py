"""Reading a large object with several ranged reads in flight, in order.

One GET stream from an S3 server is much slower than the server: boto3's own
`download_file` fetches ranges in parallel. `prefetched` does the same for a consumer
that needs the bytes in order (a download streamed to a client, a SHA-256 computed over
the whole object), with a bounded number of ranges held at once.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

#: Bytes per ranged read.
RANGE_BYTES = 8 * 1024 * 1024
#: Ranged reads in flight (and so at most this many ranges held in memory).
IN_FLIGHT = 6


def prefetched(
    fetch: Callable[[int, int], bytes],
    start: int,
    stop: int,
    *,
    range_bytes: int = RANGE_BYTES,
    in_flight: int = IN_FLIGHT,
) -> Iterator[bytes]:
    """The bytes [start, stop) as `fetch(a, b)` returns them for consecutive ranges,
    `in_flight` fetched at once, yielded in order."""
    bounds = iter(range(start, stop, range_bytes))
    with ThreadPoolExecutor(in_flight, thread_name_prefix="readback") as pool:
        pending: collections.deque[Future[bytes]] = collections.deque()

        def more() -> None:
            for offset in bounds:
                pending.append(pool.submit(fetch, offset, min(offset + range_bytes, stop)))
                if len(pending) >= in_flight:
                    return

        try:
            more()
            while pending:
                chunk = pending.popleft().result()
                more()
                yield chunk
        finally:
            for future in pending:
                future.cancel()


def sha256_of(fetch: Callable[[int, int], bytes], size: int) -> str:
    """SHA-256 (hex) of an object of `size` bytes read back with `prefetched`."""
    digest = hashlib.sha256()
    for chunk in prefetched(fetch, 0, size):
        digest.update(chunk)
    return digest.hexdigest()


def continued(body: Any, chunk_size: int, fetch: Any, start: int, stop: int) -> Iterator[bytes]:
    """Bytes [start, stop) in chunks of `chunk_size`: the first range from `body` (an
    open GET's streaming body, closed after it), the rest from `prefetched`."""
    first = min(stop, start + 4 * 1024 * 1024)
    try:
        left = first - start
        for chunk in body.iter_chunks(min(chunk_size, left)):
            chunk = chunk[:left]
            left -= len(chunk)
            yield chunk
            if left <= 0:
                break
    finally:
        body.close()
    if left > 0:
        raise RuntimeError(f"the object ended {left} bytes early")
    # 4 x 4 MiB in flight: most of the speed of more, within a download's memory budget
    ranges = prefetched(fetch, first, stop, range_bytes=4 * 1024 * 1024, in_flight=4)
    for data in ranges:
        view = memoryview(data)
        for offset in range(0, len(view), chunk_size):
            yield bytes(view[offset : offset + chunk_size])
