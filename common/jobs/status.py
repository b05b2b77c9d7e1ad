"""Job statuses and the transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    queued = "queued"
    """Recorded and waiting for a worker."""
    running = "running"
    """A worker has claimed it (attempt counted) and is heart-beating."""
    cancelling = "cancelling"
    """Cancellation was asked for while running; the capability is winding down."""
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.succeeded, Status.failed, Status.cancelled})
ACTIVE = frozenset({Status.running, Status.cancelling})

#: target -> statuses it may be reached from. `running -> queued` is the retry of a job
#: whose worker was lost while attempts remain; it is not reachable through the API.
#: A job that finishes while cancelling keeps the outcome it actually had.
ALLOWED_FROM: dict[Status, frozenset[Status]] = {
    Status.queued: frozenset({Status.running}),
    Status.running: frozenset({Status.queued}),
    Status.cancelling: frozenset({Status.running}),
    Status.succeeded: frozenset({Status.running, Status.cancelling}),
    Status.failed: frozenset({Status.queued, Status.running, Status.cancelling}),
    Status.cancelled: frozenset({Status.queued, Status.cancelling}),
}
