"""What the inference routes share: the records, naming a model (builtin, the caller's
ONNX model, an admin's external service), starting a task as a job, the task view, the
owned-task dependency, and what deleting a slide does to its tasks."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from pydantic import ValidationError

from common.errors import IllegalTransition, InvalidInput, NotFound
from common.identity import Client, Principal
from common.inference_records import InferenceRecords, ServiceRecord, TaskRecord
from common.jobs.models import JobRecord
from common.slides import SlideRecord
from functions.inference.external import ExternalParams
from functions.inference.nuclei_he import NucleiHEParams
from functions.inference.params import BuiltinModelSpec, InferenceParams, OnnxModelSpec
from functions.inference.plan import check_region
from functions.inference.registry import builtin_models, describe_onnx
from web.deps import CurrentUser, State, visible_to
from web.inference_schemas import (
    InferenceCreate,
    InferenceModelPublic,
    ModelOutputPublic,
    TaskArtefacts,
    TaskModel,
    TaskPublic,
)
from web.state import AppState

SLIDE_FUNCTION, EXTERNAL_FUNCTION = "inference.slide", "inference.external"


def inference_records(state: State) -> InferenceRecords:
    return InferenceRecords(state.runtime.db)


Records = Annotated[InferenceRecords, Depends(inference_records)]


@dataclass(frozen=True)
class Resolved:
    """A model named in a request: what it is and how a task runs it."""

    kind: str
    name: str
    id: uuid.UUID | None = None
    spec: BuiltinModelSpec | OnnxModelSpec | None = None
    service: ServiceRecord | None = None


def resolve_model(records: InferenceRecords, user: Principal, ref: str) -> Resolved:
    """A builtin by name, else the caller's ONNX model or an external service by id or
    name (the caller's model first); NotFound otherwise."""
    if ref == "nuclei-he":
        return Resolved("builtin", ref, spec=BuiltinModelSpec())
    model, service = None, None
    try:
        model_id = uuid.UUID(ref)
    except ValueError:
        model = records.model_named(user.id, ref)
        service = None if model is not None else records.service_named(ref)
    else:
        with contextlib.suppress(NotFound):
            model = visible_to(user, records.model(model_id), "model")
        if model is None:
            with contextlib.suppress(NotFound):
                service = records.service(model_id)
    if model is not None:
        spec = OnnxModelSpec.model_validate(model.spec)
        return Resolved("onnx", model.name, model.id, spec=spec)
    if service is not None:
        return Resolved("external", service.name, service.id, service=service)
    raise NotFound(f"no model {ref!r} (GET /inference/models lists them)")


def list_models(records: InferenceRecords, user: Principal) -> list[InferenceModelPublic]:
    """Builtins, then the caller's ONNX models, then the external services."""
    found = [InferenceModelPublic(id=m["name"], **m) for m in builtin_models()]
    for model in records.models(user.id):
        described = describe_onnx(OnnxModelSpec.model_validate(model.spec))
        found.append(
            InferenceModelPublic(
                **(described | {"id": str(model.id), "created_at": model.created_at})
            )
        )
    for service in records.services():
        found.append(
            InferenceModelPublic(
                id=str(service.id),
                name=service.name,
                kind="external",
                description=service.description,
                params_schema=service.params_schema,
                mpp=service.mpp,
                output=ModelOutputPublic.model_validate(service.output),
                created_at=service.created_at,
            )
        )
    return found


def _model_spec(resolved: Resolved, params: dict[str, Any] | None) -> BuiltinModelSpec | Any:
    """The spec a task runs, with the request's params applied (checked here, 422)."""
    if resolved.kind == "builtin":
        try:
            return BuiltinModelSpec(params=NucleiHEParams.model_validate(params or {}))
        except ValidationError as error:
            raise InvalidInput(f"params of {resolved.name!r}: {_first(error)}") from None
    if params:
        raise InvalidInput("an ONNX model takes no params: its declaration fixes them")
    return resolved.spec


def _first(error: ValidationError) -> str:
    item = error.errors(include_url=False)[0]
    return f"{'.'.join(str(p) for p in item['loc']) or '(params)'}: {item['msg']}"


def _service_params(service: ServiceRecord, params: dict[str, Any] | None) -> dict[str, Any]:
    """`params` checked against the service's JSON Schema, when it declared one."""
    value = params or {}
    if service.params_schema:
        import jsonschema

        problem = jsonschema.exceptions.best_match(
            jsonschema.validators.validator_for(service.params_schema)(
                service.params_schema
            ).iter_errors(value)
        )
        if problem is not None:
            where = ".".join(str(p) for p in problem.absolute_path) or "(params)"
            raise InvalidInput(f"params of {service.name!r}: {where}: {problem.message}")
    return value


def start_task(
    state: AppState,
    records: InferenceRecords,
    user: Principal,
    client: Client,
    slide: SlideRecord,
    body: InferenceCreate,
) -> tuple[TaskRecord, JobRecord]:
    """Check the request against the slide and model, submit the job, record the task."""
    resolved = resolve_model(records, user, body.model)
    check_region(body.region, (slide.width, slide.height))
    mpp = slide.mpp_x or body.slide_mpp
    if mpp is None:
        raise InvalidInput("the slide records no resolution (µm per pixel); pass slide_mpp")
    common: dict[str, Any] = {
        "file_id": slide.file_id,
        "confidence_threshold": body.confidence_threshold,
        "region": body.region,
        "slide_mpp": body.slide_mpp,
    }
    if resolved.service is not None:
        function = EXTERNAL_FUNCTION
        params: Any = ExternalParams(
            service_id=resolved.service.id,
            params=_service_params(resolved.service, body.params),
            **common,
        )
    else:
        function = SLIDE_FUNCTION
        params = InferenceParams(
            model=_model_spec(resolved, body.params), device=body.device, **common
        )
    job = state.submit_job(
        user, client, function, params, name=f"{resolved.name} on {slide.name}"[:256]
    )
    task = records.add_task(
        job.id,
        owner_id=user.id,
        slide_id=slide.id,
        model_kind=resolved.kind,
        model_name=resolved.name,
        model_id=resolved.id,
    )
    return task, job


def task_public(task: TaskRecord, job: JobRecord) -> TaskPublic:
    result = job.result or {}
    artefacts = TaskArtefacts.model_validate(result) if result.get("parquet_file_id") else None
    return TaskPublic(
        task_id=task.id,
        status=job.status,
        progress=job.progress,
        message=job.progress_message,
        error=job.error,
        slide_id=task.slide_id,
        model=TaskModel.model_validate(
            {"kind": task.model_kind, "name": task.model_name, "id": task.model_id}
        ),
        function=job.function,
        objects=result.get("objects"),
        summary=result.get("summary"),
        artefacts=artefacts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def owned_task(task_id: uuid.UUID, state: State, user: CurrentUser) -> tuple[TaskRecord, JobRecord]:
    """The task and its job if the caller may see them (404 otherwise)."""
    task = visible_to(user, InferenceRecords(state.runtime.db).task(task_id), "inference task")
    return task, state.runtime.jobs.get(task_id)


OwnedTask = Annotated[tuple[TaskRecord, JobRecord], Depends(owned_task)]


def forget_slide_tasks(
    state: AppState, user: Principal, client: Client, slide_id: uuid.UUID
) -> None:
    """A slide is being deleted: cancel its unfinished tasks, delete every artefact they
    made (and their region children's, and the raw predictions services sent), then
    forget the tasks (their jobs stay in /jobs, as every job's history does)."""
    records = InferenceRecords(state.runtime.db)
    tasks = records.tasks_of_slide(slide_id)
    ids = [task.id for task in tasks]
    for job in state.runtime.jobs.get_many(ids):
        if not job.status.terminal:
            with contextlib.suppress(IllegalTransition, NotFound):  # it ended meanwhile
                state.cancel_job(user, client, job.id)
    objects = state.runtime.objects
    state.runtime.catalog.delete(records.artefact_ids(ids), objects)
    for task_id in ids:
        objects.delete_prefix(callback_prefix(task_id))
    records.delete_tasks(ids)


def callback_prefix(task_id: uuid.UUID) -> str:
    """Where the webhook route keeps predictions sent inline, until the task stores them."""
    return f"jobs/{task_id}/callbacks/"
