"""Capability `cleanup`: the periodic sweep of storage left behind.

One pass does three things, each safe to repeat and to run in several processes at once:

- **stale multipart uploads**: every upload the store still holds (S3's paginated
  ListMultipartUploads, or the directory backend's `.uploads` parts) started more than
  `APERTURE_UPLOAD_EXPIRY_S` ago is aborted, and its `uploads` row, if any, marked
  `aborted`; `open` rows that old are aborted too (their store upload may be gone);
- **deleted files**: for each `files` row with `deleted_at` set, the object is deleted
  first and then the row, so a crash in between leaves a row to retry, never an orphan;
- **temporary artefacts**: objects under `tmp/` older than `APERTURE_TMP_TTL_S`.

Counts come from the database where it arbitrates (a row is flipped or deleted by one
run only), so concurrent runs never both count a file or an upload row. Store aborts and
deletes are idempotent but do not say whether anything was there, so two runs racing
over the same stale upload or temporary object may both count it. An item that fails
(say the store is briefly unreachable) is logged and counted in `errors`; the next run
retries it.

It runs from `aperture cleanup`, inside `aperture serve` (periodically) and as the Modal
scheduled function, always through `run_cleanup`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select, update

from common.capabilities import Context, Resources, capability
from common.errors import Forbidden
from common.records import File, User, transaction
from common.records.models import Upload
from common.runtime import Runtime

log = logging.getLogger("aperture.cleanup")

#: Prefix of temporary artefacts (job scratch space, exports waiting to be fetched).
TMP_PREFIX = "tmp/"
#: Rows read per query while purging deleted files.
BATCH = 500
#: Least age a caller may ask for: anything shorter would abort uploads in progress.
MIN_AGE_S = 60


class CleanupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upload_expiry_s: int | None = Field(
        default=None,
        ge=MIN_AGE_S,
        description="Abort multipart uploads older than this (default APERTURE_UPLOAD_EXPIRY_S).",
    )
    tmp_ttl_s: int | None = Field(
        default=None,
        ge=MIN_AGE_S,
        description="Delete tmp/ objects older than this (default APERTURE_TMP_TTL_S).",
    )


class CleanupReport(BaseModel):
    """What one pass did."""

    multipart_aborted: int = Field(default=0, description="Store multipart uploads aborted.")
    uploads_marked_aborted: int = Field(default=0, description="`uploads` rows set aborted.")
    files_purged: int = Field(default=0, description="Deleted files whose object and row went.")
    tmp_deleted: int = Field(default=0, description="Expired objects under tmp/ deleted.")
    errors: int = Field(default=0, description="Items that failed; the next pass retries them.")


def run_cleanup(
    runtime: Runtime,
    *,
    now: datetime | None = None,
    upload_expiry_s: int | None = None,
    tmp_ttl_s: int | None = None,
) -> CleanupReport:
    """One cleanup pass over the runtime's database and object store.

    Parameters
    ----------
    runtime
        Where the records and objects are.
    now
        The time ages are measured from (default: the current time, UTC).
    upload_expiry_s, tmp_ttl_s
        Override the settings of the same names.

    Returns
    -------
    CleanupReport
        Counts per kind of item; all zero when there was nothing to do.

    Raises
    ------
    ValueError
        If an age is shorter than `MIN_AGE_S`.
    """
    now = now or datetime.now(UTC)
    settings = runtime.settings
    upload_cutoff = now - _age("upload_expiry_s", upload_expiry_s, settings.upload_expiry_s)
    tmp_cutoff = now - _age("tmp_ttl_s", tmp_ttl_s, settings.tmp_ttl_s)
    report = CleanupReport()
    _abort_stale_uploads(runtime, upload_cutoff, now, report)
    _purge_deleted_files(runtime, report)
    _delete_expired_tmp(runtime, tmp_cutoff, report)
    log.info("cleanup pass done", extra={"report": report.model_dump()})
    return report


def _age(name: str, override: int | None, default: int) -> timedelta:
    seconds = default if override is None else override
    if seconds < MIN_AGE_S:
        raise ValueError(f"{name} must be at least {MIN_AGE_S} s, got {seconds}")
    return timedelta(seconds=seconds)


def _mark_aborted(runtime: Runtime, now: datetime, *where: Any) -> int:
    """Flip matching `open` rows to `aborted` (compare-and-set); how many this call flipped."""
    with transaction(runtime.db) as session:
        flipped = session.scalars(
            update(Upload)
            .where(Upload.status == "open", *where)
            .values(status="aborted", updated_at=now)
            .returning(Upload.id)
        ).all()
    return len(flipped)


def _abort_stale_uploads(
    runtime: Runtime, cutoff: datetime, now: datetime, report: CleanupReport
) -> None:
    objects = runtime.objects
    for upload in list(objects.list_multipart_uploads("")):
        initiated = upload.initiated
        if initiated.tzinfo is None:
            initiated = initiated.replace(tzinfo=UTC)
        if initiated >= cutoff:
            continue
        try:
            objects.abort_multipart(upload.key, upload.upload_id)
            report.multipart_aborted += 1
            report.uploads_marked_aborted += _mark_aborted(
                runtime, now, Upload.store_upload_id == upload.upload_id, Upload.key == upload.key
            )
        except Exception:
            report.errors += 1
            log.exception("could not abort multipart upload %s of %s", upload.upload_id, upload.key)
    # Rows whose store upload is gone already (aborted above by a run that crashed
    # before marking, or lost by the store) would otherwise stay open forever.
    with runtime.db() as session:
        stale = session.execute(
            select(Upload.id, Upload.key, Upload.store_upload_id).where(
                Upload.status == "open", Upload.created_at < cutoff
            )
        ).all()
    for row_id, key, store_upload_id in stale:
        try:
            objects.abort_multipart(key, store_upload_id)
            report.uploads_marked_aborted += _mark_aborted(runtime, now, Upload.id == row_id)
        except Exception:
            report.errors += 1
            log.exception("could not abort upload %s", row_id)


def _purge_deleted_files(runtime: Runtime, report: CleanupReport) -> None:
    after: uuid.UUID | None = None
    while True:
        query = select(File.id, File.key).where(File.deleted_at.is_not(None))
        if after is not None:
            query = query.where(File.id > after)
        with runtime.db() as session:
            batch = session.execute(query.order_by(File.id).limit(BATCH)).all()
        if not batch:
            return
        for file_id, key in batch:
            try:
                runtime.objects.delete(key)  # first: a crash now leaves the row to retry
                with transaction(runtime.db) as session:
                    gone = session.scalars(
                        delete(File)
                        .where(File.id == file_id, File.deleted_at.is_not(None))
                        .returning(File.id)
                    ).all()
                report.files_purged += len(gone)
            except Exception:
                report.errors += 1
                log.exception("could not purge deleted file %s", file_id)
        after = batch[-1][0]


def _delete_expired_tmp(runtime: Runtime, cutoff: datetime, report: CleanupReport) -> None:
    objects = runtime.objects
    expired = [info.key for info in objects.iter_objects(TMP_PREFIX) if info.last_modified < cutoff]
    for key in expired:
        try:
            objects.delete(key)
            report.tmp_deleted += 1
        except Exception:
            report.errors += 1
            log.exception("could not delete temporary object %s", key)


# the capability ------------------------------------------------------------------------


@capability(
    "cleanup",
    params=CleanupParams,
    result=CleanupReport,
    resources=Resources(cpu=0.5, memory_mib=512, timeout_s=3600, retries=1, max_containers=1),
)
def cleanup(params: CleanupParams, ctx: Context) -> CleanupReport:
    """Abort stale multipart uploads, purge deleted files' objects and rows, and delete
    expired tmp/ objects; runs on a schedule, or for an admin."""
    runtime: Runtime = ctx.runtime
    if ctx.owner_id is not None:
        with runtime.db() as session:
            user = session.get(User, ctx.owner_id)
        if user is None or user.role != "admin":
            raise Forbidden("cleanup runs on a schedule, or when an admin asks for it")
    return run_cleanup(runtime, upload_expiry_s=params.upload_expiry_s, tmp_ttl_s=params.tmp_ttl_s)
