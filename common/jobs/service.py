"""Submitting and cancelling jobs: the record first, then the executor.

`JobService.submit` is the one way a job comes to exist: the API's routes submit through
the web process's service, and a running job's `ctx.spawn` through one bound to the
worker (`JobService.in_worker`). Params are validated here, once per submit: a dict
(from POST /jobs, or a capability spawning with one) against the capability's params
model; a model instance of that class was validated when it was built and is used as
it is.

A job submitted from outside (no parent) is then checked against records before it
exists (`common.capabilities.submit_check`: the files it names, the capability's own
check), so a missing file is 404 and a wrong column or channel 422 at submit, through
POST /jobs and the convenience routes alike. Children are planned by a parent whose
params were checked, so they are not checked again.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from common.capabilities import Capability, StoredFile, get_capability, submit_check
from common.errors import IllegalTransition, InvalidInput
from common.jobs.models import JobRecord
from common.jobs.status import Status
from common.objects import ObjectStore
from common.runtime import Runtime


def validated_params(function: str, params: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """Params checked against the capability's model, as JSON (defaults filled in)."""
    return _validated(get_capability(function), params).model_dump(mode="json")


def _validated(capability: Capability[Any, Any], params: BaseModel | dict[str, Any]) -> Any:
    if isinstance(params, capability.params):  # validated when it was built
        return params
    raw = params.model_dump(mode="json") if isinstance(params, BaseModel) else params
    try:
        return capability.params.model_validate(raw)
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


class _OwnerRecords:
    """The `SubmitContext` of one submit: the owner's files and the object store."""

    def __init__(self, runtime: Runtime, owner_id: uuid.UUID | None) -> None:
        self._runtime = runtime
        self.owner_id = owner_id

    def __repr__(self) -> str:
        return f"_OwnerRecords(owner_id={self.owner_id})"

    @property
    def objects(self) -> ObjectStore:
        return self._runtime.objects

    def file(self, file_id: uuid.UUID) -> StoredFile:
        return self._runtime.files.get(file_id, owner_id=self.owner_id)


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
        """Record the job (params validated and, without a parent, checked: see the
        module docstring), then hand it to the executor; an executor that cannot take it
        fails the job."""
        capability = get_capability(function)
        model = _validated(capability, params)
        if parent_id is None:
            model = submit_check(capability, model, _OwnerRecords(self.runtime, owner_id))
        job = self.runtime.jobs.create(
            function=function,
            params=model.model_dump(mode="json"),
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
