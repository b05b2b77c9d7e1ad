"""The `tiles.pyramid` capability: a slide's whole Deep Zoom pyramid in object storage.

Small slides run as one `dzsave`, and so does any slide whose children would share this
machine's cores (the local executor). Large ones elsewhere fan out: child jobs (this
same capability with `part="band"`) write bands of full-resolution tile rows while the
parent builds the lower levels; the output is identical tile for tile (see pyramid.py).
The `.dzi` is stored last, so its presence means the pyramid is complete; a failed or
cancelled run removes everything it wrote under `slides/{slide_id}/dzi/`.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.capabilities import Context, Resources, capability
from common.errors import ApertureError, JobCancelled
from common.objects.access import stored_path

#: Slides with more full-resolution pixels than this fan out when band_rows is 0 and
#: children run on machines of their own.
FAN_OUT_PIXELS = 400_000_000
#: Tile rows per band when fanning out automatically (about 8,000 pixels at 254).
AUTO_BAND_ROWS = 32


class PyramidParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID = Field(description="The stored slide file.")
    slide_id: uuid.UUID = Field(description="Output goes under slides/{slide_id}/dzi/.")
    tile_size: int = Field(254, ge=1, le=4096)
    overlap: int = Field(1, ge=0, le=64)
    format: Literal["jpeg", "png"] = "jpeg"
    quality: int = Field(75, ge=1, le=100)
    band_rows: int = Field(
        0,
        ge=0,
        description="Tile rows per child job; 0 = automatic (one job below 400 megapixels "
        "or with local workers).",
    )
    part: Literal["all", "band"] = Field("all", description="Internal: 'band' for children.")
    band: tuple[int, int] | None = Field(None, description="Internal: [start, stop) rows.")


class PyramidResult(BaseModel):
    slide_id: uuid.UUID
    prefix: str
    dzi_key: str | None
    width: int
    height: int
    levels: int
    tiles: int
    bands: int


def dzi_prefix(slide_id: uuid.UUID | str) -> str:
    return f"slides/{slide_id}/dzi"


def pyramid_dzi_key(slide_id: uuid.UUID | str) -> str:
    """Where a finished pyramid's descriptor is; its presence means every tile is there."""
    return f"{dzi_prefix(slide_id)}/slide.dzi"


def pyramid_tile_key(slide_id: uuid.UUID | str, level: int, col: int, row: int, fmt: str) -> str:
    """The object key of one pre-generated tile (what the web layer serves when the
    pyramid's settings equal the live ones)."""
    return f"{dzi_prefix(slide_id)}/slide_files/{level}/{col}_{row}.{fmt}"


@capability(
    "tiles.pyramid",
    params=PyramidParams,
    result=PyramidResult,
    resources=Resources(cpu=2, memory_mib=4096, timeout_s=4 * 3600, retries=1),
)
def tiles_pyramid(params: PyramidParams, ctx: Context) -> PyramidResult:
    """Pre-generate a slide's Deep Zoom pyramid with libvips dzsave into object storage."""
    from functions.slides import pyramid

    options = pyramid.PyramidOptions(
        tile_size=params.tile_size,
        overlap=params.overlap,
        format=params.format,
        quality=params.quality,
    )
    prefix = dzi_prefix(params.slide_id)
    try:
        slide = ctx.file(params.file_id)
        with (
            tempfile.TemporaryDirectory(prefix="aperture-pyramid-") as tmp,
            pyramid.output_dir(ctx.objects, Path(tmp)) as out,
            stored_path(ctx.objects, slide.key, slide.name) as slide_path,
        ):
            image = pyramid.open_level0(slide_path, Path(tmp))
            if params.part == "band":
                return _run_band(params, ctx, image, options, out, prefix)
            rows = params.band_rows or _auto_band_rows(ctx, image)
            if rows:
                return _run_fan_out(params, ctx, image, options, out, prefix, rows)
            return _run_single(params, ctx, image, options, out, prefix)
    except BaseException:
        if params.part == "all":
            ctx.objects.delete_prefix(prefix + "/")
        raise


def _auto_band_rows(ctx: Context, image: Any) -> int:
    """Tile rows per band when the caller left it to us (0: one dzsave). Only a big
    slide fans out, and only where children get machines of their own: local workers
    share this machine's cores, which one dzsave already keeps busy, so bands there
    only add the halving and the overlap rows (50,000 x 40,000 on two cores: 103 s
    fanned out, 48 s as one dzsave)."""
    if image.width * image.height <= FAN_OUT_PIXELS:
        return 0
    return 0 if ctx.runtime.settings.executor == "local" else AUTO_BAND_ROWS


