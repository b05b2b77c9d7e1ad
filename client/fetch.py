"""Moving a stored file's bytes into a local file, on threads with a blocking httpx client.

Why not the async client: httpx over asyncio reads 64 KiB at a time and pays an event
loop round trip (epoll register, wake, unregister) for each read, which caps one
download near 200 MiB/s on this kind of machine; the same httpx API blocking on a socket
in a thread moves about as fast as curl. The async API stays the caller's interface; the
bytes move here, on threads (socket reads, SHA-256 and writes release the GIL).

- One stream (the API serving the bytes itself): read, hash and write in order.
- A redirect to a presigned URL (S3): parallel ranged GETs, as boto3 does, each written at
  its offset (`os.pwrite`); one hasher thread reads the file back in order as the pieces
  land (from the page cache), so the SHA-256 is ready when the last piece is.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from client.errors import IntegrityError, problem_from_response

READ = 1024 * 1024
#: A ranged piece; small enough to spread over the threads, large enough to stream well.
PIECE = 16 * 1024 * 1024
#: Below this a redirected download goes in one stream (ranges would only add requests).
RANGED_MIN = 2 * PIECE


class Unauthorized(Exception):
    """The API refused the credentials: the caller renews them and tries once more."""

    def __init__(self, problem: Exception) -> None:
        super().__init__(str(problem))
        self.problem = problem


class Stopped(Exception):
    """The caller gave up (its task was cancelled); the file is left to it to remove."""


@dataclass(frozen=True)
class Fetched:
    size: int
    sha256: str


def fetch(
    http: httpx.Client,
    url: str,
    headers: Mapping[str, str],
    fd: int,
    size: int,
    concurrency: int,
    stop: threading.Event,
) -> Fetched:
    """GET `url` into the open file `fd`; a redirect (a presigned URL) is followed without
    the caller's headers, in `concurrency` ranged pieces when the file is large."""
    with http.stream("GET", url, headers=dict(headers)) as response:
        if response.status_code == 401:
            response.read()
            raise Unauthorized(problem_from_response(response))
        location = response.headers.get("location") if response.is_redirect else None
        if location is None:
            _check(response)
            return _stream_into(response, fd, stop)
    if size < RANGED_MIN or concurrency <= 1:
        with http.stream("GET", location) as response:
            _check(response)
            return _stream_into(response, fd, stop)
    return _ranged(http, location, fd, size, concurrency, stop)


def _check(response: httpx.Response) -> None:
    if not response.is_success:
        response.read()
        raise problem_from_response(response)


def _stream_into(response: httpx.Response, fd: int, stop: threading.Event) -> Fetched:
    digest = hashlib.sha256()
    offset = 0
    for chunk in response.iter_raw():
        if stop.is_set():
            raise Stopped
        digest.update(chunk)
        offset += _write_at(fd, chunk, offset)
    return Fetched(offset, digest.hexdigest())


def _write_at(fd: int, chunk: bytes, offset: int) -> int:
    view = memoryview(chunk)
    while view:
        view = view[os.pwrite(fd, view, offset + len(chunk) - len(view)) :]
    return len(chunk)


def _ranged(
    http: httpx.Client, url: str, fd: int, size: int, concurrency: int, stop: threading.Event
) -> Fetched:
    pieces = [(start, min(start + PIECE, size)) for start in range(0, size, PIECE)]
    hasher = _OrderedHasher(fd, pieces)
    thread = threading.Thread(target=hasher.run, name="aperture-download-hash", daemon=True)
    thread.start()
    try:
        with ThreadPoolExecutor(concurrency, thread_name_prefix="aperture-download") as pool:
            for index, done in enumerate(
                pool.map(lambda p: _piece(http, url, fd, p, stop), pieces)
            ):
                hasher.landed(index, done)
    except BaseException:
        stop.set()
        hasher.stop()
        raise
    finally:
        thread.join()
    return Fetched(hasher.hashed, hasher.digest.hexdigest())


def _piece(
    http: httpx.Client, url: str, fd: int, piece: tuple[int, int], stop: threading.Event
) -> int:
    start, end = piece
    with http.stream("GET", url, headers={"Range": f"bytes={start}-{end - 1}"}) as response:
        _check(response)
        if response.status_code != 206:
            raise IntegrityError(f"the store answered {response.status_code} to a byte range")
        offset = start
        for chunk in response.iter_raw():
            if stop.is_set():
                raise Stopped
            if offset + len(chunk) > end:
                raise IntegrityError(f"the store sent more than bytes {start}-{end - 1}")
            offset += _write_at(fd, chunk, offset)
    return offset - start


class _OrderedHasher:
    """Hashes the pieces in file order as they land (reading them back from the file)."""

    def __init__(self, fd: int, pieces: list[tuple[int, int]]) -> None:
        self.fd = fd
        self.pieces = pieces
        self.sizes: dict[int, int] = {}
        self.digest = hashlib.sha256()
        self.hashed = 0
        self.stopped = False
        self.cond = threading.Condition()

    def landed(self, index: int, size: int) -> None:
        with self.cond:
            self.sizes[index] = size
            self.cond.notify()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify()

    def run(self) -> None:
        for index, (start, _) in enumerate(self.pieces):
            with self.cond:
                self.cond.wait_for(lambda i=index: i in self.sizes or self.stopped)  # type: ignore[misc]
                if self.stopped:
                    return
                size = self.sizes[index]
            offset = start
            while offset < start + size:
                data = os.pread(self.fd, min(READ * 4, start + size - offset), offset)
                if not data:
                    return
                self.digest.update(data)
                offset += len(data)
            self.hashed += size
