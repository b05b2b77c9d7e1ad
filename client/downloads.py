"""Downloading stored files: streamed to a temporary file beside the target, hashed on
the way, checked against the file's SHA-256, then renamed into place (a download that
fails never leaves a half-written file under the real name)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from client.errors import IntegrityError
from client.models import FileInfo
from client.transport import Transport

CHUNK = 1024 * 1024


def local_name(name: str) -> str:
    """A stored file's name as a safe local file name (no directories, no dot files)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lstrip(".")
    return base or "file"


async def download(t: Transport, info: FileInfo, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            async with t.stream("GET", f"/api/v1/files/{info.id}/download") as response:
                # Each chunk is hashed and written on a thread while the next one is
                # received (one in flight: the writes stay in order).
                writing: asyncio.Future[None] | None = None
                try:
                    async for chunk in response.aiter_bytes(CHUNK):
                        if writing is not None:
                            await writing
                        writing = asyncio.ensure_future(
                            asyncio.to_thread(_write, out, digest, chunk)
                        )
                        size += len(chunk)
                finally:
                    if writing is not None:  # never leave a write running on a closed file
                        await writing
        if size != info.size or (info.sha256 and digest.hexdigest() != info.sha256):
            raise IntegrityError(
                f"downloaded {size} bytes with SHA-256 {digest.hexdigest()} for file "
                f"{info.id}, but it is {info.size} bytes with SHA-256 {info.sha256}"
            )
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def _write(out: object, digest: hashlib._Hash, chunk: bytes) -> None:
    digest.update(chunk)
    view = memoryview(chunk)
    while view:
        view = view[out.write(view) :]  # type: ignore[attr-defined]
