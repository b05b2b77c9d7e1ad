"""The `slides` record of a whole-slide file, made by the `metadata` job.

`record_slide(stored, ctx, info)` makes or refreshes its `slides` row from the metadata
the job read (`functions.metadata.describe_slide`); a file that is not a readable slide
fails that reading with UnsupportedFile, so no record appears.
"""

from __future__ import annotations

from typing import Any

from common.capabilities import Context, StoredFile
from common.errors import ApertureError
from common.slides import SlideRecord, Slides


def slides_of(ctx: Context) -> Slides:
    """The slides table as the job's process reaches it (the job context's runtime)."""
    runtime = getattr(ctx, "runtime", None)
    db = getattr(runtime, "db", None)
    if db is None:
        raise ApertureError("this job context has no database to record the slide in")
    return Slides(db)


def record_slide(stored: StoredFile, ctx: Context, info: dict[str, Any]) -> SlideRecord:
    """Make (or refresh) the `slides` record of `stored`.

    Parameters
    ----------
    stored : StoredFile
        The slide file (`ctx.file(file_id)`).
    ctx : Context
        The running job's context.
    info : dict
        The slide's metadata, `read_slide_info(...).model_dump(mode="json")` (the
        `metadata` job has it from reading the file).

    Returns
    -------
    SlideRecord
    """
    record = slides_of(ctx).record(stored, info, source_job_id=ctx.job_id)
    ctx.log(
        f"slide {record.id}: {record.vendor or 'unknown vendor'}, "
        f"{record.width} x {record.height}, {record.level_count} levels"
    )
    return record
