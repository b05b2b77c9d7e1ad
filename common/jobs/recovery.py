"""What becomes of a job whose worker or call is gone or overran, decided once.

Both executors watch their runs from outside (the local pool's supervisor, the Modal
supervisor); when a run ends without finishing its job they name the cause as a `Loss`
and hand it to `recover`, which applies the one policy:

- a job past its timeout fails with error type `timeout` (a retry would time out again);
- any other loss (a crash, a silent worker, a stopped server, a cancel past its grace
  period) goes through `JobStore.lose`: retried while attempts remain, else failed, and a
  job being cancelled ends cancelled;
- a job its run never started (still queued under the run's handle) is handed out again
  or failed, as the executor says (`Unstarted`).

The caller resubmits a job that came back `queued` (the local pool's scan finds it by
itself; Modal needs a new call).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from common.jobs.models import JobRecord
from common.jobs.status import ACTIVE, Status
from common.jobs.store import JobStore
from common.records import Job

#: Event message of a job stopped because it ignored a cancel for the grace period.
CANCEL_OVERDUE = "cancelled: stopped after the grace period"


class Cause(StrEnum):
    """Why a run ended without finishing its job."""

    crashed = "crashed"  # the process or call ended (signal, exit, OOM, expired output)
    silent = "silent"  # no heartbeat for the heartbeat timeout: dead or frozen
    timed_out = "timed-out"  # ran past its capability's `timeout_s`
    cancel_overdue = "cancel-overdue"  # still running a grace period after a cancel
    orphaned = "orphaned"  # the executor instance that held it is gone (a restart)


@dataclass(frozen=True)
class Loss:
    """A cause and the message the job's error and event carry."""

    cause: Cause
    message: str

    @classmethod
    def crashed(cls, message: str) -> Loss:
        return cls(Cause.crashed, message)

    @classmethod
    def silent(cls, timeout_s: float, *, detail: str | None = None) -> Loss:
        message = f"no heartbeat for {timeout_s:.0f} s"
        return cls(Cause.silent, f"{message} and {detail}" if detail else message)

    @classmethod
    def timed_out(cls, timeout_s: float) -> Loss:
        return cls(Cause.timed_out, f"timed out after {timeout_s:.0f} s")

    @classmethod
    def cancel_overdue(cls) -> Loss:
        return cls(Cause.cancel_overdue, CANCEL_OVERDUE)

    @classmethod
    def orphaned(cls, message: str) -> Loss:
        return cls(Cause.orphaned, message)


class Unstarted(StrEnum):
    """What to do with a job whose run ended before the job started."""

    requeue = "requeue"  # the run failed, not the job: let any instance take it again
    fail = "fail"  # the same run would fail again (a call Modal could not start)


def recover(
    jobs: JobStore, job_id: uuid.UUID, loss: Loss, *, handle: str, unstarted: Unstarted
) -> JobRecord | None:
    """Apply the policy to the job held under `handle`; returns the job's new record, or
    None when there was nothing to change (it had finished, or another holder has it)."""
    if loss.cause is Cause.timed_out:
        failed = jobs.try_transition(
            job_id,
            Status.failed,
            guards=[Job.status.in_(ACTIVE)],
            error={"type": "timeout", "message": loss.message},
            message=loss.message,
        )
        if failed is not None:
            return failed
    lost = jobs.lose(job_id, loss.message)
    if lost is not None:
        return lost
    if unstarted is Unstarted.requeue:
        jobs.unclaim(job_id, handle)
        return None
    return jobs.try_transition(
        job_id,
        Status.failed,
        guards=[Job.status == Status.queued, Job.handle == handle],
        error={"type": "executor", "message": loss.message},
        message=loss.message,
    )
