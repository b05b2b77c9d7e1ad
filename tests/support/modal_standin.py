"""An in-process stand-in for exactly the Modal calls the Modal executor makes:
`Function.from_name(app, name).spawn(job_id)`, `FunctionCall.from_id(id)`,
`.get(timeout=0)` and `.cancel()`. Modal's cloud is not reachable from tests; this is the
one stand-in the suite allows.

A spawned call really runs: a thread executes `run_call` (the body of every capability's
Modal function) against the test's database and object store. Errors are Modal's own
exception classes. Knobs: `reachable` (False: every call raises Modal's ConnectionError),
`deployed` (function names that exist), `hold` (calls wait before running), `expire`
(a call's output is gone), `crash` (a call dies before running its job).
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

import modal.exception

from common.executors.modal import run_call
from common.runtime import Runtime


@dataclass
class _Call:
    object_id: str
    function: str
    job_id: str
    thread: threading.Thread | None = None
    result: Any = None
    error: BaseException | None = None
    cancelled: bool = False
    started: bool = False  # past `hold`, running the job


@dataclass
class ModalStandIn:
    runtime: Runtime
    app_name: str = "aperture"
    deployed: set[str] | None = None  # None: every function exists
    reachable: bool = True
    hold: threading.Event = field(default_factory=threading.Event)
    expired: set[str] = field(default_factory=set)
    crash: set[str] = field(default_factory=set)  # job ids whose calls die at start
    calls: dict[str, _Call] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.hold.set()  # calls run at once unless a test clears it
        self.exception = modal.exception
        self.Function = _FunctionNamespace(self)
        self.FunctionCall = _CallNamespace(self)

    def _check_reachable(self) -> None:
        if not self.reachable:
            raise modal.exception.ConnectionError("Could not connect to the Modal server.")

    def spawn(self, app: str, name: str, job_id: str) -> _CallHandle:
        self._check_reachable()
        if app != self.app_name or (self.deployed is not None and name not in self.deployed):
            raise modal.exception.NotFoundError(f"Function '{app}/{name}' not found")
        call = _Call(object_id=f"fc-standin{next(self._ids):06d}", function=name, job_id=job_id)
        call.thread = threading.Thread(
            target=self._run, args=(call,), daemon=True, name=f"modal-standin-{call.object_id}"
        )
        self.calls[call.object_id] = call
        call.thread.start()
        return _CallHandle(self, call.object_id)

    def _run(self, call: _Call) -> None:
        self.hold.wait()
        try:
            call.started = True
            if call.cancelled:
                raise modal.exception.InputCancellation("cancelled before it started")
            if call.job_id in self.crash:
                raise modal.exception.ExecutionError("the container exited with code 137")
            call.result = run_call(self.runtime, call.job_id, call.object_id)
        except BaseException as error:  # what `get` raises, as Modal would
            call.error = error

    def wait_idle(self, timeout: float = 20.0) -> None:
        """Wait for every call started so far to end."""
        for call in list(self.calls.values()):
            if call.thread is not None:
                call.thread.join(timeout)


class _FunctionNamespace:
    def __init__(self, standin: ModalStandIn) -> None:
        self._standin = standin

    def from_name(self, app: str, name: str) -> _FunctionHandle:
        return _FunctionHandle(self._standin, app, name)  # lazy, like Modal's


class _FunctionHandle:
    def __init__(self, standin: ModalStandIn, app: str, name: str) -> None:
        self._standin, self._app, self._name = standin, app, name

    def spawn(self, job_id: str) -> _CallHandle:
        return self._standin.spawn(self._app, self._name, job_id)


class _CallNamespace:
    def __init__(self, standin: ModalStandIn) -> None:
        self._standin = standin

    def from_id(self, object_id: str) -> _CallHandle:
        return _CallHandle(self._standin, object_id)


class _CallHandle:
    def __init__(self, standin: ModalStandIn, object_id: str) -> None:
        self._standin = standin
        self.object_id = object_id

    def _call(self) -> _Call:
        self._standin._check_reachable()
        try:
            return self._standin.calls[self.object_id]
        except KeyError:
            raise modal.exception.NotFoundError(f"no function call {self.object_id}") from None

    def get(self, timeout: float | None = None) -> Any:
        call = self._call()
        if self.object_id in self._standin.expired:
            raise modal.exception.OutputExpiredError()
        if call.thread is not None:
            call.thread.join(timeout)
            if call.thread.is_alive():
                raise TimeoutError()  # the built-in one, as Modal raises it
        if call.error is not None:
            raise call.error
        return call.result

    def cancel(self, terminate_containers: bool = False) -> None:
        call = self._call()
        call.cancelled = True
        thread = call.thread
        if call.started and thread is not None and thread.is_alive() and thread.ident:
            # Modal interrupts the running input with InputCancellation; so do we.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread.ident), ctypes.py_object(modal.exception.InputCancellation)
            )
