"""Capabilities `inference.slide` (a model over a slide's tissue, fanning out regions)
and `inference.region` / `inference.region.gpu` (one region's tiles, a child).

The parent masks tissue on a low level, fixes the tile grid and (for `nuclei-he`) the
slide's colour statistics, splits the tissue tiles into regions, runs them (in this
job when there is one, else as children), then merges them into the task's outputs:
`<slide>.objects.parquet`, `<slide>.geojson` (QuPath), `<slide>.summary.json` and the
tissue mask (`.tissue.npz`), all stored as files of the job's owner made by this job.
"""

from __future__ import annotations

import io
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np

from common.capabilities import Context, Resources, capability
from common.errors import ApertureError, InvalidInput, JobCancelled
from common.objects.access import stored_path
from functions.inference.params import (
    InferenceParams,
    InferenceResult,
    RegionParams,
    RegionResult,
)

SLIDE_RESOURCES = Resources(cpu=1, memory_mib=4096, timeout_s=6 * 3600)
REGION_RESOURCES = Resources(cpu=1, memory_mib=2048, timeout_s=2 * 3600, retries=1)
#: GPU regions: cupy/cucim for nuclei-he, the CUDA execution provider for ONNX.
REGION_GPU_RESOURCES = Resources(cpu=4, memory_mib=16384, gpu="L4", timeout_s=2 * 3600, retries=1)
KIND_OBJECTS = "inference-objects"


@capability(
    "inference.slide", params=InferenceParams, result=InferenceResult, resources=SLIDE_RESOURCES
)
def inference_slide(params: InferenceParams, ctx: Context) -> InferenceResult:
    """Run a model over a slide's tissue: objects as GeoJSON, Parquet and a summary."""
    from functions.inference import plan

    started = time.monotonic()
    slide = ctx.file(params.file_id)
    with (
        tempfile.TemporaryDirectory(prefix="aperture-inference-") as tmp,
        stored_path(ctx.objects, slide.key, slide.name) as path,
    ):
        setup = plan.prepare(path, params)
        ctx.progress(0.05, f"{len(setup.tiles)} tissue tiles in {len(setup.regions)} regions")
        tissue_file = ctx.save_file(
            f"{_stem(slide.name)}.tissue.npz",
            _tissue_npz(setup.tissue),
            kind="inference-tissue",
            content_type="application/octet-stream",
        )
        if ctx.cancelled():
            raise JobCancelled()
        region_paths = _run_regions(params, ctx, setup, path, tissue_file.id, Path(tmp))
        ctx.progress(0.92, "merging regions")
        return plan.finish(
            params, ctx, setup, region_paths, Path(tmp), slide, tissue_file.id, started
        )


def _stem(name: str) -> str:
    return PurePosixPath(name).stem or "slide"


def _tissue_npz(tissue: Any) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(
        buf, mask=tissue.mask, downsample=tissue.downsample, slide_mpp=tissue.slide_mpp
    )
    return buf.getvalue()


def _load_tissue(data: bytes) -> Any:
    from functions.inference.tissue import TissueMask

    with np.load(io.BytesIO(data)) as z:
        return TissueMask(z["mask"], float(z["downsample"]), float(z["slide_mpp"]))


def _region_params(
    params: InferenceParams, setup: Any, index: int, tissue_id: uuid.UUID
) -> RegionParams:
    return RegionParams(
        file_id=params.file_id,
        model=params.model,
        confidence_threshold=params.confidence_threshold,
        slide_mpp=setup.slide_mpp,
        region_index=index,
        tiles=setup.regions[index],
        tissue_file_id=tissue_id,
        stain_stats=setup.stain_stats,
        device=params.device,
    )


