"""Submitting and cancelling jobs: the record first, then the executor.

`JobService.submit` is the one way a job comes to exist: the API's routes submit through
the web process's service, and a running job's `ctx.spawn` through one bound to the
worker (`JobService.in_worker`). Params are validated here, once per submit: a dict
(from POST /jobs, or a capability spawning with one) against the capability's params
model; a model instance of that class was validated when it was built and is stored
as it is.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from common.capabilities import Capability, get_capability
from common.errors import IllegalTransition, InvalidInput
from common.jobs.models import JobRecord
from common.jobs.status import Status
from common.runtime import Runtime


def validated_params(function: str, params: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """Params checked against the capability's model, as JSON (defaults filled in)."""
    return _checked(get_capability(function), params)


def _checked(
    capability: Capability[Any, Any], params: BaseModel | dict[str, Any]
) -> dict[str, Any]:
    if isinstance(params, capability.params):  # validated when it was built
        return params.model_dump(mode="json")
    raw = params.model_dump(mode="json") if isinstance(params, BaseModel) else params
    try:
        return capability.params.model_validate(raw).model_dump(mode="json")
    except ValidationError as error:
        raise InvalidInput(
            f"params do not match the schema of {capability.name!r}: {_summary(error)}"
        ) from error


def _summary(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "(params)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class Dispatcher(Protocol):
    """Where a job goes once its record exists (an `Executor` is one)."""

    name: str

    def submit(self, job_id: uuid.UUID) -> object: ...

    def cancel(self, handle: str) -> None: ...


class _WorkerDispatch:
    """Dispatch from inside a running job: children run on the parent's executor and go
    to it through the runtime's hook (the local pool finds queued jobs itself; Modal's
    hook spawns a FunctionCall). Stopping a run is the supervisor's: a worker only
    records cancellations, so `cancel` has nothing to do here."""

    def __init__(self, name: str, runtime: Runtime) -> None:
        self.name = name
        self._runtime = runtime

    def __repr__(self) -> str:
        return f"_WorkerDispatch({self.name!r})"

    def submit(self, job_id: uuid.UUID) -> None:
        self._runtime.submit(job_id)

    def cancel(self, handle: str) -> None:
        return None


class JobService:
    def __init__(self, runtime: Runtime, executor: Dispatcher) -> None:
        self.runtime = runtime
        self.executor = executor

    def __repr__(self) -> str:
        return f"JobService({self.executor!r})"

    @classmethod
    def in_worker(cls, runtime: Runtime, executor_name: str) -> JobService:
        """The service a running job submits its children through."""
        return cls(runtime, _WorkerDispatch(executor_name, runtime))

    def submit(
        self,
        function: str,
        params: BaseModel | dict[str, Any],
        *,
        owner_id: uuid.UUID | None,
        parent_id: uuid.UUID | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
    ) -> JobRecord:
        """Record the job (params validated, see the module docstring), then hand it to
        the executor; an executor that cannot take it fails the job."""
        capability = get_capability(function)
        job = self.runtime.jobs.create(
            function=function,
            params=_checked(capability, params),
            executor=self.executor.name,
            owner_id=owner_id,
            parent_id=parent_id,
            name=name,
            tags=tags,
            max_attempts=1 + capability.resources.retries,
        )
        try:
            self.executor.submit(job.id)
        except Exception as error:  # an executor that cannot take work fails the job
            return self.runtime.jobs.transition(
                job.id,
                Status.failed,
                error={"type": "executor", "message": str(error)},
                message=f"could not submit to the {self.executor.name} executor: {error}",
            )
        return self.runtime.jobs.get(job.id)

    def cancel(self, job_id: uuid.UUID) -> JobRecord:
        job = self.runtime.jobs.request_cancel(job_id)
        if job.status is Status.cancelling and job.handle:
            self.executor.cancel(job.handle)
        for child in self.runtime.queries.children(job_id):
            if not child.status.terminal:
                with contextlib.suppress(IllegalTransition):  # it ended meanwhile
                    self.cancel(child.id)
        return self.runtime.jobs.get(job_id)
