"""Slide patches: where they go (a grid or a seeded sample of it, on tissue, in a
region) and their pixels at a resolution, read from the best pyramid level.

A patch is `size` pixels at `mpp` µm per pixel, so it covers `size * mpp / slide_mpp`
level-0 pixels. Its pixels come from the coarsest level that is still at least as
fine as `mpp` (never level 0 for a coarse resolution), resampled when the level does
not match exactly — the same read as :meth:`SlideReader.read_tile`, so a patch equals a
direct read of its box. Patches of one grid row are cut from one strip read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from functions.inference.tiling import SlideReader, _resample, best_level
from functions.inference.tissue import TissueMask

#: Widest strip (level pixels) read at once; wider rows are read in pieces.
MAX_STRIP = 8192


@dataclass(frozen=True)
class PatchGeometry:
    """Where patches of one slide come from: level-0 extent, the level read and its box."""

    size: int
    scale: float  # level-0 px per patch px
    level: int
    downsample: float

    @property
    def extent(self) -> float:
        return self.size * self.scale

    def level_box(self, x0: float, y0: float) -> tuple[int, int, int, int]:
        """The level pixels (x0, y0, x1, y1) a patch at level-0 (x0, y0) is read from."""
        ds, ext = self.downsample, self.extent
        return (
            math.floor(x0 / ds),
            math.floor(y0 / ds),
            math.ceil((x0 + ext) / ds),
            math.ceil((y0 + ext) / ds),
        )


def geometry(
    downsamples: Sequence[float], slide_mpp: float, size: int, mpp: float
) -> PatchGeometry:
    """The level to read `size`-pixel patches at `mpp` from, on a slide of `slide_mpp`."""
    scale = mpp / slide_mpp
    level = best_level(tuple(downsamples), scale)
    return PatchGeometry(size=size, scale=scale, level=level, downsample=float(downsamples[level]))


def tissue_fraction(
    tissue: TissueMask, x0: np.ndarray, y0: np.ndarray, extent: float
) -> np.ndarray:
    """Fraction of each patch box (level-0 origins, side `extent`) that is tissue: the
    mask pixels whose centres lie in the box, over all mask pixels of the box."""
    table = np.pad(tissue.mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    rows, cols = tissue.mask.shape
    ds = tissue.downsample

    def edges(v: np.ndarray, limit: int) -> np.ndarray:
        return np.clip(np.ceil(v / ds - 0.5), 0, limit).astype(np.int64)

    c0, c1 = edges(x0, cols), edges(x0 + extent, cols)
    r0, r1 = edges(y0, rows), edges(y0 + extent, rows)
    inside = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
    cells = np.maximum((c1 - c0) * (r1 - r0), 1)
    # a box smaller than a mask pixel: the pixel under its centre decides
    centre = tissue.contains(x0 + extent / 2, y0 + extent / 2).astype(float)
    return np.where((c1 > c0) & (r1 > r0), inside / cells, centre)


def plan_patches(
    dimensions: tuple[int, int],
    geom: PatchGeometry,
    tissue: TissueMask,
    *,
    stride: int | None = None,
    min_tissue: float = 0.5,
    sample: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Level-0 origins (x, y) of the patches of a slide, row by row, and their tissue
    fractions: a grid of step `stride` patch pixels (default: `size`), patches wholly
    on the slide with at least `min_tissue` tissue, then `sample` of them (seeded)."""
    step = (stride or geom.size) * geom.scale
    width, height = dimensions
    xs = np.arange(0, width - geom.extent + 1e-6, step)
    ys = np.arange(0, height - geom.extent + 1e-6, step)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    x0, y0 = np.round(gx.ravel(), 3), np.round(gy.ravel(), 3)
    fraction = tissue_fraction(tissue, x0, y0, geom.extent)
    keep = fraction >= min_tissue
    x0, y0, fraction = x0[keep], y0[keep], fraction[keep]
    if sample is not None and sample < len(x0):
        chosen = np.sort(np.random.default_rng(seed).choice(len(x0), sample, replace=False))
        x0, y0, fraction = x0[chosen], y0[chosen], fraction[chosen]
    return np.stack([x0, y0], 1), fraction


def read_patch(reader: SlideReader, geom: PatchGeometry, x0: float, y0: float) -> np.ndarray:
    """One (size, size, 3) uint8 patch read directly (the reference the strips equal)."""
    lx0, ly0, lx1, ly1 = geom.level_box(x0, y0)
    pixels = reader.read_level(geom.level, lx0, ly0, lx1 - lx0, ly1 - ly0)
    return _fit(pixels, geom.size)


def _fit(pixels: np.ndarray, size: int) -> np.ndarray:
    return pixels if pixels.shape[:2] == (size, size) else _resample(pixels, size)


def iter_patches(
    reader: SlideReader, geom: PatchGeometry, origins: np.ndarray
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, patch) for each origin, in order, cutting each run of touching patches
    of a grid row from one strip of at most :data:`MAX_STRIP` level pixels."""
    boxes = [geom.level_box(float(x), float(y)) for x, y in origins]
    i = 0
    while i < len(boxes):
        j = i + 1
        lx0, ly0, _, ly1 = boxes[i]
        while (
            j < len(boxes)
            and boxes[j][1] == ly0
            and boxes[j][3] == ly1
            and boxes[j][2] - lx0 <= MAX_STRIP
            and boxes[j - 1][0] <= boxes[j][0] <= boxes[j - 1][2]  # no gap to decode
        ):
            j += 1
        right = max(b[2] for b in boxes[i:j])
        strip = reader.read_level(geom.level, lx0, ly0, right - lx0, ly1 - ly0)
        for k in range(i, j):
            bx0, _, bx1, _ = boxes[k]
            yield k, _fit(strip[:, bx0 - lx0 : bx1 - lx0], geom.size)
        i = j
