"""The ceiling for uploads and downloads through the API: each stage alone, on the same
file, beside `shutil.copyfile` of that file in the same run.

Stages (MiB/s; `ratio_*` = stage / copyfile):
- `sha256`, `md5`: hashlib over the file's bytes in memory (one core);
- `write`: Python writing the bytes to a new file in 4 MiB chunks (page cache, no fsync);
- `copyfile`: `shutil.copyfile` of the file (the reference of bench_files.py);
- `uvicorn_receive` / `uvicorn_receive_sha256`: curl streaming the file (`-T`) to a bare
  ASGI app on uvicorn (httptools, uvloop: what `aperture serve` runs) that drops the
  body, or hashes it on the event loop;
- `uvicorn_send`: the same app streaming the file to curl (`-o`), 1 MiB reads;
- `sendfile_send`: a plain socket server `os.sendfile`-ing the file to curl (what no
  Python ASGI server does; the most a client like curl takes in).
An upload through the API cannot beat `min(uvicorn_receive, sha256)`, and on 2 cores
the client (curl, or the Python client, which hashes too) shares them.

Run: uv run python tests/bench/bench_io_stages.py [--size-mib 256]
Prints one JSON line. Noisy on a shared machine: report it with the load.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

MIB = 1024 * 1024
SOURCE: list[Path] = []


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """GET: stream the source file; PUT: read the body (hash it if `?sha256`)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["method"] == "GET":
        size = SOURCE[0].stat().st_size
        headers = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with SOURCE[0].open("rb", buffering=0) as f:
            while data := await asyncio.to_thread(f.read, MIB):
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    digest = hashlib.sha256() if scope["query_string"] == b"sha256" else None
    more = True
    while more:
        message = await receive()
        if digest is not None:
            digest.update(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _mib_s(size: int, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return size / MIB / (time.perf_counter() - start)


def _curl(*args: str) -> None:
    subprocess.run(["curl", "-sS", "--fail", *args], check=True, capture_output=True)


def _write(data: bytes, dest: Path) -> None:
    view = memoryview(data)
    with dest.open("wb", buffering=0) as f:
        for offset in range(0, len(view), 4 * MIB):
            f.write(view[offset : offset + 4 * MIB])


def _sendfile_server(source: Path) -> int:
    """A one-request-at-a-time HTTP server answering every GET with `source` by sendfile."""
    listener = socket.create_server(("127.0.0.1", 0))
    size = source.stat().st_size

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            with conn, source.open("rb") as f:
                conn.recv(65536)
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
                conn.sendall(head.encode())
                offset = 0
                while offset < size:
                    offset += os.sendfile(conn.fileno(), f.fileno(), offset, size - offset)

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1])


def _in_memory(data: bytes, out: Path) -> dict[str, float]:
    size = len(data)
    return {
        "sha256": _mib_s(size, lambda: hashlib.sha256(data).digest()),
        "md5": _mib_s(size, lambda: hashlib.md5(data, usedforsecurity=False).digest()),
        "write": _mib_s(size, lambda: _write(data, out)),
    }


def measure(work: Path, size: int) -> dict[str, float]:
    source = work / "source.bin"
    with source.open("wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
    SOURCE[:] = [source]
    out = work / "out.bin"
    figures = {"copyfile": _mib_s(size, lambda: shutil.copyfile(source, work / "copy.bin"))}
    figures |= _in_memory(source.read_bytes(), out)
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    figures["uvicorn_receive"] = _mib_s(size, lambda: _curl("-T", str(source), url))
    figures["uvicorn_receive_sha256"] = _mib_s(
        size, lambda: _curl("-T", str(source), f"{url}?sha256")
    )
    figures["uvicorn_send"] = _mib_s(size, lambda: _curl("-o", str(out), url))
    server.should_exit = True
    thread.join()
    port = _sendfile_server(source)
    figures["sendfile_send"] = _mib_s(
        size, lambda: _curl("-o", str(out), f"http://127.0.0.1:{port}/")
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-io-stages-") as tmp:
        figures = measure(Path(tmp), args.size_mib * MIB)
    reference = figures["copyfile"]
    line: dict[str, Any] = {"bench": "io_stages", "size_mib": args.size_mib}
    line |= {f"{k}_mib_s": round(v, 1) for k, v in figures.items()}
    line["reference"] = "shutil.copyfile"
    line |= {f"ratio_{k}": round(v / reference, 3) for k, v in figures.items() if k != "copyfile"}
    line["load_1min"] = os.getloadavg()[0]
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
