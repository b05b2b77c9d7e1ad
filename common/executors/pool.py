"""The local pool's workers and how many of them to keep.

Sizing, decided in one place (`PoolPlan`):

- `size` workers always (`APERTURE_WORKERS`): that many jobs run at once;
- a parent blocked in `ctx.gather` lends its slot, so up to `size * EXTRA_WORKERS_FACTOR`
  more jobs may run while parents wait (fan-out can never deadlock a small pool);
- one more worker than could be busy is kept started and idle: the warm spare. A child
  spawned the moment its parent blocks (the parent lends its slot, and every other
  worker may be busy), a retry, or the replacement of a crashed worker starts on it at
  once instead of waiting a second or two for a new process to import everything; a
  new spare is started as soon as one is taken;
- workers beyond what is needed now (`size` plus the spare, or the busy ones plus the
  spare) exit once idle for `idle_exit_s`, so a burst of fan-out leaves no processes
  behind.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from common.jobs.recovery import Loss

#: A pool lends at most this many extra workers per base worker to parents blocked in
#: `gather`, so fan-out can never deadlock a small pool.
EXTRA_WORKERS_FACTOR = 4


@dataclass
class Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False
    job_id: uuid.UUID | None = None
    started: float = 0.0
    timeout_s: float = 0.0
    kill_at: float | None = None  # monotonic deadline after a cancel request
    loss: Loss | None = None  # why the supervisor stops (or will stop) the current run
    waiting: bool = False
    idle_since: float = field(default_factory=time.monotonic)
    retiring: bool = False  # asked to exit: idle, not replaced when it ends

    @property
    def idle(self) -> bool:
        return self.ready and self.job_id is None and not self.retiring

    def take(self, job_id: uuid.UUID) -> None:
        self.job_id, self.started, self.timeout_s = job_id, time.monotonic(), 0.0

    def release(self) -> None:
        """The run is over: so is any stop planned for it."""
        self.job_id, self.kill_at, self.waiting, self.loss = None, None, False, None
        self.idle_since = time.monotonic()


@dataclass(frozen=True)
class PoolPlan:
    """How many jobs may run and how many workers to keep, given the workers now."""

    size: int
    idle_exit_s: float

    def slots(self, workers: Sequence[Worker]) -> int:
        """Jobs that may hold a worker at once: the base size plus lent slots."""
        blocked = sum(w.waiting for w in workers)
        return self.size + min(blocked, self.size * EXTRA_WORKERS_FACTOR)

    def wanted(self, workers: Sequence[Worker]) -> int:
        """Workers to keep: the base size or every busy worker, whichever is more, plus
        one warm spare (never more than the most that could ever be busy, plus it)."""
        busy = sum(w.job_id is not None for w in workers)
        ceiling = self.size * (1 + EXTRA_WORKERS_FACTOR) + 1
        return min(max(self.size, busy) + 1, ceiling)

    def should_spawn(self, workers: Sequence[Worker]) -> bool:
        """One worker starts at a time, while the pool is short of `wanted`."""
        live = [w for w in workers if not w.retiring]
        if any(not w.ready for w in live):
            return False
        return len(live) < self.wanted(workers)

    def to_retire(self, workers: Sequence[Worker], now: float) -> Worker | None:
        """An idle worker past `idle_exit_s` while the pool holds more than `wanted`."""
        live = [w for w in workers if not w.retiring]
        if len(live) <= self.wanted(workers):
            return None
        idle = [w for w in live if w.idle and now - w.idle_since >= self.idle_exit_s]
        return min(idle, key=lambda w: w.idle_since, default=None)
