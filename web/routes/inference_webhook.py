"""`POST /inference/webhook/callback`: what external inference services report.

No user credentials: the signature is the authentication. `X-Aperture-Signature:
t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` with the secret of the
service the task was sent to. A missing or malformed header, a timestamp outside the
5-minute window, an unknown task, or a signature that does not match: 401, and nothing
is recorded. A repeated `event_id`: 200, and nothing changes. Only a signed body is
checked for its content (422), so nothing is said to a caller who cannot sign.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from common.errors import Conflict, InvalidInput, NotFound, TooLarge
from common.inference_records import InferenceRecords
from common.jobs.models import JobRecord
from common.webhooks import HEADER, BadWebhookSignature, check_fresh, parse, unseal, verify
from web.deps import State
from web.inference import EXTERNAL_FUNCTION, callback_prefix
from web.inference_schemas import CallbackAccepted, CallbackBody
from web.state import AppState

router = APIRouter(prefix="/inference/webhook", tags=["inference"])

UNKNOWN = "no task of an external service with that id awaits callbacks"


async def _body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(
                f"the callback is larger than {limit} bytes; send predictions_url instead"
            )
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/callback",
    responses={401: {"description": "Unsigned, wrongly signed, stale, or for an unknown task."}},
)
async def receive_callback(request: Request, state: State) -> CallbackAccepted:
    """An external service's event for a task (signed with the service's secret)."""
    header = request.headers.get(HEADER)
    check_fresh(parse(header)[0])  # cheap refusals before reading the body
    body = await _body(request, state.settings.inference_callback_max_bytes)
    return await run_in_threadpool(_accept, state, header, body)


def _accept(state: AppState, header: str | None, body: bytes) -> CallbackAccepted:
    records = InferenceRecords(state.runtime.db)
    raw = _json(body)
    job = _external_task(state, raw)
    try:
        sealed = records.sealed_secret(uuid.UUID(str(job.params["service_id"])))
    except (KeyError, ValueError, NotFound):
        raise BadWebhookSignature(UNKNOWN) from None
    verify(unseal(sealed, state.settings.signing_key), header, body)
    try:
        event = CallbackBody.model_validate(raw)
    except ValidationError as error:
        item = error.errors(include_url=False)[0]
        where = ".".join(str(p) for p in item["loc"]) or "(body)"
        raise InvalidInput(f"the callback is not valid: {where}: {item['msg']}") from None
    if event.status == "succeeded" and event.predictions is None and not event.predictions_url:
        raise InvalidInput("a succeeded callback needs predictions or predictions_url")
    if records.has_callback(job.id, event.event_id):
        return CallbackAccepted(task_id=job.id, event_id=event.event_id, duplicate=True)
    if job.status.terminal:
        raise Conflict(f"task {job.id} is {job.status.value}; it takes no more events")
    key = _keep_predictions(state, job.id, event)
    recorded = records.add_callback(
        job.id,
        owner_id=job.owner_id,
        event_id=event.event_id,
        status=event.status,
        progress=event.progress,
        message=event.message,
        predictions_key=key,
        predictions_url=event.predictions_url,
    )
    if not recorded and key is not None:  # the same event, raced in by another request
        state.runtime.objects.delete(key)
    return CallbackAccepted(task_id=job.id, event_id=event.event_id, duplicate=not recorded)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        # unsigned content is not described: a caller who cannot sign learns nothing
        raise BadWebhookSignature(UNKNOWN) from None


def _external_task(state: AppState, raw: Any) -> JobRecord:
    """The job of an external task named by the body (401 for anything else)."""
    try:
        task_id = uuid.UUID(str(raw["task_id"]))
        job = state.runtime.jobs.get(task_id)
    except (TypeError, KeyError, ValueError, NotFound):
        raise BadWebhookSignature(UNKNOWN) from None
    if job.function != EXTERNAL_FUNCTION:
        raise BadWebhookSignature(UNKNOWN)
    return job


def _keep_predictions(state: AppState, task_id: uuid.UUID, event: CallbackBody) -> str | None:
    """Inline predictions as an object the task reads (deleted once it stored them)."""
    if event.predictions is None:
        return None
    name = hashlib.sha256(event.event_id.encode()).hexdigest()[:32]
    key = f"{callback_prefix(task_id)}{name}.geojson"
    data = json.dumps(event.predictions, separators=(",", ":")).encode()
    state.runtime.objects.put_bytes(key, data, content_type="application/geo+json")
    return key
