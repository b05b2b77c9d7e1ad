"""Uploading a local file: skip it if the user already has these bytes, else send it
whole (small files) or in parallel parts that survive an interruption.

The file is read once, in order, by one reader that hashes (SHA-256) as it goes and
hands parts to `concurrency` senders; at most about 2 x `concurrency` parts are in memory.
On a rerun after an interruption, the server's stored part list decides what is left:
the reader still reads (and hashes) every part, but sends only those the server lacks
or holds with other bytes. On S3 a part's ETag is its MD5, checked against the local
bytes; the directory store's is an opaque token naming the stored file (it hashes each
byte once, for the whole file's SHA-256), so a stored part of the right size is kept.
Then the whole file's SHA-256 goes with the completion, and the server refuses (and
removes) a file whose bytes do not match before it is recorded; the next run then
starts afresh. In every case the stored file's SHA-256 is checked against the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mimetypes
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.errors import IntegrityError, NotFound
from client.ledger import PendingUpload, UploadLedger
from client.models import FileInfo, UploadResult
from client.transport import Transport

ProgressCallback = Callable[[int, int], None]
"""`progress(bytes_done, bytes_total)`, called as parts land (or are found stored)."""

SIMPLE_MAX_BYTES = 8 * 1024 * 1024
FILES = "/api/v1/files"
#: A part ETag that is a content MD5 (S3's); any other is a store's opaque token.
MD5_ETAG = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class UploadOptions:
    name: str | None = None
    dataset_id: str | None = None
    force: bool = False
    """Upload even if the user already has a file with the same SHA-256 and size."""
    concurrency: int = 8
    """Parts in flight at once."""
    progress: ProgressCallback | None = None
    simple_max_bytes: int = SIMPLE_MAX_BYTES
    """Files up to this size go in one `POST /files`."""


class Uploader:
    def __init__(self, transport: Transport, ledger: UploadLedger, owner_id: Callable[[], Any]):
        self.transport = transport
        self.ledger = ledger
        self._owner_id = owner_id  # async () -> the caller's user id, for the duplicate check

    def __repr__(self) -> str:
        return f"Uploader({self.transport.base_url!r})"

    async def upload(self, path: Path, options: UploadOptions) -> UploadResult:
        path = path.resolve()
        stat = path.stat()
        name = options.name or path.name
        sha256 = None
        if not options.force:
            sha256, existing = await self._existing(path, stat.st_size)
            if existing is not None:
                _report(options.progress, stat.st_size, stat.st_size)
                return UploadResult(existing, skipped=True)
        if stat.st_size <= options.simple_max_bytes:
            return await self._simple(path, name, options)
        return await _Multipart(self, path, stat, name, sha256, options).run()

    async def find(self, sha256: str, size: int) -> FileInfo | None:
        """The caller's own live file with these bytes, if any."""
        owner = await self._owner_id()
        page = await self.transport.json(
            "GET", FILES, params={"sha256": sha256, "size": size, "limit": 50}
        )
        for item in page["items"]:
            # Checked here too: a server without these filters answers every file.
            if item["sha256"] == sha256 and item["size"] == size and item["owner_id"] == owner:
                return FileInfo.from_json(item)
        return None

    async def _existing(self, path: Path, size: int) -> tuple[str | None, FileInfo | None]:
        """(SHA-256 if it had to be computed, the duplicate if there is one). A file whose
        size no stored file has cannot be a duplicate, so it is not read twice."""
        same_size = await self.transport.json("GET", FILES, params={"size": size, "limit": 1})
        if same_size["total"] == 0:
            return None, None
        sha256 = await asyncio.to_thread(_hash_file, path)
        return sha256, await self.find(sha256, size)

    async def _simple(self, path: Path, name: str, options: UploadOptions) -> UploadResult:
        data = await asyncio.to_thread(path.read_bytes)
        sha256 = hashlib.sha256(data).hexdigest()
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        response = await self.transport.request(
            "POST", FILES, files={"file": (name, data, content_type)}
        )
        stored = FileInfo.from_json(response.json())
        _verify(stored, sha256, len(data))
        if options.dataset_id:
            updated = await self.transport.json(
                "PATCH", f"{FILES}/{stored.id}", json={"dataset_id": options.dataset_id}
            )
            stored = FileInfo.from_json(updated)
        _report(options.progress, len(data), len(data))
        return UploadResult(stored, sent_bytes=len(data))

    async def import_path(self, server_path: str, name: str | None = None) -> FileInfo:
        body = {"path": server_path, **({"name": name} if name else {})}
        return FileInfo.from_json(await self.transport.json("POST", f"{FILES}/import", json=body))


