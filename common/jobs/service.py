"""Submitting and cancelling jobs: the record first, then the executor."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from pydantic import ValidationError

from common.capabilities import get_capability
from common.errors import IllegalTransition, InvalidInput
from common.executors.base import Executor
from common.jobs.models import JobRecord
from common.jobs.status import Status
from common.runtime import Runtime


def validated_params(function: str, params: dict[str, Any]) -> dict[str, Any]:
    """Params checked against the capability's model, as JSON (defaults filled in)."""
    capability = get_capability(function)
    try:
        return capability.params.model_validate(params).model_dump(mode="json")
    except ValidationError as error:
        raise InvalidInput(
            f"params do not match the schema of {function!r}: {_summary(error)}"
        ) from error


def _summary(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "(params)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class JobService:
    def __init__(self, runtime: Runtime, executor: Executor) -> None:
        self.runtime = runtime
        self.executor = executor

    def submit(
        self,
        function: str,
        params: dict[str, Any],
        *,
        owner_id: uuid.UUID | None,
        name: str | None = None,
        tags: list[str] | None = None,
    ) -> JobRecord:
        checked = validated_params(function, params)
        job = self.runtime.jobs.create(
            function=function,
            params=checked,
            executor=self.executor.name,
            owner_id=owner_id,
            name=name,
            tags=tags,
            max_attempts=1 + get_capability(function).resources.retries,
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
