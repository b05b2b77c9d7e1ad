"""The local executor: a bounded pool of worker processes on this machine.

One supervisor thread owns the pool. It hands queued jobs to idle workers, notices a
worker's death through its process sentinel (segfault, `os._exit`, OOM kill) and
recovers its job (`common.jobs.recovery`), kills workers whose job outlived its cancel
grace or timeout, and replaces every worker it loses, so the pool keeps serving.

Assumes one server per database in this mode (the embedded default): at start, jobs
held by an earlier local instance are recovered as that instance is gone.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from common.capabilities import get_capability
from common.errors import UnknownCapability
from common.executors.base import HandleState
from common.executors.worker import worker_main
from common.jobs.recovery import Cause, Loss, Unstarted, recover
from common.runtime import Runtime

log = logging.getLogger("aperture.executor")

#: Seconds between scans of the database for queued jobs nobody holds (children spawned
#: by workers, retries, jobs left from a restart).
SCAN_INTERVAL_S = 0.25
#: A pool lends at most this many extra workers per base worker to parents blocked in
#: `gather`, so fan-out can never deadlock a small pool.
EXTRA_WORKERS_FACTOR = 4


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False
    job_id: uuid.UUID | None = None
    started: float = 0.0
    timeout_s: float = 0.0
    kill_at: float | None = None  # monotonic deadline after a cancel request
    loss: Loss | None = None  # why the supervisor stops (or will stop) the current run
    waiting: bool = False


@dataclass
class _State:
    workers: list[_Worker] = field(default_factory=list)
    queue: collections.deque[uuid.UUID] = field(default_factory=collections.deque)
    queued: set[uuid.UUID] = field(default_factory=set)


class LocalExecutor:
    name = "local"

    def __init__(self, runtime: Runtime, *, workers: int | None = None) -> None:
        self.runtime = runtime
        self.size = workers or runtime.settings.workers
        self.instance = uuid.uuid4().hex[:12]
        self.prefix = f"local:{self.instance}:"
        self._state = _State()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="local-executor", daemon=True)
        self._context = mp.get_context("spawn")

    def __repr__(self) -> str:
        return f"LocalExecutor(workers={self.size}, instance={self.instance!r})"

    # -- interface ------------------------------------------------------------------

    def start(self) -> None:
        self._recover_previous_instances()
        for _ in range(self.size):
            self._spawn_worker()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for worker in list(self._state.workers):
            worker.conn.close()
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=2)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def submit(self, job_id: uuid.UUID) -> str:
        handle = self.prefix + str(job_id)
        if self.runtime.jobs.claim(job_id, handle):
            with self._lock:
                if job_id not in self._state.queued:
                    self._state.queue.append(job_id)
                    self._state.queued.add(job_id)
            self._wake()
        return handle

    def poll(self, handle: str) -> HandleState:
        if not handle.startswith(self.prefix):
            return HandleState.lost
        job_id = uuid.UUID(handle.removeprefix(self.prefix))
        with self._lock:
            if job_id in self._state.queued:
                return HandleState.pending
            if any(w.job_id == job_id for w in self._state.workers):
                return HandleState.running
        return HandleState.finished

    def cancel(self, handle: str) -> None:
        if not handle.startswith(self.prefix):
            return
        job_id = uuid.UUID(handle.removeprefix(self.prefix))
        deadline = time.monotonic() + self.runtime.settings.cancel_grace_s
        with self._lock:
            for worker in self._state.workers:
                if worker.job_id == job_id and worker.kill_at is None:
                    worker.kill_at, worker.loss = deadline, Loss.cancel_overdue()
        self._wake()

    def health(self) -> dict[str, Any]:
        with self._lock:
            alive = sum(w.process.is_alive() for w in self._state.workers)
            busy = sum(w.job_id is not None for w in self._state.workers)
            queued = len(self._state.queue)
        return {
            "executor": self.name,
            "ok": self._thread.is_alive() and alive > 0,
            "workers": alive,
            "busy": busy,
            "queued": queued,
        }

    # -- supervisor -----------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # the pipe is full or closed: already awake
            os.write(self._wake_w, b"x")

    def _supervise(self) -> None:
        next_scan = next_reap = 0.0
        while not self._stopping.is_set():
            try:
                now = time.monotonic()
                if now >= next_scan:
                    self._claim_unheld_jobs()
                    next_scan = now + SCAN_INTERVAL_S
                if now >= next_reap:
                    self._reap_silent_jobs()
                    next_reap = now + self.runtime.settings.heartbeat_interval_s
                self._dispatch()
                self._enforce_deadlines()
                self._wait_and_handle(timeout=SCAN_INTERVAL_S)
            except Exception:  # the supervisor must outlive any single bad moment
                log.exception("local executor supervisor error")
                time.sleep(0.5)

    def _wait_and_handle(self, timeout: float) -> None:
        workers = list(self._state.workers)
        waitables: list[Any] = [self._wake_r]
        for worker in workers:
            waitables += [worker.conn, worker.process.sentinel]
        for ready in wait(waitables, timeout=timeout):
            if ready == self._wake_r:
                os.read(self._wake_r, 4096)
                continue
            for worker in workers:
                if ready is worker.conn:
                    self._receive(worker)
                elif ready == worker.process.sentinel:
                    self._bury(worker)

    def _receive(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                message, job_id, value = worker.conn.recv()
                if message == "ready":
                    worker.ready = True
                elif message == "done" and worker.job_id == job_id:
                    with self._lock:  # the run is over: so is any stop planned for it
                        worker.job_id, worker.kill_at, worker.waiting = None, None, False
                        worker.loss = None
                elif message == "waiting" and worker.job_id == job_id:
                    worker.waiting = bool(value)
        except (EOFError, OSError):
            pass  # the sentinel reports the death

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                if not self._state.queue:
                    return
                worker = self._idle_worker()
                if worker is None:
                    return
                job_id = self._state.queue.popleft()
                self._state.queued.discard(job_id)
                worker.job_id = job_id
            worker.started = time.monotonic()
            worker.timeout_s = _timeout_of(self.runtime, job_id)
            with contextlib.suppress(OSError):  # a death is reported by the sentinel
                worker.conn.send(("run", job_id, self.prefix + str(job_id)))

    def _idle_worker(self) -> _Worker | None:
        """An idle ready worker; spawns an extra one while parents block in `gather`."""
        workers = self._state.workers
        for worker in workers:
            if worker.ready and worker.job_id is None and worker.process.is_alive():
                return worker
        blocked = sum(w.waiting for w in workers)
        starting = sum(not w.ready for w in workers)
        capacity = self.size + min(blocked, self.size * EXTRA_WORKERS_FACTOR)
        if len(workers) < capacity and starting == 0:
            self._spawn_worker()
        return None

    def _spawn_worker(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=worker_main,
            args=(self.runtime.settings, child),
            name="aperture-worker",
            daemon=True,
        )
        process.start()
        child.close()
        self._state.workers.append(_Worker(process=process, conn=parent))

    def _bury(self, worker: _Worker) -> None:
        """A worker process ended: recover its job and, unless stopping, replace it."""
        worker.process.join(timeout=1)
        with self._lock:
            self._state.workers.remove(worker)
        worker.conn.close()
        if worker.job_id is not None:
            loss = worker.loss or Loss.crashed(
                f"the worker process died ({_describe_exit(worker.process.exitcode)}) "
                "while running the job"
            )
            self._recover(worker.job_id, loss)
        if not self._stopping.is_set() and len(self._state.workers) < self.size:
            self._spawn_worker()

    def _recover(self, job_id: uuid.UUID, loss: Loss, handle: str | None = None) -> None:
        """The recovery policy for a job of ours; one its worker never started is left
        for the scan to claim again (the worker died, not the job)."""
        handle = handle if handle is not None else self.prefix + str(job_id)
        recover(self.runtime.jobs, job_id, loss, handle=handle, unstarted=Unstarted.requeue)
        self._wake()

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in list(self._state.workers):
            if worker.job_id is None:
                continue
            if worker.kill_at is not None and now >= worker.kill_at:
                self._kill(worker, worker.loss or Loss.cancel_overdue())
            elif worker.timeout_s and now - worker.started > worker.timeout_s:
                self._kill(worker, Loss.timed_out(worker.timeout_s))

    def _kill(self, worker: _Worker, loss: Loss) -> None:
        """SIGKILL the worker; its sentinel reports the death and `_bury` records `loss`."""
        worker.loss = loss
        worker.kill_at = None
        if worker.process.is_alive() and worker.process.pid:
            os.kill(worker.process.pid, signal.SIGKILL)

    def _claim_unheld_jobs(self) -> None:
        for job_id in self.runtime.queries.unclaimed(self.name):
            self.submit(job_id)

    def _reap_silent_jobs(self) -> None:
        """Jobs whose heartbeat stopped: kill our frozen worker, or recover a job whose
        holder is gone, so nothing stays running forever."""
        timeout = self.runtime.settings.heartbeat_timeout_s
        for job in self.runtime.jobs.stale(timedelta(seconds=timeout)):
            if job.executor != self.name:
                continue
            silent = Loss.silent(timeout)
            holder = next((w for w in self._state.workers if w.job_id == job.id), None)
            if holder is not None:
                self._kill(
                    holder, Loss(Cause.silent, f"the worker stopped responding ({silent.message})")
                )
            else:
                self._recover(job.id, silent, job.handle or "")

    def _recover_previous_instances(self) -> None:
        """Jobs an earlier instance held: queued ones are released, running ones lost."""
        orphaned = Loss.orphaned("the server stopped while the job was running")
        for job in self.runtime.queries.held_by_others(self.name, self.prefix):
            self._recover(job.id, orphaned, job.handle or "")


def _timeout_of(runtime: Runtime, job_id: uuid.UUID) -> float:
    try:
        return float(get_capability(runtime.jobs.get(job_id).function).resources.timeout_s)
    except UnknownCapability:
        return 0.0  # the runner fails the job at once


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