class _Multipart:
    """One multipart upload, fresh or resumed."""

    def __init__(
        self,
        uploader: Uploader,
        path: Path,
        stat: os.stat_result,
        name: str,
        sha256: str | None,
        options: UploadOptions,
    ) -> None:
        self.up = uploader
        self.t = uploader.transport
        self.path = path
        self.size = stat.st_size
        self.mtime_ns = stat.st_mtime_ns
        self.name = name
        self.known_sha256 = sha256
        self.options = options
        self.done = 0
        self.sent = 0
        self.resumed = 0
        self.trusted = 0  # parts kept on resume without a content check

    async def run(self) -> UploadResult:
        pending, stored, finished = await self._resume()
        if finished is not None:
            _report(self.options.progress, self.size, self.size)
            return UploadResult(finished, resumed_parts=pending.part_count if pending else 0)
        if pending is None:
            pending, stored = await self._start(), {}
        etags, sha256 = await self._send(pending, stored)
        parts = [{"number": n, "etag": etags[n]} for n in range(1, pending.part_count + 1)]
        # The SHA-256 goes along when a stored part was kept unchecked (an opaque ETag),
        # so the server refuses other bytes before recording them; servers older than
        # that field never hand out opaque ETags.
        body = {"parts": parts, **({"sha256": sha256} if self.trusted else {})}
        completed = await self.t.json(
            "POST", f"{FILES}/uploads/{pending.upload_id}/complete", json=body
        )
        self.up.ledger.forget(self.t.base_url, self.path)
        result = FileInfo.from_json(completed)
        _verify(result, sha256, self.size)
        return UploadResult(result, resumed_parts=self.resumed, sent_bytes=self.sent)

    async def _resume(
        self,
    ) -> tuple[PendingUpload | None, dict[int, tuple[str, int]], FileInfo | None]:
        """The remembered upload of this file, its stored parts, or the file it became."""
        ledger, server = self.up.ledger, self.t.base_url
        pending = ledger.find(server, self.path, self.size, self.mtime_ns)
        if pending is None:
            if (stale := ledger.stale(server, self.path)) is not None:
                await self._abort(stale)  # the local file changed since
            return None, {}, None
        try:
            upload = await self.t.json("GET", f"{FILES}/uploads/{pending.upload_id}")
        except NotFound:
            ledger.forget(server, self.path)
            return None, {}, None
        if upload["status"] == "completed" and upload.get("file_id"):
            ledger.forget(server, self.path)
            info = await self.t.json("GET", f"{FILES}/{upload['file_id']}")
            return pending, {}, FileInfo.from_json(info)
        if upload["status"] != "open":
            ledger.forget(server, self.path)
            return None, {}, None
        stored = {int(p["number"]): (str(p["etag"]), int(p["size"])) for p in upload["parts"]}
        return pending, stored, None

    async def _abort(self, upload_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self.t.request("DELETE", f"{FILES}/uploads/{upload_id}")
        self.up.ledger.forget(self.t.base_url, self.path)

    async def _start(self) -> PendingUpload:
        body = {
            "name": self.name,
            "size": self.size,
            "content_type": mimetypes.guess_type(self.name)[0],
            "sha256": self.known_sha256,
            "dataset_id": self.options.dataset_id,
        }
        plan = await self.t.json("POST", f"{FILES}/uploads", json=body)
        pending = PendingUpload(
            server=self.t.base_url,
            path=str(self.path),
            size=self.size,
            mtime_ns=self.mtime_ns,
            upload_id=str(plan["id"]),
            part_size=int(plan["part_size"]),
            part_count=int(plan["part_count"]),
            part_urls={str(p["number"]): str(p["url"]) for p in plan["parts"]},
        )
        self.up.ledger.remember(pending)
        return pending

    async def _send(
        self, pending: PendingUpload, stored: dict[int, tuple[str, int]]
    ) -> tuple[dict[int, str], str]:
        """Read every part in order (hashing), send what the server lacks; (ETags, SHA-256)."""
        concurrency = max(1, self.options.concurrency)
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=concurrency)
        etags: dict[int, str] = {}
        digest = hashlib.sha256()
        fd = os.open(self.path, os.O_RDONLY)

        async def read() -> None:
            for number in range(1, pending.part_count + 1):
                offset = (number - 1) * pending.part_size
                length = min(pending.part_size, self.size - offset)
                have = stored.get(number)
                same_size = have is not None and have[1] == length
                check = same_size and have is not None and MD5_ETAG.fullmatch(have[0]) is not None
                data, md5 = await asyncio.to_thread(_read_part, fd, offset, length, digest, check)
                if have is not None and same_size and (md5 == have[0] or not check):
                    etags[number] = have[0]
                    self.resumed += 1
                    self.trusted += 0 if check else 1
                    self._progress(length)
                    continue
                await queue.put((number, data))
            for _ in range(concurrency):
                await queue.put(None)

        async def send() -> None:
            while (item := await queue.get()) is not None:
                number, data = item
                etags[number] = await self.t.put_signed(pending.part_urls[str(number)], data)
                self.sent += len(data)
                self._progress(len(data))

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(read())
                for _ in range(concurrency):
                    group.create_task(send())
        finally:
            os.close(fd)
        return etags, digest.hexdigest()

    def _progress(self, amount: int) -> None:
        self.done += amount
        _report(self.options.progress, self.done, self.size)


def _read_part(
    fd: int, offset: int, length: int, digest: Any, check: bool
) -> tuple[bytes, str | None]:
    """The part's bytes, added to the running SHA-256 (parts come in order), and their MD5
    when a stored copy is to be checked against it."""
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise IntegrityError(f"the file got shorter while being read ({offset + len(data)} bytes)")
    digest.update(data)
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest() if check else None
    return data, md5


def _hash_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _verify(stored: FileInfo, sha256: str, size: int) -> None:
    if stored.size != size or (stored.sha256 and stored.sha256 != sha256):
        raise IntegrityError(
            f"the server stored {stored.size} bytes with SHA-256 {stored.sha256} for file "
            f"{stored.id}, but {size} bytes with SHA-256 {sha256} were sent"
        )


def _report(progress: ProgressCallback | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)
