"""`JobContext`: the real implementation of the capability `Context` protocol."""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import IO, Any, Literal

from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError

from common.arrays import gpu_available
from common.capabilities import ChildOutcome, StoredFile, get_capability
from common.jobs.models import JobRecord
from common.jobs.service import JobService
from common.jobs.status import Status
from common.objects import ObjectStore
from common.records.engine import connection_lost
from common.runtime import Runtime

log = logging.getLogger("aperture.runner")

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
        self._best_effort(
            lambda: self._runtime.jobs.report(
                self.job_id, kind="progress", progress=fraction, message=message or None
            )
        )

    def log(self, message: str) -> None:
        self._best_effort(
            lambda: self._runtime.jobs.report(self.job_id, kind="log", message=message)
        )

    def cancelled(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_poll >= CANCEL_POLL_S:
            self._last_cancel_poll = now
            self._best_effort(lambda: self._runtime.jobs.status_of(self.job_id))
        return self._cancelled

    def _best_effort(self, call: Callable[[], Status | None]) -> None:
        """Progress, log lines and cancel polls while the database is unreachable are
        skipped (the next one, or the final status write, gets through), so a database
        restart does not fail the work."""
        try:
            self._note_status(call())
        except DBAPIError as error:
            if not connection_lost(error):
                raise
            log.warning("job %s: database unreachable; progress not recorded", self.job_id)

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
        """Wait for every child to end; a cancelled parent cancels its children first.

        Each poll reads only the statuses of the children still running and of this job
        (for a cancellation request) in one light query; the children's records are
        loaded once, when all have ended.
        """
        pending = list(job_ids)
        asked_to_cancel = False
        self._runtime.waiting(True)
        try:
            while True:
                seen = self._runtime.jobs.statuses([*pending, self.job_id])
                # a missing child counts as ended: get_many below says it is not found
                pending = [j for j in pending if j in seen and not seen[j].terminal]
                if not pending:
                    return [_outcome(job) for job in self._runtime.jobs.get_many(job_ids)]
                if not self._cancelled:
                    self._note_status(seen.get(self.job_id))
                if not asked_to_cancel and self._cancelled:
                    asked_to_cancel = True
                    for job_id in pending:
                        self._runtime.jobs.try_cancel(job_id)
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
