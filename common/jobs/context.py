"""`JobContext`: the real implementation of the capability `Context` protocol."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from typing import IO, Any, Literal

from pydantic import BaseModel

from common.arrays import gpu_available
from common.capabilities import ChildOutcome, StoredFile, get_capability
from common.jobs.models import JobRecord
from common.jobs.service import JobService
from common.jobs.status import Status
from common.objects import ObjectStore
from common.runtime import Runtime

#: Minimum seconds between progress writes; reports in between only update memory.
PROGRESS_INTERVAL_S = 0.2
#: Seconds between looks at the database for a cancellation request.
CANCEL_POLL_S = 0.2
#: Seconds between looks at children's statuses in `gather`.
GATHER_POLL_S = 0.1


class JobContext:
    """What a running capability sees of the world; one per job attempt."""

    def __init__(self, job: JobRecord, runtime: Runtime) -> None:
        self.job_id = job.id
        self.owner_id = job.owner_id
        self._job = job
        self._runtime = runtime
        self._last_progress_write = 0.0
        self._cancelled = False
        self._last_cancel_poll = 0.0
        gpu_wanted = get_capability(job.function).resources.gpu is not None
        self.device: Literal["cpu", "gpu"] = "gpu" if gpu_wanted and gpu_available() else "cpu"

    def __repr__(self) -> str:
        return f"JobContext(job_id={self.job_id}, function={self._job.function!r})"

    @property
    def objects(self) -> ObjectStore:
        return self._runtime.objects

    @property
    def runtime(self) -> Runtime:
        """The job process's runtime (database, settings). For platform capabilities that
        keep records (cleanup, slide records); compute capabilities use the members above."""
        return self._runtime

    def progress(self, fraction: float, message: str = "") -> None:
        if not math.isfinite(fraction):
            raise ValueError(f"progress must be a finite number, got {fraction}")
        fraction = min(max(fraction, 0.0), 1.0)
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_progress_write < PROGRESS_INTERVAL_S:
            return
        self._last_progress_write = now
        status = self._runtime.jobs.report(
            self.job_id, kind="progress", progress=fraction, message=message or None
        )
        self._note_status(status)

    def log(self, message: str) -> None:
        self._note_status(self._runtime.jobs.report(self.job_id, kind="log", message=message))

    def cancelled(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_poll >= CANCEL_POLL_S:
            self._last_cancel_poll = now
            self._note_status(self._runtime.jobs.status_of(self.job_id))
        return self._cancelled

    def _note_status(self, status: Status | None) -> None:
        # None: the job is no longer active (cancelled from queued, or ended elsewhere).
        if status is None or status is Status.cancelling:
            self._cancelled = True

    def file(self, file_id: uuid.UUID) -> StoredFile:
        return self._runtime.files.get(file_id, owner_id=self.owner_id)

    def save_file(
        self,
        name: str,
        source: bytes | IO[bytes],
        *,
        content_type: str | None = None,
        kind: str | None = None,
    ) -> StoredFile:
        return self._runtime.files.add(
            source,
            name=name,
            owner_id=self.owner_id,
            content_type=content_type,
            kind=kind,
            source_job_id=self.job_id,
        )

    def spawn(self, function: str, params: BaseModel | dict[str, Any]) -> uuid.UUID:
        """Submit a child job on this job's executor (see `JobService.submit`)."""
        child = JobService.in_worker(self._runtime, self._job.executor).submit(
            function, params, owner_id=self.owner_id, parent_id=self.job_id
        )
        return child.id

    def gather(self, job_ids: Sequence[uuid.UUID]) -> list[ChildOutcome]:
        """Wait for every child to end; a cancelled parent cancels its children first."""
        pending = list(job_ids)
        asked_to_cancel = False
        self._runtime.waiting(True)
        try:
            while True:
                jobs = self._runtime.jobs.get_many(pending)
                if all(job.status.terminal for job in jobs):
                    return [_outcome(job) for job in jobs]
                if not asked_to_cancel and self.cancelled():
                    asked_to_cancel = True
                    for job in jobs:
                        if not job.status.terminal:
                            self._runtime.jobs.try_cancel(job.id)
                time.sleep(GATHER_POLL_S)
        finally:
            self._runtime.waiting(False)


def _outcome(job: JobRecord) -> ChildOutcome:
    return ChildOutcome(
        job_id=job.id,
        status=job.status.value,
        result=job.result,
        error=job.error.model_dump() if job.error else None,
    )
