"""Files: multipart uploads, streamed small uploads, listing, info, downloads (Range,
If-None-Match), rename/move, delete, usage, and imports from the server's disk."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from common.capabilities import StoredFile
from common.errors import RangeNotSatisfiable
from common.files import ANY_OWNER, FileFilter
from common.imports import resolve_import_path
from common.objects.disposition import content_disposition
from common.records.models import Upload
from web.deps import CurrentUser, RequestClient, State, visible_to
from web.fields import BigCount, LabelQuery, Limit, Offset, TimestampQuery
from web.file_detail import METADATA_JOB, file_detail
from web.file_schemas import (
    FileDetail,
    FileImport,
    FileUpdate,
    PartPublic,
    StoredPart,
    UploadComplete,
    UploadCreate,
    UploadPlan,
    UploadPublic,
    Usage,
)
from web.http import etag_matches, presigned_redirect, quoted
from web.schemas import BulkDelete, BulkDeleted, FilePublic, Page
from web.upload import MultipartFile

router = APIRouter(prefix="/files", tags=["files"])

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def owned_file(file_id: uuid.UUID, state: State, user: CurrentUser) -> StoredFile:
    """The file if the caller may see it (404 otherwise)."""
    return visible_to(user, state.runtime.files.get(file_id), "file")


OwnedFile = Annotated[StoredFile, Depends(owned_file)]


def owned_upload(upload_id: uuid.UUID, state: State, user: CurrentUser) -> Upload:
    """The caller's own upload (uploads are personal: another user's, admins' too, is 404)."""
    return state.runtime.uploads.get(upload_id, owner_id=user.id)


OwnedUpload = Annotated[Upload, Depends(owned_upload)]


def _after_store(
    state: State, stored: StoredFile, user: CurrentUser, client: RequestClient, how: str
) -> FileDetail:
    state.identity.audit.record(
        "file.uploaded",
        actor=user.id,
        target_type="file",
        target_id=stored.id,
        client_ip=client.ip,
        name=stored.name,
        size=stored.size,
        via=how,
    )
    if stored.kind == "slide":  # slides get their metadata (and slide record) at once
        job = state.jobs.submit(
            "metadata", {"file_id": str(stored.id)}, owner_id=user.id, tags=["auto"]
        )
        state.runtime.catalog.update(stored.id, {"details": {METADATA_JOB: str(job.id)}})
    return file_detail(state, stored.id)


# -- multipart uploads -----------------------------------------------------------------


@router.post("/uploads", status_code=201)
def create_upload(body: UploadCreate, state: State, user: CurrentUser) -> UploadPlan:
    """Plan a multipart upload: one URL per part; PUT each part's bytes, keep its ETag."""
    if body.dataset_id is not None:
        state.runtime.catalog.check_dataset(body.dataset_id, user.id, admin=user.is_admin)
    planned = state.runtime.uploads.start(
        owner_id=user.id,
        name=body.name,
        size=body.size,
        content_type=body.content_type,
        sha256=body.sha256,
        dataset_id=body.dataset_id,
    )
    upload = planned.upload
    return UploadPlan(
        id=upload.id,
        name=upload.name,
        size=upload.size,
        part_size=upload.part_size,
        part_count=upload.part_count,
        parts=[PartPublic(number=n, url=url) for n, url in planned.part_urls],
    )


@router.get("/uploads/{upload_id}")
def read_upload(upload: OwnedUpload, state: State) -> UploadPublic:
    """What is stored so far (to resume after a dropped connection)."""
    parts = [
        StoredPart(number=p.number, etag=p.etag, size=p.size)
        for p in state.runtime.uploads.stored_parts(upload)
    ]
    return UploadPublic(
        id=upload.id,
        name=upload.name,
        size=upload.size,
        status=upload.status,
        part_size=upload.part_size,
        part_count=upload.part_count,
        parts=parts,
        file_id=upload.file_id if upload.status == "completed" else None,
    )


@router.post("/uploads/{upload_id}/complete", status_code=201)
def complete_upload(
    upload: OwnedUpload,
    body: UploadComplete,
    state: State,
    user: CurrentUser,
    client: RequestClient,
) -> FileDetail:
    """Assemble the parts and verify size, SHA-256 and type; the file record is the answer
    (for a slide, with the job that reads it: see GET /files/{id})."""
    stored = state.runtime.uploads.complete(
        upload, [(p.number, p.etag) for p in body.parts], sha256=body.sha256
    )
    return _after_store(state, stored, user, client, "multipart")


@router.delete("/uploads/{upload_id}", status_code=204)
def delete_upload(upload: OwnedUpload, state: State) -> Response:
    """Abort an upload and drop its parts."""
    state.runtime.uploads.abort(upload)
    return Response(status_code=204)


# -- small uploads and imports -----------------------------------------------------------


@router.post(
    "",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                }
            },
        }
    },
)
async def create_file(
    request: Request, state: State, user: CurrentUser, client: RequestClient
) -> FileDetail:
    """Upload a file as multipart/form-data (field `file`, last), streamed to storage and
    checked like a multipart upload."""
    form = MultipartFile(request)
    await form.open()
    stored = await run_in_threadpool(
        state.runtime.files.add,
        form.sync_chunks(),
        name=form.filename or "",
        owner_id=user.id,
        content_type=form.content_type,
        check=state.runtime.uploads.vet(user.id),
    )
    return await run_in_threadpool(_after_store, state, stored, user, client, "form")