def _run_regions(
    params: InferenceParams, ctx: Context, setup: Any, path: Path, tissue_id: uuid.UUID, tmp: Path
) -> list[Path]:
    """Each region's objects table as a local Parquet file, in region order."""
    from functions.inference.outputs import objects_table
    from functions.inference.plan import empty_objects

    total = max(1, len(setup.tiles))
    if not setup.regions:  # no tissue: one empty table keeps the outputs' schema
        out = tmp / "region-0.parquet"
        _write_parquet(
            objects_table(empty_objects(setup.io), setup.io.classes, _names(setup.io)), out
        )
        return [out]
    if len(setup.regions) == 1 and params.device != "gpu":
        child = _region_params(params, setup, 0, tissue_id)
        out = tmp / "region-0.parquet"
        try:
            table = _region_table(
                child,
                ctx,
                path,
                setup.tissue,
                lambda d, n: ctx.progress(0.05 + 0.85 * d / total, f"{d}/{n} tiles"),
            )
        except JobCancelled:
            raise
        except ApertureError as error:
            raise _region_failed(0, setup.regions[0], error.message, error.code) from error
        _write_parquet(table, out)
        return [out]
    function = "inference.region.gpu" if params.device == "gpu" else "inference.region"
    jobs = [
        ctx.spawn(function, _region_params(params, setup, i, tissue_id))
        for i in range(len(setup.regions))
    ]
    ctx.log(f"{len(jobs)} regions spawned ({function})")
    paths, done = [], 0
    for i, job in enumerate(jobs):
        (outcome,) = ctx.gather([job])
        if outcome.status == "cancelled" or ctx.cancelled():
            raise JobCancelled()
        if outcome.status != "succeeded" or not outcome.result:
            failure = outcome.error or {}
            message, code = failure.get("message", outcome.status), failure.get("type", "error")
            raise _region_failed(i, setup.regions[i], message, code)
        stored = ctx.file(uuid.UUID(str(outcome.result["objects_file_id"])))
        out = tmp / f"region-{i}.parquet"
        with out.open("wb") as f:
            for chunk in ctx.objects.iter_bytes(stored.key):
                f.write(chunk)
        paths.append(out)
        done += len(setup.regions[i])
        ctx.progress(
            0.05 + 0.85 * done / total, f"region {i + 1}/{len(jobs)}: {done}/{total} tiles"
        )
    return paths


def _region_failed(
    index: int, tiles: list[tuple[int, int]], message: str, code: str
) -> ApertureError:
    """The task's error for a failed region: names the region, keeps bad input bad."""
    text = f"region {index} ({len(tiles)} tiles from tile {list(tiles[0])}) failed: {message}"
    return (
        InvalidInput(text) if code in ("invalid-input", "unsupported-file") else ApertureError(text)
    )


def _names(io_: Any) -> tuple[str, ...]:
    return ("centroid_x", "centroid_y", *io_.measurements)


def _write_parquet(table: Any, out: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, out, compression="zstd")


def _region_table(
    params: RegionParams,
    ctx: Context,
    path: Path,
    tissue: Any,
    progress: Callable[[int, int], None],
) -> Any:
    """One region's objects (level-0 px) as an objects table."""
    from functions.inference.engine import run_tiles
    from functions.inference.outputs import objects_table
    from functions.inference.plan import build_model, tile_grid
    from functions.inference.tiling import SlideReader

    device: Literal["cpu", "gpu"] = "cpu" if params.device == "cpu" else ctx.device
    with SlideReader(path) as reader:
        model = build_model(params.model, params.stain_stats, device, ctx)
        grid = tile_grid(reader, model.io, params.slide_mpp)
        objects = run_tiles(
            model,
            reader,
            grid,
            [tuple(t) for t in params.tiles],  # type: ignore[misc]
            tissue=tissue,
            confidence_threshold=params.confidence_threshold,
            progress=progress,
            cancelled=ctx.cancelled,
        )
    return objects_table(objects, model.io.classes, _names(model.io))


def _run_region(params: RegionParams, ctx: Context) -> RegionResult:
    started = time.monotonic()
    slide = ctx.file(params.file_id)
    tissue = _load_tissue(ctx.objects.get_bytes(ctx.file(params.tissue_file_id).key))
    with stored_path(ctx.objects, slide.key, slide.name) as path:
        table = _region_table(
            params, ctx, path, tissue, lambda d, n: ctx.progress(d / n, f"{d}/{n} tiles")
        )
    buf = io.BytesIO()
    import pyarrow.parquet as pq

    pq.write_table(table, buf, compression="zstd")
    buf.seek(0)
    saved = ctx.save_file(
        f"region-{params.region_index}.parquet",
        buf,
        kind=KIND_OBJECTS + "-region",
        content_type="application/vnd.apache.parquet",
    )
    return RegionResult(
        region_index=params.region_index,
        tiles=len(params.tiles),
        objects=table.num_rows,
        objects_file_id=saved.id,
        seconds=round(time.monotonic() - started, 3),
    )


@capability(
    "inference.region", params=RegionParams, result=RegionResult, resources=REGION_RESOURCES
)
def inference_region(params: RegionParams, ctx: Context) -> RegionResult:
    """One region of an `inference.slide` task: its tiles' objects as a Parquet table."""
    return _run_region(params, ctx)


@capability(
    "inference.region.gpu", params=RegionParams, result=RegionResult, resources=REGION_GPU_RESOURCES
)
def inference_region_gpu(params: RegionParams, ctx: Context) -> RegionResult:
    """`inference.region` on a GPU worker (cupy/cucim; ONNX with the CUDA provider)."""
    return _run_region(params, ctx)
