"""The executor interface: submit / poll / cancel by handle.

It follows Modal's model (`Function.spawn` -> FunctionCall id, `FunctionCall.from_id`,
`.cancel()`), so the local pool and the Modal executor are interchangeable. The job
record, not the executor, is the source of truth for status: executors only start,
watch and stop the processes that run `run_job`.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any, Protocol


class HandleState(StrEnum):
    pending = "pending"  # accepted, not yet running
    running = "running"
    finished = "finished"  # the process ended; read the job record for the outcome
    lost = "lost"  # the executor no longer knows the handle (restart, expired output)


class Executor(Protocol):
    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def submit(self, job_id: uuid.UUID) -> str:
        """Start running the job soon; returns the handle stored on the job."""

    def poll(self, handle: str) -> HandleState: ...
    def cancel(self, handle: str) -> None:
        """Stop the run behind `handle` (after the cooperative grace period)."""

    def health(self) -> dict[str, Any]: ...
