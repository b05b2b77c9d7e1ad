"""`run_job(job_id)`: the one entrypoint that runs a job, in a local worker process and in
a Modal container alike. It claims the job (queued -> running), runs the capability with a
`JobContext`, and always writes a final status, even when the capability fails or the
job is cancelled underneath it."""

from __future__ import annotations

import logging
import threading
import traceback
import uuid
from typing import Any

from pydantic import ValidationError

from common.capabilities import VALIDATED, get_capability
from common.errors import ApertureError, JobCancelled, UnknownCapability
from common.jobs.context import JobContext
from common.jobs.models import JobRecord
from common.jobs.status import Status
from common.records import Job
from common.runtime import Runtime

log = logging.getLogger("aperture.runner")


class _Heartbeat(threading.Thread):
    """Keeps `heartbeat_at` fresh while the capability runs (even in long C calls that
    hold no Python locks), so a silent job means a dead or frozen process."""

    def __init__(self, runtime: Runtime, job_id: uuid.UUID) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.runtime, self.job_id = runtime, job_id
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.runtime.settings.heartbeat_interval_s):
            try:
                if self.runtime.jobs.heartbeat(self.job_id) is None:
                    return
            except Exception:  # a missed beat is survivable; the next one retries
                log.warning("heartbeat failed for job %s", self.job_id, exc_info=True)


def run_job(job_id: uuid.UUID, runtime: Runtime, *, handle: str | None = None) -> Status | None:
    """Run one attempt of the job; returns the status it ended in (None if not started,
    e.g. it was cancelled while queued or another worker holds it)."""
    job = runtime.jobs.start(job_id, handle)
    if job is None:
        return None
    heartbeat = _Heartbeat(runtime, job_id)
    heartbeat.start()
    try:
        return _finish(runtime, job, *_execute(runtime, job))
    finally:
        heartbeat.stopped.set()


def _execute(runtime: Runtime, job: JobRecord) -> tuple[Status, dict[str, Any]]:
    """Run the capability; map every outcome to (status, fields of the final write)."""
    try:
        capability = get_capability(job.function)
        # Params were validated when the job was submitted (JobService.submit). Parsing
        # them back still refuses what does not parse, and keeps what submit derived.
        params = capability.params.model_validate(job.params, context=VALIDATED)
        ctx = JobContext(job, runtime)
        result = capability.run(params, ctx)
        if ctx.cancelled():
            return Status.cancelled, {"message": "cancelled"}
        payload = capability.result.model_validate(result).model_dump(mode="json")
        return Status.succeeded, {"result": payload, "progress": 1.0, "message": "succeeded"}
    except JobCancelled:
        return Status.cancelled, {"message": "cancelled"}
    except UnknownCapability as error:
        return Status.failed, _error("unknown-function", error.message)
    except ValidationError as error:
        return Status.failed, _error("invalid-params", str(error))
    except ApertureError as error:
        return Status.failed, _error(error.code, error.message)
    except Exception as error:
        runtime.jobs.report(job.id, kind="log", message=traceback.format_exc(limit=20))
        return Status.failed, _error("internal", f"{type(error).__name__}: {error}")


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}, "message": message}


def _finish(
    runtime: Runtime, job: JobRecord, status: Status, fields: dict[str, Any]
) -> Status | None:
    """Write the final status; a failure with attempts left goes back to the queue."""
    jobs = runtime.jobs
    if status is Status.failed and job.attempts < job.max_attempts:
        retried = jobs.try_transition(
            job.id, Status.queued, handle=None, **fields, guards=[Job.status == Status.running]
        )
        if retried is not None:
            runtime.submit(job.id)
            return Status.queued
    if status is Status.cancelled:
        done = jobs.try_transition(job.id, Status.cancelled, **fields)
    else:
        done = jobs.try_transition(job.id, status, **fields)
        if done is None and jobs.status_of(job.id) is Status.cancelling:
            done = jobs.try_transition(job.id, Status.cancelled, message="cancelled")
    return done.status if done else jobs.status_of(job.id)