@router.post("/import", status_code=201)
def import_file(
    body: FileImport, state: State, user: CurrentUser, client: RequestClient
) -> FileDetail:
    """Copy a file from the server's disk (under APERTURE_IMPORT_ROOTS) into the store."""
    path = resolve_import_path(body.path, state.settings.import_roots)
    stored = state.import_file(user, path, name=body.name)
    return _after_store(state, stored, user, client, "import")


# -- listing and usage -------------------------------------------------------------------


@router.get("")
def read_files(
    state: State,
    user: CurrentUser,
    kind: LabelQuery = None,
    dataset_id: uuid.UUID | None = None,
    name: Annotated[LabelQuery, Query(description="Name contains.")] = None,
    created_after: TimestampQuery = None,
    created_before: TimestampQuery = None,
    sha256: Annotated[
        str | None, Query(pattern="^[0-9a-fA-F]{64}$", description="Exact content hash.")
    ] = None,
    size: Annotated[BigCount | None, Query(description="Exact size in bytes.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[FilePublic]:
    """Files, newest first, filtered by kind, dataset, name, creation time, and content
    (SHA-256 and size: clients skip uploading bytes they already stored)."""
    f = FileFilter(
        owner_id=user.id,
        all_owners=user.is_admin,
        kind=kind,
        dataset_id=dataset_id,
        name_contains=name,
        created_after=created_after,
        created_before=created_before,
        sha256=sha256,
        size=size,
    )
    rows, total = state.runtime.catalog.find(f, limit=limit, offset=offset)
    return Page[FilePublic](
        items=[FilePublic.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/usage")
def read_usage(state: State, user: CurrentUser) -> Usage:
    """Bytes and files stored, by kind (admins: everyone's, also by user)."""
    return Usage(
        **state.runtime.catalog.usage(FileFilter(owner_id=user.id, all_owners=user.is_admin))
    )


@router.post("/bulk-delete")
def delete_files(
    body: BulkDelete, state: State, user: CurrentUser, client: RequestClient
) -> BulkDeleted:
    """Delete several files; ids that are not yours (or not there) are reported, not deleted."""
    deleted = state.runtime.catalog.delete(
        body.ids, state.runtime.objects, owner_id=ANY_OWNER if user.is_admin else user.id
    )
    for file_id in deleted:
        state.identity.audit.record(
            "file.deleted",
            actor=user.id,
            target_type="file",
            target_id=file_id,
            client_ip=client.ip,
        )
    gone = set(deleted)
    return BulkDeleted(deleted=deleted, not_found=[i for i in body.ids if i not in gone])


# -- one file ------------------------------------------------------------------------------


@router.get("/{file_id}")
def read_file(stored: OwnedFile, state: State) -> FileDetail:
    """A file's record, with derived metadata when known; for a whole-slide image, its
    slide's state (`pending`, `ready` with `slide_id`, or `failed` with the reason)."""
    return file_detail(state, stored.id)


@router.patch("/{file_id}")
def update_file(stored: OwnedFile, body: FileUpdate, state: State, user: CurrentUser) -> FilePublic:
    """Rename a file or move it to (or out of) a dataset."""
    values = body.model_dump(exclude_unset=True)
    if values.get("dataset_id") is not None:
        state.runtime.catalog.check_dataset(values["dataset_id"], user.id, admin=user.is_admin)
    return FilePublic.model_validate(state.runtime.catalog.update(stored.id, values))


@router.delete("/{file_id}", status_code=204)
def delete_file(
    stored: OwnedFile, state: State, user: CurrentUser, client: RequestClient
) -> Response:
    """Delete a file: gone at once; its bytes are removed now or by cleanup."""
    state.runtime.catalog.delete([stored.id], state.runtime.objects)
    state.identity.audit.record(
        "file.deleted", actor=user.id, target_type="file", target_id=stored.id, client_ip=client.ip
    )
    return Response(status_code=204)


@router.get(
    "/{file_id}/download",
    response_model=None,
    responses={
        206: {"description": "A byte range"},
        304: {"description": "Unchanged"},
        307: {"description": "Redirect to a presigned URL (S3)"},
        416: {"description": "Range not satisfiable"},
    },
)
def download_file(
    stored: OwnedFile,
    state: State,
    range_header: Annotated[str | None, Header(alias="range")] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> StreamingResponse | Response:
    """The file's bytes, streamed; honours Range (one range) and If-None-Match."""
    etag = quoted(str(stored.sha256))
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(stored.name),
    }
    if etag_matches(etag, if_none_match):
        return Response(status_code=304, headers={"ETag": etag})
    objects = state.runtime.objects
    if state.settings.download_redirect and objects.kind == "s3" and range_header is None:
        ttl = state.settings.download_url_ttl_s
        return presigned_redirect(objects, stored.key, expires_s=ttl, filename=stored.name)
    media = stored.content_type or "application/octet-stream"
    span = _byte_range(range_header, stored.size)
    if span is None:
        headers["Content-Length"] = str(stored.size)
        return StreamingResponse(
            objects.iter_bytes(stored.key) if stored.size else iter(()),
            media_type=media,
            headers=headers,
        )
    start, end = span
    headers |= {
        "Content-Range": f"bytes {start}-{end - 1}/{stored.size}",
        "Content-Length": str(end - start),
    }
    return StreamingResponse(
        objects.iter_bytes(stored.key, start=start, end=end),
        status_code=206,
        media_type=media,
        headers=headers,
    )


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of a single `bytes=` range; None for no (or an ignorable) range.
    An unsatisfiable range raises RangeNotSatisfiable."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None  # multiple ranges or another unit: RFC 9110 lets us send it whole
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
        if last and int(last) < start:
            return None
    else:
        start, end = max(size - int(last), 0), size
    if start >= size or end <= start:
        raise RangeNotSatisfiable(size)
    return start, end
