"""Running a batch: every input is uploaded (unless it is already), gets one job, is
followed to its end, and has its artefacts downloaded into `out/<input name>/`.

Each step is recorded in the manifest before the next begins, so a rerun picks up
where this one stopped and never submits an input's job twice: a submission that may
have reached the server is looked up by the input's job tag first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from client.api import AsyncClient
from client.batch.inputs import Input
from client.batch.manifest import (
    CANCELLED,
    DOWNLOADING,
    FAILED,
    PENDING,
    SUBMITTING,
    SUCCEEDED,
    UPLOADED,
    UPLOADING,
    WITH_JOB,
    Entry,
    Manifest,
)
from client.errors import ApertureError, ProblemError
from client.models import Job, JobEvent
from client.schema import PLACEHOLDER_FILE_ID, check_params, file_parameter


class Display(Protocol):
    def start(self, manifest: Manifest) -> None: ...
    def changed(self, entry: Entry) -> None: ...
    def progressed(self, entry: Entry) -> None: ...
    def stop(self) -> None: ...


async def prepare(
    client: AsyncClient, manifest_path: Path, function: str, params: dict[str, Any], out: Path
) -> Manifest:
    """The manifest to run: the existing one (if it is for this function and params) or
    a new one. The params are checked against the function's schema here, before any
    upload, with a stand-in for the file parameter."""
    spec = await client.function(function)
    file_param = file_parameter(spec)
    check_params(spec, {**params, file_param: PLACEHOLDER_FILE_ID})
    if manifest_path.exists():
        manifest = Manifest.load(manifest_path)
        if (manifest.function, manifest.params) != (function, params):
            raise ValueError(
                f"{manifest_path} records a batch of {manifest.function!r} with other params; "
                "use another manifest for a different batch"
            )
        return manifest
    return Manifest(
        path=manifest_path,
        server=client.url,
        function=function,
        params=params,
        file_param=file_param,
        out=str(out.resolve()),
    )


def merge(manifest: Manifest, inputs: Sequence[Input], *, retry_failed: bool) -> list[Entry]:
    """Add new inputs to the manifest; the entries this run works on."""
    for item in inputs:
        if manifest.entry(item.key) is None:
            manifest.entries.append(
                Entry(key=item.key, name=item.name, path=item.path, file_id=item.file_id)
            )
    keys = {item.key for item in inputs}
    todo = []
    for entry in manifest.entries:
        if entry.key not in keys:
            continue
        if entry.status in (FAILED, CANCELLED) and retry_failed:
            # The stored file is reused; a new job is submitted under a new tag.
            entry.job_id, entry.error, entry.stage = None, None, None
            entry.status = UPLOADED if entry.file_id else PENDING
        if not entry.final:
            todo.append(entry)
    manifest.save()
    return todo


class BatchRunner:
    def __init__(
        self,
        client: AsyncClient,
        manifest: Manifest,
        display: Display,
        *,
        concurrency: int = 4,
        upload_concurrency: int | None = None,
    ) -> None:
        self.client = client
        self.manifest = manifest
        self.display = display
        self.concurrency = concurrency
        self.upload_concurrency = upload_concurrency

    def __repr__(self) -> str:
        return f"BatchRunner({self.manifest.function!r}, {len(self.manifest.entries)} inputs)"

    async def run(self, todo: Sequence[Entry]) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        self.display.start(self.manifest)
        try:
            async with asyncio.TaskGroup() as group:
                for entry in todo:
                    group.create_task(self._one(entry, slots))
        finally:
            self.display.stop()

    def _record(self, entry: Entry) -> None:
        self.manifest.save()
        self.display.changed(entry)

    async def _one(self, entry: Entry, slots: asyncio.Semaphore) -> None:
        async with slots:
            stage = "upload"
            try:
                if entry.file_id is None:
                    await self._upload(entry)
                stage = "submit"
                if entry.job_id is None:
                    await self._submit(entry)
                stage = "run"
                job = await self.client.wait(entry.job_id or "", on_event=self._follow(entry))
                if job.status != SUCCEEDED:
                    reason = f"{job.error.type}: {job.error.message}" if job.error else job.status
                    entry.fail("run", reason, CANCELLED if job.status == CANCELLED else FAILED)
                    self._record(entry)
                    return
                stage = "download"
                await self._download(entry, job)
            except (ApertureError, OSError, ValueError) as error:
                entry.fail(stage, _reason(error))
                self._record(entry)

    async def _upload(self, entry: Entry) -> None:
        entry.status, entry.progress = UPLOADING, 0.0
        self._record(entry)

        def progress(done: int, total: int) -> None:
            entry.progress = done / total if total else 1.0
            self.display.progressed(entry)

        uploaded = await self.client.upload(
            entry.path or "", progress=progress, concurrency=self.upload_concurrency
        )
        entry.file_id, entry.status = uploaded.file.id, UPLOADED
        entry.message = "already stored" if uploaded.skipped else None
        self._record(entry)

    async def _submit(self, entry: Entry) -> None:
        tag = self.manifest.tag(entry)
        if entry.status == SUBMITTING:  # the last run may have reached the server
            found = await self.client.jobs(tag=tag, limit=1)
            if found.items:
                self._submitted(entry, found.items[0])
                return
        entry.status = SUBMITTING
        self._record(entry)
        params = {**self.manifest.params, self.manifest.file_param: entry.file_id}
        job = await self.client.submit(
            self.manifest.function, params, name=entry.name, tags=[tag], check=False
        )
        self._submitted(entry, job)

    def _submitted(self, entry: Entry, job: Job) -> None:
        entry.job_id, entry.status, entry.progress = job.id, job.status, 0.0
        self._record(entry)

    def _follow(self, entry: Entry) -> Any:
        def on_event(event: JobEvent) -> None:
            if event.progress is not None:
                entry.progress = event.progress
            if event.message and event.kind != "status":
                entry.message = event.message
            if event.status in WITH_JOB and event.status != entry.status:
                entry.status = event.status
                self._record(entry)
            else:
                self.display.progressed(entry)

        return on_event

    async def _download(self, entry: Entry, job: Job) -> None:
        entry.status = DOWNLOADING
        self._record(entry)
        out = Path(self.manifest.out)
        folder = out / entry.name
        paths = await self.client.download_artefacts(job, folder)
        summary = folder / "result.json"
        await asyncio.to_thread(_write_json, summary, job.result or {})
        entry.artefacts = [str(p.relative_to(out)) for p in [*paths, summary]]
        entry.status, entry.error, entry.stage, entry.progress = SUCCEEDED, None, None, 1.0
        self._record(entry)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _reason(error: Exception) -> str:
    if isinstance(error, ProblemError):
        return f"{error.status} {error.code}: {error.detail}"
    return f"{type(error).__name__}: {error}"


async def cancel_jobs(client: AsyncClient, manifest: Manifest) -> int:
    """Cancel every job of the manifest that has not ended; mark those inputs cancelled."""
    targets = [e for e in manifest.entries if e.job_id and not e.final]
    results = await asyncio.gather(
        *(client.cancel(e.job_id or "") for e in targets), return_exceptions=True
    )
    for entry, result in zip(targets, results, strict=True):
        if isinstance(result, Job) and result.status == SUCCEEDED:
            continue  # finished before the cancel: the next run downloads it
        entry.fail("run", "cancelled by the user", CANCELLED)
    manifest.save()
    return len(targets)


async def refresh(client: AsyncClient, manifest: Manifest) -> None:
    """Bring the statuses of inputs with a running job up to date (for `batch status`)."""
    targets = [e for e in manifest.entries if e.job_id and e.status in WITH_JOB]
    jobs = await asyncio.gather(*(client.job(e.job_id or "") for e in targets))
    for entry, job in zip(targets, jobs, strict=True):
        if job.status in WITH_JOB:
            entry.status = job.status


__all__ = ["PENDING", "BatchRunner", "cancel_jobs", "merge", "prepare", "refresh"]
