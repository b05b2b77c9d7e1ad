"""The Modal executor: each job is a call of its capability's Modal function.

`submit` spawns `cap_<name>(job_id)` on the deployed app and stores the FunctionCall id on
the job; the container runs `run_job` and writes status, progress and results to the
database itself. This side only watches from outside, in a supervisor thread of the web
process (and in one pass of the scheduled cleanup, when no web container is up). Running
jobs beat; only quiet ones (no recent heartbeat, or queued a while) have their call
polled, so a healthy job costs no Modal request:

- a call that ended while its job is still active (container crash, out of memory, Modal
  timeout after its retries) recovers the job (`common.jobs.recovery`: retried while
  attempts remain, else failed); a job silent past `APERTURE_HEARTBEAT_TIMEOUT_S` is
  recovered too (its call cancelled);
- a job that stayed `cancelling` past the grace period gets `FunctionCall.cancel()` and
  ends cancelled;
- queued jobs nobody submitted (a retry whose spawn failed) are submitted.

`modal` is imported lazily, and every Modal call goes through `api` (the `modal` module by
default), so the server imports without Modal credentials and tests use a stand-in.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import threading
import uuid
from datetime import timedelta
from typing import Any

from common.errors import NotFound
from common.executors.base import HandleState
from common.jobs.recovery import Loss, Unstarted, recover
from common.jobs.runner import run_job
from common.jobs.status import ACTIVE, Status
from common.records import Job
from common.records.types import utcnow
from common.runtime import Runtime

log = logging.getLogger("aperture.executor.modal")

NAME = "modal"
#: Seconds between supervisor passes (each polls the calls of quiet jobs only).
SWEEP_INTERVAL_S = 5.0
#: Seconds a queued job may go without a FunctionCall before a sweep submits it.
UNCLAIMED_AFTER_S = 30.0
#: Placeholder handle while a sweep submits a queued job, so two web replicas never both do.
_SUBMITTING = "modal:submitting"


class ModalUnavailable(RuntimeError):
    """Modal could not take the call: unreachable, unauthorised, or the app not deployed."""


def function_name(capability: str) -> str:
    """The Modal function name of a capability: `workflow.fov` -> `cap_workflow_fov`.

    The app and the executor both use this, so they agree on every name.
    """
    slug = re.sub(r"[^0-9A-Za-z]+", "_", capability).strip("_").lower()
    if not slug:
        raise ValueError(f"capability name {capability!r} has no usable characters")
    return f"cap_{slug}"


class ModalExecutor:
    name = NAME

    def __init__(
        self,
        runtime: Runtime,
        *,
        api: Any = None,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
        quiet_after_s: float | None = None,
    ) -> None:
        self.runtime = runtime
        self.app_name = runtime.settings.modal_app
        self.api = api if api is not None else importlib.import_module("modal")
        self.sweep_interval_s = sweep_interval_s
        #: A job this quiet (no heartbeat, or queued this long) has its call polled.
        self.quiet_after_s = (
            quiet_after_s
            if quiet_after_s is not None
            else max(3 * runtime.settings.heartbeat_interval_s, 10.0)
        )
        self._functions: dict[str, Any] = {}
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return f"ModalExecutor(app={self.app_name!r})"

    # -- interface ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="modal-executor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def submit(self, job_id: uuid.UUID, *, held: str | None = None) -> str:
        """Spawn the job's function; raises ModalUnavailable when Modal refuses.

        `held`: a placeholder handle the caller claimed the job with, replaced by the call's.
        """
        job = self.runtime.jobs.get(job_id)
        name = function_name(job.function)
        try:
            function = self._functions.get(name)
            if function is None:
                function = self.api.Function.from_name(self.app_name, name)
                self._functions[name] = function
            call = function.spawn(str(job_id))
        except Exception as error:
            self._functions.pop(name, None)
            raise ModalUnavailable(_explain(error, self.app_name, name)) from error
        handle = str(call.object_id)
        if held is not None:
            self.runtime.jobs.unclaim(job_id, held)
        # The container may have started (and recorded this handle) already.
        self.runtime.jobs.claim(job_id, handle)
        return handle

    def submit_or_fail(self, job_id: uuid.UUID, *, held: str | None = None) -> None:
        """`submit` for children and retries (`Runtime.submit`): a job Modal refuses
        fails with the reason instead of waiting forever in the queue."""
        try:
            self.submit(job_id, held=held)
        except ModalUnavailable as error:
            self.runtime.jobs.try_transition(
                job_id,
                Status.failed,
                error={"type": "executor", "message": str(error)},
                message=f"could not submit to Modal: {error}",
            )

    def poll(self, handle: str) -> HandleState:
        state, _ = self._outcome(handle)
        return state

    def cancel(self, handle: str) -> None:
        """The job is `cancelling` in the database (the cooperative flag); the supervisor
        cancels the FunctionCall once the grace period is over."""
        if self.runtime.settings.cancel_grace_s == 0:
            self._cancel_call(handle)
        self._wakeup.set()

    def health(self) -> dict[str, Any]:
        alive = self._thread is not None and self._thread.is_alive()
        return {
            "executor": self.name,
            "ok": alive and self._last_error is None,
            "app": self.app_name,
            "last_error": self._last_error,
        }

    # -- supervision ------------------------------------------------------------------

    def sweep(self) -> None:
        """One supervision pass; the thread runs it every `sweep_interval_s`."""
        self._enforce_cancels()
        self._recover_ended_calls()
        self._submit_unclaimed()

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sweep()
                self._last_error = None
            except Exception as error:  # the supervisor must outlive any bad moment
                self._last_error = f"{type(error).__name__}: {error}"
                log.exception("modal executor sweep failed")
            self._wakeup.wait(self.sweep_interval_s)
            self._wakeup.clear()

    def _outcome(self, handle: str) -> tuple[HandleState, str | None]:
        """What Modal says of a call; the error text when it ended badly."""
        exceptions = self.api.exception
        try:
            self.api.FunctionCall.from_id(handle).get(timeout=0)
        except TimeoutError:  # the built-in one: no output yet
            status = self.runtime.queries.status_by_handle(handle)
            return (HandleState.pending if status is Status.queued else HandleState.running, None)
        except exceptions.OutputExpiredError:
            return HandleState.lost, "Modal no longer holds the call's outcome (expired)"
        except (exceptions.ConnectionError, exceptions.AuthError, OSError):
            raise  # Modal is unreachable: nothing is known about the call
        except BaseException as error:  # the call ended badly: crash, timeout, cancel
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise
            return HandleState.finished, f"{type(error).__name__}: {error}"
        return HandleState.finished, None

    def _recover_ended_calls(self) -> None:
        """Poll the calls of quiet jobs (queued with a call for a while, or active with no
        recent heartbeat) and recover the jobs whose call ended or froze. Healthy running
        jobs beat every `heartbeat_interval_s`, so they cost no Modal request."""
        timeout_s = self.runtime.settings.heartbeat_timeout_s
        silent_since = utcnow() - timedelta(seconds=timeout_s)
        quiet_since = utcnow() - timedelta(seconds=self.quiet_after_s)
        for job in self.runtime.queries.quiet(
            self.name, since=quiet_since, skip_handle=_SUBMITTING
        ):
            handle = job.handle or ""
            silent = job.status is not Status.queued and (
                job.heartbeat_at is None or job.heartbeat_at < silent_since
            )
            try:
                state, error = self._outcome(handle)
            except Exception as failure:  # Modal unreachable or the call unknown
                log.warning("could not poll Modal call %s", handle, exc_info=True)
                if silent:
                    detail = f"Modal could not be asked ({type(failure).__name__})"
                    self._recover(job.id, handle, Loss.silent(timeout_s, detail=detail))
                continue
            if state is HandleState.running and silent:
                with contextlib.suppress(Exception):  # frozen: stop it before retrying
                    self._cancel_call(handle)
                self._recover(job.id, handle, Loss.silent(timeout_s))
            elif state in (HandleState.finished, HandleState.lost):
                ended = "the Modal call ended without finishing the job"
                loss = Loss.crashed(f"{ended} ({error})" if error else ended)
                self._recover(job.id, handle, loss)

    def _recover(self, job_id: uuid.UUID, handle: str, loss: Loss) -> None:
        """The recovery policy; a job the call never started fails (a new call would
        repeat the cause), and one that goes back to the queue gets a new call."""
        jobs = self.runtime.jobs
        recovered = recover(jobs, job_id, loss, handle=handle, unstarted=Unstarted.fail)
        if recovered is not None and recovered.status is Status.queued:
            self.submit_or_fail(job_id)

    def _enforce_cancels(self) -> None:
        """Cancel the calls of jobs still `cancelling` after the grace period."""
        cutoff = utcnow() - timedelta(seconds=self.runtime.settings.cancel_grace_s)
        for job in self.runtime.queries.cancelling_since(self.name, cutoff):
            handle = job.handle or ""
            if handle and handle != _SUBMITTING:
                with contextlib.suppress(Exception):  # an ended call cannot be cancelled
                    self._cancel_call(handle)
            self._recover(job.id, handle, Loss.cancel_overdue())

    def _cancel_call(self, handle: str) -> None:
        self.api.FunctionCall.from_id(handle).cancel()

    def _submit_unclaimed(self) -> None:
        """Queued jobs without a call for a while (a retry whose spawn was lost); young
        ones are left alone, as their submitter is about to record the call."""
        cutoff = utcnow() - timedelta(seconds=UNCLAIMED_AFTER_S)
        for job_id in self.runtime.queries.unclaimed(self.name, updated_before=cutoff):
            if self.runtime.jobs.claim(job_id, _SUBMITTING):  # else another replica has it
                self.submit_or_fail(job_id, held=_SUBMITTING)


def _explain(error: Exception, app: str, name: str) -> str:
    kind = type(error).__name__
    hint = ""
    if kind == "NotFoundError":
        hint = f"; is the app deployed? (`modal deploy -m infra.modal_app`, app {app!r})"
    elif kind == "AuthError":
        hint = "; check MODAL_TOKEN_ID / MODAL_TOKEN_SECRET"
    elif kind == "ConnectionError" or isinstance(error, OSError):
        hint = "; Modal is unreachable"
    return f"Modal could not start {name!r} of app {app!r}: {kind}: {error}{hint}"


def run_call(runtime: Runtime, job_id: str, call_id: str | None) -> str | None:
    """The body of every capability's Modal function: one input = one job attempt.

    A call Modal retries (its container crashed, ran out of memory or timed out) finds
    its job still running under its own call id: that attempt is recorded as lost first
    (retried while attempts remain, else failed), so Modal retries map to job attempts.
    """
    job = uuid.UUID(job_id)
    if call_id is not None:
        _recover_retried_call(runtime, job, call_id)
    try:
        status = run_job(job, runtime, handle=call_id)
    except BaseException:
        # Modal stopped the input (FunctionCall.cancel raises InputCancellation here): a
        # job being cancelled ends cancelled; anything else is left to the supervisor.
        runtime.jobs.try_transition(
            job,
            Status.cancelled,
            guards=[Job.status == Status.cancelling],
            message="cancelled: the Modal call was stopped",
        )
        raise
    return status.value if status else None


def _recover_retried_call(runtime: Runtime, job_id: uuid.UUID, call_id: str) -> None:
    try:
        job = runtime.jobs.get(job_id)
    except NotFound:
        return  # run_job reports nothing to do
    if job.handle != call_id or job.status not in ACTIVE:
        return
    stopped = Loss.crashed(
        "the previous attempt's container stopped before finishing "
        "(crash, out of memory or timeout)"
    )
    recover(runtime.jobs, job_id, stopped, handle=call_id, unstarted=Unstarted.fail)
