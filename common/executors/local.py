"""The local executor: a bounded pool of worker processes on this machine.

One supervisor thread owns the pool. It hands queued jobs to idle workers, notices a
worker's death through its process sentinel (segfault, `os._exit`, OOM kill) and
recovers its job (`common.jobs.recovery`), kills workers whose job outlived its cancel
grace or timeout, and replaces every worker it loses, so the pool keeps serving.

Jobs reach it at once: submitted here, rung in by a web process of `aperture serve`
(`common.executors.link`), or spawned as children by a worker (over the worker's pipe).
A scan of the database finds anything a message missed. The pool keeps one warm spare
worker (imports done) beyond those that can be busy, so a fan-out child or a retry
starts without waiting for a process to spawn; workers beyond `workers` and that spare
exit after `APERTURE_WORKER_IDLE_EXIT_S` idle (see `common.executors.pool`).

One server per data directory: `start` takes the directory's lock (`common.datadir`),
unless its caller hands it over, and only then recovers the jobs an earlier instance
left, as that instance is gone.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import wait
from typing import Any

from common.capabilities import get_capability
from common.datadir import DataDirLock
from common.errors import UnknownCapability
from common.executors.base import HandleState
from common.executors.link import CANCEL, SUBMIT, StatusBoard, read_doorbell
from common.executors.pool import PoolPlan, Worker
from common.executors.worker import worker_main
from common.jobs.recovery import Cause, Loss, Unstarted, recover
from common.records.types import utcnow
from common.runtime import Runtime

log = logging.getLogger("aperture.executor")

#: Seconds between scans of the database for queued jobs nobody holds (a message that
#: was lost, retries, jobs left from a restart); messages make the usual case immediate.
SCAN_INTERVAL_S = 0.25


@dataclass
class _State:
    workers: list[Worker] = field(default_factory=list)
    queue: collections.deque[uuid.UUID] = field(default_factory=collections.deque)
    queued: set[uuid.UUID] = field(default_factory=set)


class LocalExecutor:
    name = "local"

    def __init__(
        self,
        runtime: Runtime,
        *,
        workers: int | None = None,
        owner: DataDirLock | None = None,
        doorbell: socket.socket | None = None,
        board: StatusBoard | None = None,
    ) -> None:
        """`owner`: the data directory's lock, when the caller took it (`aperture serve`
        does, before anything else); otherwise `start` takes it. `doorbell` and `board`:
        the serve process's link to its web processes (`common.executors.link`)."""
        self.runtime = runtime
        self.size = workers or runtime.settings.workers
        self.plan = PoolPlan(self.size, runtime.settings.worker_idle_exit_s)
        self.instance = uuid.uuid4().hex[:12]
        self.prefix = f"local:{self.instance}:"
        self._doorbell = doorbell
        self._board = board
        self._owner = owner
        self._own_lock: DataDirLock | None = None  # taken by `start`, released by `stop`
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
        """Own the data directory (DataDirBusy if another server does), recover what an
        earlier instance left, start the workers and the supervisor."""
        if self._owner is None:
            self._own_lock = DataDirLock.acquire(self.runtime.settings.data_dir)
        self._recover_previous_instances()
        for _ in range(self.plan.wanted([])):  # the pool and its warm spare
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
        if self._own_lock is not None:
            self._own_lock.release()

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
            workers = list(self._state.workers)
            queued = len(self._state.queue)
        alive = sum(w.process.is_alive() for w in workers)
        return {
            "executor": self.name,
            "ok": self._thread.is_alive() and alive > 0,
            "workers": alive,
            "busy": sum(w.job_id is not None for w in workers),
            "idle": sum(w.idle for w in workers),  # ready for a job now (the spare among them)
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
                    self._enforce_cancels()
                    next_reap = now + self.runtime.settings.heartbeat_interval_s
                self._dispatch()
                self._enforce_deadlines()
                self._resize(now)
                self._publish()
                self._wait_and_handle(timeout=SCAN_INTERVAL_S)
            except Exception:  # the supervisor must outlive any single bad moment
                log.exception("local executor supervisor error")
                time.sleep(0.5)

    def _publish(self) -> None:
        if self._board is not None:
            detail = self.health()
            self._board.publish(
                ok=bool(detail["ok"]),
                workers=detail["workers"],
                busy=detail["busy"],
                queued=detail["queued"],
            )

    def _wait_and_handle(self, timeout: float) -> None:
        workers = list(self._state.workers)
        waitables: list[Any] = [self._wake_r]
        if self._doorbell is not None:
            waitables.append(self._doorbell)
        for worker in workers:
            waitables.append(worker.process.sentinel)
            if not worker.retiring:  # a retiring worker's pipe is closed already
                waitables.append(worker.conn)
        for ready in wait(waitables, timeout=timeout):
            if ready == self._wake_r:
                os.read(self._wake_r, 4096)
                continue
            if ready is self._doorbell:
                self._answer_doorbell(ready)
                continue
            for worker in workers:
                if ready is worker.conn:
                    self._receive(worker)
                elif ready == worker.process.sentinel:
                    self._bury(worker)

    def _answer_doorbell(self, doorbell: socket.socket) -> None:
        """Submissions and cancels rung in by the web processes."""
        for kind, payload in read_doorbell(doorbell):
            try:
                if kind == SUBMIT:
                    self.submit(uuid.UUID(bytes=payload))
                elif kind == CANCEL:
                    self.cancel(payload.decode())
            except (ValueError, UnicodeDecodeError):
                log.warning("ignored a malformed doorbell message %r", kind + payload[:64])

    def _receive(self, worker: Worker) -> None:
        try:
            while worker.conn.poll():
                message, job_id, value = worker.conn.recv()
                if message == "ready":
                    worker.ready = True
                elif message == "done" and worker.job_id == job_id:
                    with self._lock:
                        worker.release()
                elif message == "waiting" and worker.job_id == job_id:
                    worker.waiting = bool(value)
                elif message == "submit":  # a child spawned, or a retry: run it now
                    self.submit(job_id)
        except (EOFError, OSError):
            pass  # the sentinel reports the death

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                workers = self._state.workers
                if not self._state.queue:
                    return
                busy = sum(w.job_id is not None for w in workers)
                worker = next((w for w in workers if w.idle and w.process.is_alive()), None)
                if worker is None or busy >= self.plan.slots(workers):
                    return
                job_id = self._state.queue.popleft()
                self._state.queued.discard(job_id)
                worker.take(job_id)
            worker.timeout_s = _timeout_of(self.runtime, job_id)  # a read: off the lock
            with contextlib.suppress(OSError):  # a death is reported by the sentinel
                worker.conn.send(("run", job_id, self.prefix + str(job_id)))

    def _resize(self, now: float) -> None:
        """Start the next worker the plan wants (the warm spare included), or let one
        idle extra worker go."""
        if self._stopping.is_set():
            return
        with self._lock:
            workers = list(self._state.workers)
        if self.plan.should_spawn(workers):
            self._spawn_worker()
            return
        retiring = self.plan.to_retire(workers, now)
        if retiring is not None:
            log.debug(
                "worker %s idle for %.0f s: retiring",
                retiring.process.pid,
                now - retiring.idle_since,
            )
            retiring.retiring = True
            retiring.conn.close()  # its loop ends; the sentinel reports the exit

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
        with self._lock:
            self._state.workers.append(Worker(process=process, conn=parent))
            log.debug("started worker %s (%d in the pool)", process.pid, len(self._state.workers))

    def _bury(self, worker: Worker) -> None:
        """A worker process ended: recover its job. `_resize` replaces it if need be."""
        worker.process.join(timeout=1)
        with self._lock:
            self._state.workers.remove(worker)
        with contextlib.suppress(OSError):
            worker.conn.close()
        if worker.job_id is not None:
            loss = worker.loss or Loss.crashed(
                f"the worker process died ({_describe_exit(worker.process.exitcode)}) "
                "while running the job"
            )
            self._recover(worker.job_id, loss)

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

    def _enforce_cancels(self) -> None:
        """Jobs of ours cancelled longer than the grace period ago and still running:
        stopped, even if no cancel message reached us (a web process's, or a parent's
        in `gather`, which only records it)."""
        grace = self.runtime.settings.cancel_grace_s
        before = utcnow() - timedelta(seconds=grace)
        for job in self.runtime.queries.cancelling_since(self.name, before):
            holder = next((w for w in self._state.workers if w.job_id == job.id), None)
            if holder is not None and holder.kill_at is None:
                self._kill(holder, Loss.cancel_overdue())

    def _kill(self, worker: Worker, loss: Loss) -> None:
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
