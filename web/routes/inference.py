"""Inference (CytoLens's API): models (builtin, the caller's ONNX models, admins' external
services), starting a task over a slide, and listing, reading and cancelling tasks.
Tasks are jobs: they also appear in /jobs, its SSE stream and the WebSocket."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from common.errors import InvalidInput
from common.inference_records import TaskFilter
from common.jobs.status import Status
from common.objects.access import stored_path
from common.webhooks import seal
from functions.inference.onnx_model import validate_onnx
from functions.inference.params import OnnxModelSpec
from web.deps import Admin, CurrentUser, RequestClient, State, visible_to
from web.fields import LabelQuery, Limit, Offset
from web.inference import OwnedTask, Records, list_models, start_task, task_public
from web.inference_schemas import (
    InferenceCreate,
    InferenceModelPublic,
    OnnxModelCreate,
    ServiceCreate,
    ServicePublic,
    TaskPublic,
)
from web.schemas import Page
from web.slides import SlideServiceDep, owned_slide

router = APIRouter(prefix="/inference", tags=["inference"])

TASK_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Accepted: the task (a job) exists and runs in the background.",
        "headers": {"Location": {"description": "The task.", "schema": {"type": "string"}}},
    }
}


@router.get("/models")
def read_models(records: Records, user: CurrentUser) -> list[InferenceModelPublic]:
    """Models a task can run: kind, params schema, input resolution, output and classes."""
    return list_models(records, user)


@router.post("/models", status_code=201)
def create_model(
    body: OnnxModelCreate, state: State, records: Records, user: CurrentUser, client: RequestClient
) -> InferenceModelPublic:
    """Register an uploaded ONNX model: its graph must match the declaration (422 names
    the mismatch; a file that is not a model is 422 too)."""
    stored = state.runtime.files.get(body.file_id, owner_id=user.id)
    spec = OnnxModelSpec(file_id=stored.id, name=body.name, input=body.input, output=body.output)
    with stored_path(state.runtime.objects, stored.key, stored.name) as path:
        validate_onnx(path, spec)
    model = records.add_model(
        owner_id=user.id, name=body.name, file_id=stored.id, spec=spec.model_dump(mode="json")
    )
    state.identity.audit.record(
        "inference.model.registered",
        actor=user.id,
        target_type="inference_model",
        target_id=model.id,
        client_ip=client.ip,
        name=model.name,
    )
    return next(m for m in list_models(records, user) if m.id == str(model.id))


@router.delete("/models/{model_id}", status_code=204)
def delete_model(model_id: uuid.UUID, records: Records, user: CurrentUser) -> Response:
    """Unregister one of your ONNX models (its file stays; running tasks finish)."""
    model = visible_to(user, records.model(model_id), "model")
    records.delete_model(model.id)
    return Response(status_code=204)


@router.get("/services")
def read_services(records: Records, _: Admin) -> list[ServicePublic]:
    """External inference services (admins); secrets are never shown."""
    return [ServicePublic.model_validate(s.model_dump()) for s in records.services()]


@router.post("/services", status_code=201)
def create_service(
    body: ServiceCreate, state: State, records: Records, admin: Admin, client: RequestClient
) -> ServicePublic:
    """Register an external inference service (admins); every user may then run it."""
    if body.params_schema is not None:
        import jsonschema

        try:
            jsonschema.validators.validator_for(body.params_schema).check_schema(body.params_schema)
        except jsonschema.exceptions.SchemaError as error:
            raise InvalidInput(f"params_schema is not a JSON Schema: {error.message}") from None
    service = records.add_service(
        owner_id=admin.id,
        name=body.name,
        base_url=body.base_url.rstrip("/"),
        secret_sealed=seal(body.secret, state.settings.signing_key),
        description=body.description,
        mpp=body.mpp,
        output=body.output.model_dump(),
        params_schema=body.params_schema,
    )
    state.identity.audit.record(
        "inference.service.registered",
        actor=admin.id,
        target_type="inference_service",
        target_id=service.id,
        client_ip=client.ip,
        name=service.name,
    )
    return ServicePublic.model_validate(service.model_dump())


@router.delete("/services/{service_id}", status_code=204)
def delete_service(service_id: uuid.UUID, records: Records, _: Admin) -> Response:
    """Remove an external service (admins); 409 while tasks of it are unfinished."""
    records.delete_service(records.service(service_id).id)
    return Response(status_code=204)


@router.post("", status_code=202, responses=TASK_ACCEPTED)
def create_task(
    body: InferenceCreate,
    state: State,
    records: Records,
    slides: SlideServiceDep,
    user: CurrentUser,
    client: RequestClient,
    request: Request,
    response: Response,
) -> TaskPublic:
    """Run a model over a slide as a task (a job); answers at once with its id."""
    slide = owned_slide(body.slide_id, slides, user)
    task, job = start_task(state, records, user, client, slide, body)
    response.headers["Location"] = request.url_for("read_task", task_id=str(task.id)).path
    return task_public(task, job)


@router.get("/tasks")
def read_tasks(
    records: Records,
    user: CurrentUser,
    slide_id: uuid.UUID | None = None,
    model: Annotated[LabelQuery, Query(max_length=200, description="The model's name.")] = None,
    status: Status | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[TaskPublic]:
    """Tasks, newest first, filtered by slide, model and status."""
    f = TaskFilter(
        owner_id=user.id, all_owners=user.is_admin, slide_id=slide_id, model=model, status=status
    )
    rows, total = records.find_tasks(f, limit=limit, offset=offset)
    items = [task_public(task, job) for task, job in rows]
    return Page[TaskPublic](items=items, total=total, limit=limit, offset=offset)


@router.get("/tasks/{task_id}")
def read_task(owned: OwnedTask) -> TaskPublic:
    """One task: status (as in /jobs), progress, summary and artefact file ids."""
    return task_public(*owned)


@router.delete("/tasks/{task_id}")
def cancel_task(
    owned: OwnedTask, state: State, user: CurrentUser, client: RequestClient
) -> TaskPublic:
    """Cancel a task and its region jobs; an external service is told to stop."""
    task, job = owned
    return task_public(task, state.cancel_job(user, client, job.id))