def _result(
    params: PyramidParams,
    image: Any,
    options: Any,
    prefix: str,
    tiles: int,
    bands: int,
    complete: bool,
) -> PyramidResult:
    from functions.slides.pyramid import NAME, full_geometry

    geometry = full_geometry(image, options)
    return PyramidResult(
        slide_id=params.slide_id,
        prefix=prefix,
        dzi_key=f"{prefix}/{NAME}.dzi" if complete else None,
        width=image.width,
        height=image.height,
        levels=geometry.level_count,
        tiles=tiles,
        bands=bands,
    )


def _publish_tiles(ctx: Context, out: Path, prefix: str) -> int:
    """Store the tiles built in `out` (durably, see `publish_tree`); returns how many."""
    from functions.slides.pyramid import NAME, publish_tree

    return publish_tree(
        ctx.objects, out / f"{NAME}_files", f"{prefix}/{NAME}_files", cancelled=ctx.cancelled
    )


def _publish_dzi(ctx: Context, out: Path, prefix: str) -> None:
    """Store the .dzi, after every tile: a visible .dzi means a whole pyramid."""
    from functions.slides.pyramid import NAME

    ctx.objects.put_file(
        f"{prefix}/{NAME}.dzi", out / f"{NAME}.dzi", content_type="application/xml"
    )


def _run_single(
    params: PyramidParams, ctx: Context, image: Any, options: Any, out: Path, prefix: str
) -> PyramidResult:
    from functions.slides.pyramid import build_pyramid

    build_pyramid(
        image, out, options, cancelled=ctx.cancelled, progress=lambda f, m: ctx.progress(0.9 * f, m)
    )
    ctx.progress(0.9, "storing tiles")
    tiles = _publish_tiles(ctx, out, prefix)
    _publish_dzi(ctx, out, prefix)
    ctx.progress(1.0, f"{tiles} tiles")
    return _result(params, image, options, prefix, tiles, 1, True)


def _run_band(
    params: PyramidParams, ctx: Context, image: Any, options: Any, out: Path, prefix: str
) -> PyramidResult:
    from functions.slides.pyramid import build_band

    if params.band is None:
        raise ApertureError("a band job needs band=[start, stop)")
    build_band(
        image,
        out,
        options,
        params.band,
        cancelled=ctx.cancelled,
        progress=lambda f, m: ctx.progress(0.9 * f, m),
    )
    tiles = _publish_tiles(ctx, out, prefix)
    ctx.progress(1.0, f"rows {params.band[0]}-{params.band[1]}: {tiles} tiles")
    return _result(params, image, options, prefix, tiles, 1, False)


def _run_fan_out(
    params: PyramidParams,
    ctx: Context,
    image: Any,
    options: Any,
    out: Path,
    prefix: str,
    rows: int,
) -> PyramidResult:
    from functions.slides.pyramid import build_lower_levels, plan_bands

    bands = plan_bands(image, options, rows)
    children = [
        ctx.spawn("tiles.pyramid", params.model_copy(update={"part": "band", "band": band}))
        for band in bands
    ]
    ctx.log(f"{len(bands)} bands of {rows} tile rows spawned")
    build_lower_levels(
        image, out, options, cancelled=ctx.cancelled, progress=lambda f, m: ctx.progress(0.4 * f, m)
    )
    tiles = _publish_tiles(ctx, out, prefix)  # the .dzi waits in `out` for every band
    ctx.progress(0.5, "lower levels uploaded; waiting for bands")
    outcomes = ctx.gather(children)
    failed = [o for o in outcomes if o.status != "succeeded"]
    if ctx.cancelled() or any(o.status == "cancelled" for o in failed):
        raise JobCancelled()
    if failed:
        detail = failed[0].error or {}
        raise ApertureError(
            f"{len(failed)} of {len(bands)} bands failed: {detail.get('message', failed[0].status)}"
        )
    tiles += sum(int((o.result or {}).get("tiles", 0)) for o in outcomes)
    _publish_dzi(ctx, out, prefix)
    ctx.progress(1.0, f"{tiles} tiles in {len(bands)} bands")
    return _result(params, image, options, prefix, tiles, len(bands), True)
