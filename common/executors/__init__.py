"""Executors run jobs: `local` (worker processes, the default) and `modal` (cloud)."""

from __future__ import annotations

from common.executors.base import Executor, HandleState
from common.runtime import Runtime


def make_executor(runtime: Runtime) -> Executor:
    kind = runtime.settings.executor
    if kind == "local":
        from common.executors.local import LocalExecutor

        return LocalExecutor(runtime)
    if kind == "modal":
        from common.executors.modal import ModalExecutor

        return ModalExecutor(runtime)
    raise ValueError(f"the {kind!r} executor is not available in this build")


__all__ = ["Executor", "HandleState", "make_executor"]
