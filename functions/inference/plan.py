"""The steps of an inference task around the engine: the model's declaration and
instance from its spec, the slide's tile grid, tissue, tiles and regions (`prepare`),
and the merged outputs with their summary (`finish`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from common.errors import InvalidInput
from functions.inference.models import ModelIO, TileModel
from functions.inference.objects import Objects
from functions.inference.params import (
    BuiltinModelSpec,
    InferenceParams,
    InferenceResult,
    OnnxModelSpec,
    Region,
)
from functions.inference.tiling import SlideReader, TileGrid, plan_regions
from functions.inference.tissue import TissueMask, sample_tissue_pixels, tissue_mask


def model_io(spec: BuiltinModelSpec | OnnxModelSpec) -> ModelIO:
    """A model's declaration, without loading it."""
    if isinstance(spec, BuiltinModelSpec):
        from functions.inference.nuclei_he import declaration

        return declaration(spec.params)
    from functions.inference.onnx_model import declaration as onnx_declaration

    return onnx_declaration(spec)


def build_model(
    spec: BuiltinModelSpec | OnnxModelSpec,
    stain_stats: Any,
    device: Literal["cpu", "gpu"],
    ctx: Any,
) -> TileModel:
    """The runnable model for one worker."""
    if isinstance(spec, BuiltinModelSpec):
        from functions.inference.nuclei_he import NucleiHE

        if stain_stats is None:
            raise InvalidInput("nuclei-he needs the slide's colour statistics")
        return NucleiHE(spec.params, stain_stats[0], stain_stats[1], device=device)
    from functions.inference.onnx_model import OnnxModel, open_session

    stored = ctx.file(spec.file_id)
    return OnnxModel(open_session(ctx.objects.get_bytes(stored.key), device=device), spec)


def tile_grid(reader: SlideReader, io: ModelIO, slide_mpp: float) -> TileGrid:
    width, height = reader.dimensions
    return TileGrid(width, height, scale=io.mpp / slide_mpp, tile=io.tile, overlap=io.overlap)


def empty_objects(io: ModelIO) -> Objects:
    return Objects.empty(("centroid_x", "centroid_y", *io.measurements))


@dataclass
class Setup:
    io: ModelIO
    slide_mpp: float
    size: tuple[int, int]
    grid: TileGrid
    tissue: TissueMask
    tiles: list[tuple[int, int]]
    regions: list[list[tuple[int, int]]]
    stain_stats: tuple[tuple[float, float, float], tuple[float, float, float]] | None
    timing: dict[str, float] = field(default_factory=dict)


def check_region(region: Region | None, size: tuple[int, int]) -> None:
    """InvalidInput unless `region` (level-0 px) meets a slide of `size` (width, height)."""
    if region is None:
        return
    points = region.points()
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if max(xs) <= 0 or max(ys) <= 0 or min(xs) >= size[0] or min(ys) >= size[1]:
        raise InvalidInput(f"the region lies outside the slide ({size[0]} x {size[1]} pixels)")


def prepare(path: Path, params: InferenceParams) -> Setup:
    """Slide resolution, tile grid, tissue (inside the region), tiles touching it,
    regions, and for nuclei-he the slide's l-alpha-beta statistics from tissue."""
    from functions.inference.stains import reinhard_stats

    t0 = time.monotonic()
    with SlideReader(path) as reader:
        slide_mpp = reader.mpp() or params.slide_mpp
        if slide_mpp is None:
            raise InvalidInput("the slide records no resolution (µm per pixel); pass slide_mpp")
        io = model_io(params.model)
        check_region(params.region, reader.dimensions)
        grid = tile_grid(reader, io, slide_mpp)
        region = params.region.points() if params.region else None
        tissue = tissue_mask(reader, slide_mpp, polygon=region)
        tiles = tissue.touching(grid)
        t1 = time.monotonic()
        stats = None
        needs_stats = isinstance(params.model, BuiltinModelSpec)
        if needs_stats and tiles:
            pixels = sample_tissue_pixels(reader, grid, tissue, tiles)
            if len(pixels) >= 2:
                mu, sigma = reinhard_stats(pixels)
                stats = (mu, sigma)
        t2 = time.monotonic()
    return Setup(
        io=io,
        slide_mpp=slide_mpp,
        size=reader.dimensions,
        grid=grid,
        tissue=tissue,
        tiles=tiles,
        # nuclei-he without colour statistics means no tissue pixels: nothing to run
        regions=[]
        if needs_stats and stats is None
        else plan_regions(tiles, params.tiles_per_region),
        stain_stats=stats,  # type: ignore[arg-type]
        timing={"tissue_s": round(t1 - t0, 3), "stain_stats_s": round(t2 - t1, 3)},
    )


def summarize(
    params: InferenceParams, setup: Setup, report: Any, seconds: dict[str, float]
) -> dict[str, Any]:
    area = setup.tissue.area_mm2()
    counts = dict(sorted(report.per_class.items()))
    return {
        "model": {
            "name": setup.io.name,
            "kind": setup.io.kind,
            "mpp": setup.io.mpp,
            "tile": setup.io.tile,
            "overlap": setup.io.overlap,
            "classes": list(setup.io.classes),
        },
        "parameters": params.model_dump(mode="json"),
        "slide": {"width": setup.size[0], "height": setup.size[1], "mpp": setup.slide_mpp},
        "tissue_area_mm2": round(area, 6),
        "tiles": len(setup.tiles),
        "tiles_in_grid": setup.grid.shape[0] * setup.grid.shape[1],
        "regions": len(setup.regions),
        "objects": report.objects,
        "counts": counts,
        "density_per_mm2": {k: round(v / area, 3) if area > 0 else None for k, v in counts.items()},
        "duplicates_removed": report.duplicates,
        "stain_stats": (
            {"mu_lab": list(setup.stain_stats[0]), "sigma_lab": list(setup.stain_stats[1])}
            if setup.stain_stats
            else None
        ),
        "row_groups": report.row_groups,
        "timing_s": seconds,
    }


def finish(
    params: InferenceParams,
    ctx: Any,
    setup: Setup,
    regions: list[Path],
    tmp: Path,
    slide: Any,
    tissue_id: Any,
    started: float,
) -> InferenceResult:
    """Merge the regions, store the outputs and the summary."""
    from functions.inference.stored import store_objects, store_result

    stem = Path(slide.name).stem or "slide"
    merged = time.monotonic()
    colors = {name: setup.io.color(i) for i, name in enumerate(setup.io.classes)}
    stored = store_objects(ctx, regions, tmp, stem, colors)
    done = time.monotonic()
    seconds = {
        **setup.timing,
        "merge_s": round(done - merged, 3),
        "total_s": round(done - started, 3),
    }
    summary = summarize(params, setup, stored.report, seconds)
    return store_result(ctx, stem, stored, summary, tissue_id)
