"""Files (minimal, for capability inputs): streamed upload, info, streamed download."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from common.capabilities import StoredFile
from common.errors import NotFound
from common.objects.disposition import content_disposition
from web.deps import CurrentUser, RequestClient, State
from web.schemas import FilePublic
from web.upload import MultipartFile

router = APIRouter(prefix="/files", tags=["files"])


def owned_file(file_id: uuid.UUID, state: State, user: CurrentUser) -> StoredFile:
    """The file if the caller may see it; another owner's file is 404."""
    stored = state.runtime.files.get(file_id)
    if not user.may_see(stored.owner_id):
        raise NotFound(f"no file with id {file_id}")
    return stored


OwnedFile = Annotated[StoredFile, Depends(owned_file)]


@router.post(
    "", status_code=201,
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"},
            "kind": {"type": "string"}}}}}}},
)
async def create_file(request: Request, state: State, user: CurrentUser,
                      client: RequestClient) -> FilePublic:
    """Upload a file as multipart/form-data (field `file`, last), streamed to storage."""
    form = MultipartFile(request)
    await form.open()
    stored = await run_in_threadpool(
        state.runtime.files.add, form.sync_chunks(), name=form.filename or "",
        owner_id=user.id, content_type=form.content_type, kind=form.fields.get("kind"),
    )
    await run_in_threadpool(
        state.identity.audit.record, "file.uploaded", actor=user.id, target_type="file",
        target_id=stored.id, client_ip=client.ip, name=stored.name, size=stored.size)
    return FilePublic.model_validate(state.runtime.files.record(stored.id))


@router.get("/{file_id}")
def read_file(stored: OwnedFile, state: State) -> FilePublic:
    """A file's record."""
    return FilePublic.model_validate(state.runtime.files.record(stored.id))


@router.get("/{file_id}/download")
def download_file(stored: OwnedFile, state: State) -> StreamingResponse:
    """The file's bytes, streamed."""
    headers = {"Content-Length": str(stored.size),
               "Content-Disposition": content_disposition(stored.name)}
    if stored.sha256:
        headers["ETag"] = f'"{stored.sha256}"'
    return StreamingResponse(
        state.runtime.objects.iter_bytes(stored.key),
        media_type=stored.content_type or "application/octet-stream", headers=headers,
    )
