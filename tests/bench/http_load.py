"""A lean HTTP/1.1 load client for benchmarks: N concurrent keep-alive connections, each
fetching its share of a list of paths one request at a time, timing every request.

Hand-written on asyncio streams rather than httpx so that on a small machine the client
costs little CPU beside the servers it measures (it is the same client for every server
compared). It speaks just enough HTTP/1.1: GET, `Content-Length` bodies, keep-alive, and
reconnecting when a server closes (`Connection: close` or HTTP/1.0).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    bytes: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


class _Connection:
    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = f"Host: {host}:{port}\r\n{extra}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, int]:
        """(status, body length) of GET `path`."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(f"GET {path} HTTP/1.1\r\n{self._head}\r\n".encode())
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        version, status = status_line.split(b" ", 2)[:2]
        length, close = 0, version == b"HTTP/1.0"
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        if length:
            await self._reader.readexactly(length)
        if close:
            await self.close()
        return int(status), length

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


async def fetch_all(
    host: str,
    port: int,
    paths: Sequence[str],
    *,
    clients: int,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Fetch every path once with `clients` concurrent connections."""
    pending = iter(paths)
    result = LoadResult(seconds=0.0)

    async def client() -> None:
        connection = _Connection(host, port, headers or {})
        try:
            for path in pending:
                sent = time.perf_counter()
                try:
                    status, size = await connection.get(path)
                except (ConnectionError, asyncio.IncompleteReadError):
                    await connection.close()  # a dropped keep-alive connection: once more
                    status, size = await connection.get(path)
                result.latencies.append(time.perf_counter() - sent)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.bytes += size
        finally:
            await connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = time.perf_counter() - start
    return result


def run(
    host: str,
    port: int,
    paths: Sequence[str],
    *,
    clients: int,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """`fetch_all` on a fresh event loop (uvloop where installed, as servers use)."""
    try:
        import uvloop

        return uvloop.run(fetch_all(host, port, paths, clients=clients, headers=headers))
    except ImportError:
        return asyncio.run(fetch_all(host, port, paths, clients=clients, headers=headers))


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by process `root` and its descendants that
    are still alive (Linux /proc; 0.0 elsewhere). A server's CPU per request is a figure a
    busy shared machine disturbs much less than its requests per second."""
    import os

    return sum(_ticks(f"/proc/{pid}/stat") for pid in _tree(root)) / os.sysconf("SC_CLK_TCK")


def tree_thread_cpu_seconds(root: int) -> dict[str, float]:
    """The CPU seconds of `tree_cpu_seconds` split by kind of thread: "main" (each
    process's first thread: a web process's event loop), "libvips" (libvips' workers)
    and "other" (thread pools: the tile renderers). Shows whether a server's CPU goes
    to rendering or to the per-request path. Threads that have exited are in no kind
    (they count in `tree_cpu_seconds` only). Linux /proc; empty elsewhere."""
    import os

    split: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in _tree(root):
        try:
            threads = [e.name for e in os.scandir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in threads:
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as fh:
                    name = fh.read().strip()
            except OSError:
                continue
            kind = "main" if tid == str(pid) else "libvips" if "vips" in name else "other"
            split[kind] = split.get(kind, 0.0) + _ticks(f"/proc/{pid}/task/{tid}/stat") / tick
    return split


def _ticks(stat_path: str) -> int:
    """User + system clock ticks from a /proc stat file; 0 if it is gone."""
    try:
        with open(stat_path) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _tree(root: int) -> set[int]:
    """`root` and its live descendants (empty without /proc)."""
    import os

    parents: dict[int, int] = {}
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return set()
    for name in entries:
        try:
            with open(f"/proc/{name}/stat") as fh:
                parents[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue  # gone meanwhile
    tree, grown = {root}, True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grown = bool(more)
    return tree
