"""URLs signed by the directory object store, served by the API itself (the S3 backend's
presigned URLs go to S3 instead). They carry their own signature and expiry, so they
need no other identity."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from common.objects import signing
from common.objects.disposition import content_disposition
from web.deps import State
from web.upload import to_sync

router = APIRouter(prefix="/signed", tags=["signed"])


@router.get("/object")
def read_signed_object(request: Request, state: State) -> StreamingResponse:
    """Download the object a signed GET URL names."""
    signed = signing.verify_get_object(request.query_params, key=state.settings.signing_key)
    objects = state.runtime.objects
    info = objects.head(signed.key)
    headers = {"Content-Length": str(info.size), "ETag": f'"{info.etag}"'}
    if signed.filename:
        headers["Content-Disposition"] = content_disposition(signed.filename)
    return StreamingResponse(
        objects.iter_bytes(signed.key),
        headers=headers,
        media_type=info.content_type or "application/octet-stream",
    )


@router.put("/object")
async def update_signed_object(request: Request, state: State) -> Response:
    """Write the body to the object a signed PUT URL names."""
    key = signing.verify_put_object(request.query_params, key=state.settings.signing_key)
    info = await run_in_threadpool(
        state.runtime.objects.put_stream,
        key,
        to_sync(request.stream()),
        content_type=request.headers.get("content-type"),
    )
    return Response(status_code=200, headers={"ETag": f'"{info.etag}"'})


@router.put("/part")
async def update_signed_part(request: Request, state: State) -> Response:
    """Store one part of a multipart upload; answer its ETag as S3 does."""
    part = signing.verify_put_part(request.query_params, key=state.settings.signing_key)
    info = await run_in_threadpool(
        state.runtime.objects.upload_part,
        part.key,
        part.upload_id,
        part.part_number,
        to_sync(request.stream()),
    )
    return Response(status_code=200, headers={"ETag": f'"{info.etag}"'})
