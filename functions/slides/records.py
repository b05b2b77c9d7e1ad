"""The `slides` record of a whole-slide file, made by the `metadata` job.

`record_slide(stored, ctx)` reads the slide's metadata (no pixel data beyond OpenSlide's
small probe read) and makes or refreshes its `slides` row. A file that is not a readable
slide raises UnsupportedFile before anything is written, so the job fails with that
message and no record appears.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
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


@contextlib.contextmanager
def local_copy(objects: Any, stored: StoredFile) -> Iterator[Path]:
    """A path with the file's bytes: the store's own file, or a temporary copy."""
    local_path = getattr(objects, "local_path", None)
    local = local_path(stored.key) if local_path is not None else None
    if local is not None:
        yield Path(local)
        return
    tmp = Path(tempfile.mkdtemp(prefix="aperture-slide-"))
    try:
        path = tmp / Path(stored.name).name
        with path.open("wb") as out:
            for chunk in objects.iter_bytes(stored.key):
                out.write(chunk)
        yield path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def record_slide(
    stored: StoredFile, ctx: Context, info: dict[str, Any] | None = None
) -> SlideRecord:
    """Make (or refresh) the `slides` record of `stored`.

    Parameters
    ----------
    stored : StoredFile
        The slide file (`ctx.file(file_id)`).
    ctx : Context
        The running job's context.
    info : dict, optional
        `read_slide_info(...).model_dump(mode="json")` when the caller read it already;
        read from the file otherwise.

    Returns
    -------
    SlideRecord

    Raises
    ------
    UnsupportedFile
        If the file is not a slide OpenSlide can read (nothing is recorded).
    """
    if info is None:
        from functions.slides.info import read_slide_info

        with local_copy(ctx.objects, stored) as path:
            info = read_slide_info(path).model_dump(mode="json")
    record = slides_of(ctx).record(stored, info, source_job_id=ctx.job_id)
    ctx.log(
        f"slide {record.id}: {record.vendor or 'unknown vendor'}, "
        f"{record.width} x {record.height}, {record.level_count} levels"
    )
    return record
