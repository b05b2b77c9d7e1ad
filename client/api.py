"""`AsyncClient`: the one implementation of the client (the sync `Client` runs it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from client import jobs as _jobs
from client.auth import Credential
from client.downloads import download as _download
from client.downloads import local_name
from client.errors import JobFailed
from client.jobs import EventCallback
from client.ledger import UploadLedger
from client.models import FileInfo, Function, Job, JobEvent, Page, UploadResult
from client.schema import check_params
from client.transport import Transport
from client.uploads import SIMPLE_MAX_BYTES, ProgressCallback, Uploader, UploadOptions

API = "/api/v1"


class AsyncClient:
    """A typed client of the Aperture HTTP API.

    >>> async with AsyncClient("http://127.0.0.1:8000", ApiKey(key)) as aperture:  # doctest: +SKIP
    ...     uploaded = await aperture.upload("stack.nd2")
    ...     job = await aperture.run("metadata", {"file_id": uploaded.file.id})
    """

    def __init__(
        self,
        url: str,
        credential: Credential | None = None,
        *,
        timeout: float = 60.0,
        part_concurrency: int = 8,
        state_dir: Path | None = None,
        retries: int = 3,
    ) -> None:
        self.transport = Transport(url, credential, timeout=timeout, retries=retries)
        self.part_concurrency = part_concurrency
        self._uploader = Uploader(self.transport, UploadLedger(state_dir), self._my_id)
        self._functions: dict[str, Function] = {}
        self._me: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r}, {self.transport.credential!r})"

    @property
    def url(self) -> str:
        return self.transport.base_url

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.transport.aclose()

    # account -------------------------------------------------------------------------

    async def me(self) -> dict[str, Any]:
        """The signed-in account (`GET /auth/me`), remembered after the first call."""
        if self._me is None:
            self._me = dict(await self.transport.json("GET", f"{API}/auth/me"))
        return self._me

    async def _my_id(self) -> str:
        return str((await self.me())["id"])

    async def create_api_key(self, name: str) -> str:
        """A new API key for scripts (the whole key is only in this answer)."""
        body = await self.transport.json("POST", f"{API}/auth/api-keys", json={"name": name})
        return str(body["key"])

    # functions -------------------------------------------------------------------------

    async def functions(self) -> list[Function]:
        found = [
            Function.from_json(f) for f in await self.transport.json("GET", f"{API}/functions")
        ]
        self._functions.update({f.name: f for f in found})
        return found

    async def function(self, name: str) -> Function:
        """One capability with its schemas (remembered for this client's life)."""
        if name not in self._functions:
            data = await self.transport.json("GET", f"{API}/functions/{name}")
            self._functions[name] = Function.from_json(data)
        return self._functions[name]

    async def check_params(self, function: str, params: Mapping[str, Any]) -> None:
        """`ParamsInvalid` unless `params` satisfy the function's JSON Schema."""
        check_params(await self.function(function), params)

    # files -----------------------------------------------------------------------------

    async def upload(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        dataset_id: str | None = None,
        force: bool = False,
        concurrency: int | None = None,
        progress: ProgressCallback | None = None,
        simple_max_bytes: int = SIMPLE_MAX_BYTES,
    ) -> UploadResult:
        """Upload a local file, or find the caller's file with the same bytes (unless
        `force`). Large files go in `concurrency` parallel parts and resume where an
        interrupted run stopped."""
        options = UploadOptions(
            name=name,
            dataset_id=dataset_id,
            force=force,
            concurrency=concurrency or self.part_concurrency,
            progress=progress,
            simple_max_bytes=simple_max_bytes,
        )
        return await self._uploader.upload(Path(path), options)

    async def import_path(self, server_path: str, *, name: str | None = None) -> FileInfo:
        """Copy a file from the server's disk (under its APERTURE_IMPORT_ROOTS)."""
        return await self._uploader.import_path(server_path, name)

    async def find_file(self, sha256: str, size: int) -> FileInfo | None:
        """The caller's live file with this SHA-256 and size, if any."""
        return await self._uploader.find(sha256, size)

    async def file(self, file_id: str) -> FileInfo:
        return FileInfo.from_json(await self.transport.json("GET", f"{API}/files/{file_id}"))

    async def files(
        self,
        *,
        dataset_id: str | None = None,
        name: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[FileInfo]:
        query = {"dataset_id": dataset_id, "name": name, "kind": kind}
        body = await self.transport.json(
            "GET", f"{API}/files", params={**query, "limit": limit, "offset": offset}
        )
        return _page(body, FileInfo.from_json)

    async def dataset_files(self, dataset_id: str) -> list[FileInfo]:
        """Every file of a dataset."""
        found: list[FileInfo] = []
        while True:
            page = await self.files(dataset_id=dataset_id, limit=500, offset=len(found))
            found.extend(page.items)
            if not page.items or len(found) >= page.total:
                return found

    async def download(self, file_id: str, dest: str | Path) -> Path:
        """Download a file to `dest` (a folder: under the file's own name), verified
        against its SHA-256."""
        info = await self.file(file_id)
        target = Path(dest)
        if target.is_dir():
            target = target / local_name(info.name)
        return await _download(self.transport, info, target)

    # jobs ------------------------------------------------------------------------------

    async def submit(
        self,
        function: str,
        params: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        tags: Iterable[str] = (),
        check: bool = True,
    ) -> Job:
        """Submit a job; `params` are checked against the function's schema first."""
        params = dict(params or {})
        if check:
            await self.check_params(function, params)
        body = {"function": function, "params": params, "name": name, "tags": list(tags)}
        response = await self.transport.request("POST", f"{API}/jobs", json=body)
        record = _jobs.job_from_submission(response)
        if record is None:  # 202 Accepted with only a Location
            return Job.from_json(await self.transport.json("GET", response.headers["location"]))
        return Job.from_json(record)

    async def job(self, job_id: str) -> Job:
        return await _jobs.job(self.transport, job_id)

    async def jobs(
        self,
        *,
        status: str | None = None,
        function: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Job]:
        query = {"status": status, "function": function, "tag": tag}
        body = await self.transport.json(
            "GET", f"{API}/jobs", params={**query, "limit": limit, "offset": offset}
        )
        return _page(body, Job.from_json)

    async def cancel(self, job_id: str) -> Job:
        """Ask a job to stop: a queued one ends at once, a running one winds down."""
        return Job.from_json(await self.transport.json("POST", f"{API}/jobs/{job_id}/cancel"))

    async def events(self, job_id: str, *, after: int = 0) -> AsyncIterator[JobEvent]:
        """The job's events (status, progress, log lines), live, until it ends."""
        async for event in _jobs.stream_events(self.transport, job_id, after):
            yield event

    async def logs(self, job_id: str, *, follow: bool = False) -> AsyncIterator[str]:
        """The job's log lines; with `follow`, also those still to come."""
        events = (
            self.events(job_id)
            if follow
            else _aiter(await _jobs.logged_events(self.transport, job_id))
        )
        async for event in events:
            if event.kind == "log" and event.message is not None:
                yield event.message

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
        poll_interval: float = 1.0,
        use_sse: bool = True,
    ) -> Job:
        """Wait for a job to end (SSE, polling where SSE fails); its final record."""
        return await _jobs.wait(
            self.transport,
            job_id,
            timeout=timeout,
            on_event=on_event,
            poll_interval=poll_interval,
            use_sse=use_sse,
        )

    async def run(
        self,
        function: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
    ) -> Job:
        """Submit and wait; `JobFailed` unless the job succeeded."""
        submitted = await self.submit(function, params)
        finished = await self.wait(submitted.id, timeout=timeout, on_event=on_event)
        if finished.status != "succeeded":
            raise JobFailed(finished)
        return finished

    async def download_artefacts(self, job: Job | str, dest: str | Path) -> list[Path]:
        """Download the files a job made (ids in its result) into the folder `dest`."""
        record = job if isinstance(job, Job) else await self.job(job)
        folder = Path(dest)
        folder.mkdir(parents=True, exist_ok=True)
        infos = await asyncio.gather(*(self.file(i) for i in record.artefact_ids()))
        taken: set[str] = set()
        paths = []
        for info in infos:
            name = _unique(local_name(info.name), taken)
            paths.append(await _download(self.transport, info, folder / name))
        return paths


def _unique(name: str, taken: set[str]) -> str:
    stem, dot, suffix = name.partition(".")
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}{dot}{suffix}"
    taken.add(candidate)
    return candidate


async def _aiter(items: Iterable[JobEvent]) -> AsyncIterator[JobEvent]:
    for item in items:
        yield item


def _page(body: Mapping[str, Any], parse: Any) -> Page[Any]:
    return Page(
        items=[parse(item) for item in body["items"]],
        total=int(body["total"]),
        limit=int(body["limit"]),
        offset=int(body["offset"]),
    )
