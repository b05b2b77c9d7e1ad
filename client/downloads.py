"""Downloading stored files: fetched (on threads, see client.fetch) into a temporary file
beside the target, hashed on the way, checked against the file's SHA-256, then renamed
into place (a download that fails never leaves a half-written file under the real name).
A presigned S3 URL is fetched in parallel byte ranges."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from pathlib import Path

from client.errors import IntegrityError
from client.fetch import Fetched, Unauthorized, fetch
from client.models import FileInfo
from client.transport import Transport

#: Ranged pieces in flight at once for a presigned URL (boto3 uses 10; 4 measured best on 2 cores).
CONCURRENCY = 4


def local_name(name: str) -> str:
    """A stored file's name as a safe local file name (no directories, no dot files)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lstrip(".")
    return base or "file"


async def download(t: Transport, info: FileInfo, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    url = f"/api/v1/files/{info.id}/download"
    try:
        try:
            got = await _fetch(t, url, fd, info.size)
        finally:
            os.close(fd)
        if got.size != info.size or (info.sha256 and got.sha256 != info.sha256):
            raise IntegrityError(
                f"downloaded {got.size} bytes with SHA-256 {got.sha256} for file "
                f"{info.id}, but it is {info.size} bytes with SHA-256 {info.sha256}"
            )
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


async def _fetch(t: Transport, url: str, fd: int, size: int) -> Fetched:
    """`fetch` on a thread, with one renewal after a 401; a cancelled caller stops the
    thread and waits for it (it must not write to `fd` once that is closed)."""
    for renewing in (False, True):
        auth = await t.credential.headers(t.http)
        stop = threading.Event()
        work = asyncio.ensure_future(
            asyncio.to_thread(fetch, t.blocking, url, auth, fd, size, CONCURRENCY, stop)
        )
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(BaseException):
                await work
            raise
        except Unauthorized as refused:
            if renewing or not await t.credential.renew(t.http, auth):
                raise refused.problem from None
    raise AssertionError("unreachable")
