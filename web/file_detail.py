"""What GET /files/{id} and the upload routes answer about one file: its record, and for
a whole-slide image where its slide is (the `metadata` job started on upload reads it
and makes the slide record, or says why it cannot)."""

from __future__ import annotations

import uuid

from common.errors import NotFound
from common.jobs.status import Status
from common.records.models import File
from common.slides import SlideFilter
from web.file_schemas import FileDetail, SlideState
from web.state import AppState

METADATA_JOB = "metadata_job_id"  # in a file's `details`: the job that reads it


def file_detail(state: AppState, file_id: uuid.UUID) -> FileDetail:
    """A file's record for the API: its derived details, and for a whole-slide image the
    job that reads it and its slide's state."""
    row = state.runtime.files.record(file_id)
    recorded = (row.details or {}).get(METADATA_JOB)
    job_id = uuid.UUID(recorded) if recorded else None
    derived = {k: v for k, v in (row.details or {}).items() if k != METADATA_JOB}
    return FileDetail.model_validate(row).model_copy(
        update={
            "details": derived or None,
            "metadata_job_id": job_id,
            "slide": _slide_state(state, row, job_id) if row.kind == "slide" else None,
        }
    )


def _slide_state(state: AppState, row: File, job_id: uuid.UUID | None) -> SlideState:
    """`ready` once the slide record exists; `failed` with the metadata job's reason;
    `pending` while that job is queued or running."""
    found, _ = state.runtime.slides.find(SlideFilter(file_id=row.id, all_owners=True), limit=1)
    if found:
        return SlideState(status="ready", slide_id=found[0].id)
    try:
        job = state.runtime.jobs.get(job_id) if job_id else None
    except NotFound:
        job = None
    if job is None or not job.status.terminal:
        return SlideState(status="pending")
    if job.status is Status.succeeded:  # it read the file, yet made no record
        return SlideState(status="failed", reason="no slide record was made")
    reason = job.error.message if job.error else f"its metadata job was {job.status.value}"
    return SlideState(status="failed", reason=reason)
