"""Capability `inference.external`: a slide sent to an admin's external inference
service, whose signed webhook callbacks drive the task.

The job posts the task to `<base>/tasks` (signed with the service's secret, so the
service can tell it is Aperture), then waits, cooperatively cancellable and lending its
worker slot, for the events the webhook route records (`inference_callbacks`): progress
becomes the job's progress, `failed` fails it, `succeeded` brings the predictions
(inline, kept as an object by the route, or at `predictions_url`), stored in the same
formats as the builtin models' (`functions.inference.outputs` via the merge). Cancelling
sends `DELETE <base>/tasks/{task_id}`; a service silent for
`APERTURE_INFERENCE_EXTERNAL_TIMEOUT_S` times the task out and is told to stop too.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.capabilities import Context, Resources, capability
from common.errors import ApertureError, InvalidInput, JobCancelled
from common.inference_records import CallbackRecord, InferenceRecords, ServiceRecord
from common.webhooks import CALLBACK_PATH, HEADER, sign, unseal
from functions.inference.params import InferenceResult, Region

log = logging.getLogger("aperture.inference.external")

#: Waiting costs little: a database read per poll. The timeout is the setting's (at most
#: 23 h); the job's own limit is above it.
EXTERNAL_RESOURCES = Resources(cpu=0.25, memory_mib=2048, timeout_s=24 * 3600)
POLL_S = 0.25
REQUEST_TIMEOUT_S = 30.0
#: Task progress while the service works (the rest is storing its predictions).
SERVICE_SHARE = (0.05, 0.9)


class ExternalParams(BaseModel):
    """`inference.external`: a stored slide through a registered external service."""

    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID = Field(description="The stored slide file.")
    service_id: uuid.UUID
    params: dict[str, Any] = Field(default_factory=dict, description="Passed to the service.")
    confidence_threshold: float = Field(default=0.5, ge=0, le=1)
    region: Region | None = Field(default=None, description="Only objects inside (level-0 px).")
    slide_mpp: float | None = Field(default=None, gt=0, le=100)


class TimedOut(ApertureError):
    code = "timeout"


class ServiceClient:
    """Signed requests to one external service."""

    def __init__(self, service: ServiceRecord, secret: str) -> None:
        self.service, self.secret = service, secret
        self.base = service.base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"ServiceClient({self.service.name!r}, {self.base!r})"

    def _send(self, method: str, url: str, body: bytes) -> Any:
        import httpx

        headers = {HEADER: sign(self.secret, body), "Content-Type": "application/json"}
        return httpx.request(method, url, content=body, headers=headers, timeout=REQUEST_TIMEOUT_S)

    def submit(self, payload: dict[str, Any]) -> None:
        """POST the task; an unreachable service or a non-2xx answer fails the task."""
        import httpx

        url = f"{self.base}/tasks"
        try:
            response = self._send("POST", url, json.dumps(payload).encode())
        except httpx.HTTPError as error:
            raise ApertureError(
                f"service {self.service.name!r} unreachable at {url}: {error}"
            ) from None
        if not response.is_success:
            raise ApertureError(
                f"service {self.service.name!r} refused the task: "
                f"{response.status_code} {response.text[:300]}"
            )

    def cancel(self, task_id: uuid.UUID) -> bool:
        """DELETE the task at the service; a failure is logged (the task ends anyway)."""
        import httpx

        url = f"{self.base}/tasks/{task_id}"
        try:
            response = self._send("DELETE", url, b"")
        except httpx.HTTPError as error:
            log.warning("could not cancel task %s at %s: %s", task_id, url, error)
            return False
        return bool(response.is_success or response.status_code == 404)


@capability(
    "inference.external",
    params=ExternalParams,
    result=InferenceResult,
    resources=EXTERNAL_RESOURCES,
)
def inference_external(params: ExternalParams, ctx: Context) -> InferenceResult:
    """Run an external inference service over a slide; its signed callbacks drive the task."""
    started = time.monotonic()
    settings = ctx.runtime.settings
    records = InferenceRecords(ctx.runtime.db)
    service = records.service(params.service_id)
    client = ServiceClient(service, unseal(records.sealed_secret(service.id), settings.signing_key))
    slide_file = ctx.file(params.file_id)
    slide = _slide(ctx, params)
    client.submit(
        {
            "task_id": str(ctx.job_id),
            "slide": {
                "download_url": ctx.objects.presigned_get_url(
                    slide_file.key, expires_s=settings.signed_url_ttl_s, filename=slide_file.name
                ),
                "expires_in": settings.signed_url_ttl_s,
                **slide,
            },
            "params": params.params,
            "region": params.region.points() if params.region else None,
            "callback_url": settings.public_url + CALLBACK_PATH,
        }
    )
    ctx.progress(SERVICE_SHARE[0], f"sent to {service.name}")
    try:
        done = _await_outcome(ctx, records, service, settings.inference_external_timeout_s)
    except (JobCancelled, TimedOut):
        client.cancel(ctx.job_id)
        raise
    ctx.progress(SERVICE_SHARE[1], "storing predictions")
    collection = _predictions(ctx, done)
    from functions.inference.external_outputs import store_predictions

    result = store_predictions(
        ctx, params, service, slide, collection, name=PurePosixPath(slide_file.name).stem
    )
    if done.predictions_key:
        ctx.objects.delete(done.predictions_key)
    result.summary["timing_s"] = {"total_s": round(time.monotonic() - started, 3)}
    return result


def _slide(ctx: Context, params: ExternalParams) -> dict[str, Any]:
    """The slide's size and resolution, from its record (made by the metadata job)."""
    from common.slides import SlideFilter

    wanted = SlideFilter(file_id=params.file_id, all_owners=True)
    found, _ = ctx.runtime.slides.find(wanted, limit=1)
    if not found:
        raise InvalidInput(f"file {params.file_id} has no slide record (is it a slide?)")
    record = found[0]
    mpp = record.mpp_x or params.slide_mpp
    if mpp is None:
        raise InvalidInput("the slide records no resolution (µm per pixel); pass slide_mpp")
    return {"mpp": mpp, "width": record.width, "height": record.height, "name": record.name}


