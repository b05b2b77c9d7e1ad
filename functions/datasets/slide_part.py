"""One slide's patches as WebDataset samples (the kernel of a `datasets.build` part)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.errors import InvalidInput, JobCancelled
from functions.datasets.labels import Objects, Polygons
from functions.datasets.params import OutputSpec, PatchSpec
from functions.datasets.patches import geometry, iter_patches, plan_patches
from functions.datasets.shards import TarSink, encode, image_ext, json_member


def slide_samples(
    path: str | Path,
    spec: PatchSpec,
    output: OutputSpec,
    sink: TarSink,
    *,
    prefix: str,
    base: dict[str, Any],
    labels: Objects | Polygons | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """Write the patches of the slide at `path` to `sink`; returns how many.

    Parameters
    ----------
    path : path
        The slide.
    spec, output : PatchSpec, OutputSpec
        Size, resolution, grid or sample, tissue, region; image format.
    sink : TarSink
        Receives `<prefix>-<n>.{png|jpg,json}` per patch.
    prefix : str
        Key prefix (no dots): the source's place in the build.
    base : dict
        Metadata every sample's `.json` starts with (source file, split).
    labels : Objects or Polygons, optional
        What labels each patch.
    progress : callable(done, total), optional
    cancelled : callable() -> bool, optional
        Checked between patches; true raises JobCancelled.

    Raises
    ------
    InvalidInput
        The slide records no resolution, or `spec.mpp` is finer than the slide.
    """
    from functions.inference.tiling import SlideReader
    from functions.inference.tissue import tissue_mask

    with SlideReader(path) as reader:
        slide_mpp = reader.mpp()
        if slide_mpp is None:
            raise InvalidInput(f"{base.get('source_name', path)} records no µm per pixel")
        if spec.mpp < slide_mpp * 0.999:
            raise InvalidInput(
                f"resolution {spec.mpp} µm/px is finer than the slide's {slide_mpp:.4g}"
            )
        geom = geometry(reader.downsamples, slide_mpp, spec.size, spec.mpp)
        tissue = tissue_mask(reader, slide_mpp, polygon=spec.region)
        origins, fractions = plan_patches(
            reader.dimensions,
            geom,
            tissue,
            stride=spec.stride,
            min_tissue=spec.min_tissue,
            sample=spec.sample,
            seed=spec.seed,
        )
        ext = image_ext(output.format)
        total = len(origins)
        for i, pixels in iter_patches(reader, geom, origins):
            if cancelled is not None and i % 16 == 0 and cancelled():
                raise JobCancelled()
            x0, y0 = (float(v) for v in origins[i])
            meta = {
                **base,
                "key": f"{prefix}-{i:07d}",
                "x": x0,
                "y": y0,
                "extent": geom.extent,
                "size": spec.size,
                "mpp": spec.mpp,
                "level": geom.level,
                "tissue": round(float(fractions[i]), 4),
            }
            if labels is not None:
                meta.update(labels.in_box(x0, y0, geom.extent, geom.scale))
            sink.write(
                meta["key"],
                {ext: encode(pixels, output.format, output.quality), "json": json_member(meta)},
            )
            if progress is not None:
                progress(i + 1, total)
        return total