def _await_outcome(
    ctx: Context, records: InferenceRecords, service: ServiceRecord, timeout_s: float
) -> CallbackRecord:
    """The service's `succeeded` event; its progress on the way. The worker's slot is
    lent to others meanwhile (the wait is a database poll)."""
    after, heard = 0, time.monotonic()
    low, high = SERVICE_SHARE
    ctx.runtime.waiting(True)
    try:
        while True:
            if ctx.cancelled():
                raise JobCancelled()
            for event in records.callbacks_after(ctx.job_id, after):
                after, heard = event.id, time.monotonic()
                note = f": {event.message}" if event.message else ""
                if event.status == "succeeded":
                    return event
                if event.status == "failed":
                    raise ApertureError(f"service {service.name!r} failed the task{note}")
                if event.status == "progress" and event.progress is not None:
                    ctx.progress(low + (high - low) * event.progress, event.message or "")
                else:
                    ctx.log(f"service {service.name!r} {event.status}{note}")
            if time.monotonic() - heard > timeout_s:
                raise TimedOut(
                    f"service {service.name!r} reported nothing for {timeout_s:g} s "
                    "(APERTURE_INFERENCE_EXTERNAL_TIMEOUT_S); the task timed out"
                )
            time.sleep(POLL_S)
    finally:
        ctx.runtime.waiting(False)


def _predictions(ctx: Context, event: CallbackRecord) -> Any:
    """The succeeded event's FeatureCollection: the body's (kept by the webhook route)
    or downloaded from `predictions_url` (at most the configured size)."""
    if event.predictions_key:
        return _json(ctx.objects.get_bytes(event.predictions_key))
    if not event.predictions_url:
        raise InvalidInput("the service reported success without predictions")
    import httpx

    limit = ctx.runtime.settings.inference_predictions_max_bytes
    with tempfile.TemporaryFile() as buffer:
        try:
            with httpx.stream("GET", event.predictions_url, timeout=120.0) as response:
                if not response.is_success:
                    raise ApertureError(
                        f"predictions_url answered {response.status_code}; no predictions"
                    )
                for chunk in response.iter_bytes():
                    buffer.write(chunk)
                    if buffer.tell() > limit:
                        raise InvalidInput(f"predictions_url holds more than {limit} bytes")
        except httpx.HTTPError as error:
            raise ApertureError(f"could not fetch predictions_url: {error}") from None
        buffer.seek(0)
        return _json(buffer.read())


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"the predictions are not JSON: {error}") from None
