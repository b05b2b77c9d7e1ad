"""Tiles at a model's resolution: the grid, each tile's core (where its objects are
kept), and reads from the best pyramid level resampled to the model's µm/px.

Coordinates: "model pixels" are pixels at the model's resolution; level-0 pixel =
model pixel x `scale` (model mpp / slide mpp). Tiles start every `stride = tile -
overlap` model pixels. Cores split the plane between tiles: a tile's core leaves
`overlap / 2` to each inner neighbour and runs to infinity at the slide's edges, so
every point belongs to exactly one core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: A level is good enough when its downsample is within this of the wanted scale.
SCALE_EPS = 1e-3


@dataclass(frozen=True)
class TileGrid:
    """The tiles of a `width` x `height` (level-0) slide for a model of `tile` and
    `overlap` model pixels, `scale` level-0 pixels per model pixel."""

    width: int
    height: int
    scale: float
    tile: int
    overlap: int

    def __post_init__(self) -> None:
        if self.tile <= 0 or not 0 <= self.overlap < self.tile:
            raise ValueError(
                f"need tile > overlap >= 0, got tile {self.tile}, overlap {self.overlap}"
            )
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def model_size(self) -> tuple[int, int]:
        """The slide's size in model pixels."""
        return math.ceil(self.width / self.scale), math.ceil(self.height / self.scale)

    @property
    def shape(self) -> tuple[int, int]:
        """(columns, rows) of tiles covering the slide."""
        w, h = self.model_size
        return (
            max(1, math.ceil(max(w - self.overlap, 1) / self.stride)),
            max(1, math.ceil(max(h - self.overlap, 1) / self.stride)),
        )

    def origin(self, col: int, row: int) -> tuple[int, int]:
        """The tile's top-left corner in model pixels."""
        return col * self.stride, row * self.stride

    def core(self, col: int, row: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in model pixels: the half-open box whose objects this tile
        keeps (by centroid)."""
        cols, rows = self.shape
        half = self.overlap / 2
        x, y = self.origin(col, row)
        x0 = -math.inf if col == 0 else x + half
        y0 = -math.inf if row == 0 else y + half
        x1 = math.inf if col == cols - 1 else x + half + self.stride
        y1 = math.inf if row == rows - 1 else y + half + self.stride
        return x0, y0, x1, y1

    def inner_edges(self, col: int, row: int) -> tuple[bool, bool, bool, bool]:
        """Whether the tile's left, top, right and bottom edges face another tile."""
        cols, rows = self.shape
        return col > 0, row > 0, col < cols - 1, row < rows - 1

    def level0_box(self, col: int, row: int) -> tuple[float, float, float, float]:
        """The tile's extent (x0, y0, x1, y1) in level-0 pixels."""
        x, y = self.origin(col, row)
        s = self.scale
        return x * s, y * s, (x + self.tile) * s, (y + self.tile) * s


def best_level(downsamples: tuple[float, ...], scale: float) -> int:
    """The coarsest level whose downsample does not exceed `scale` (never level 0 for
    a coarse model when the slide has a coarser level that fits)."""
    best = 0
    for level, ds in enumerate(downsamples):
        if ds <= scale * (1 + SCALE_EPS) and ds >= downsamples[best]:
            best = level
    return best


class SlideReader:
    """Reads model-resolution tiles of one slide from its best pyramid level."""

    def __init__(self, path: str | Path) -> None:
        from functions.slides.handles import SlideHandle

        self.handle = SlideHandle(path)
        self.dimensions: tuple[int, int] = self.handle.level_dimensions[0]
        self.downsamples = self.handle.level_downsamples
        self.reads = [0] * len(self.downsamples)

    def __repr__(self) -> str:
        return f"SlideReader({self.handle.path!r})"

    @property
    def properties(self) -> dict[str, str]:
        return self.handle.properties

    def mpp(self) -> float | None:
        """Microns per level-0 pixel, as the slide records it (None when it does not)."""
        values = [self.properties.get(f"openslide.mpp-{a}") for a in ("x", "y")]
        try:
            numbers = [float(v) for v in values if v]
        except ValueError:
            return None
        return sum(numbers) / len(numbers) if numbers and min(numbers) > 0 else None

    def read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """(height, width, 3) uint8 pixels of `level` at level coordinates (x, y);
        background outside the slide."""
        self.reads[level] += 1
        if self.handle.tiff is not None:
            return self.handle.tiff.read_region(level, x, y, width, height)  # type: ignore[no-any-return]
        ds = self.downsamples[level]
        return self.handle.read_openslide((round(x * ds), round(y * ds)), level, (width, height))

    def read_tile(self, grid: TileGrid, col: int, row: int) -> np.ndarray:
        """The (tile, tile, 3) uint8 model-resolution tile (col, row) of `grid`."""
        level = best_level(self.downsamples, grid.scale)
        ds = self.downsamples[level]
        x0, y0, x1, y1 = grid.level0_box(col, row)
        lx0, ly0 = math.floor(x0 / ds), math.floor(y0 / ds)
        lx1, ly1 = math.ceil(x1 / ds), math.ceil(y1 / ds)
        pixels = self.read_level(level, lx0, ly0, lx1 - lx0, ly1 - ly0)
        if pixels.shape[:2] == (grid.tile, grid.tile):
            return pixels
        return _resample(pixels, grid.tile)

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _resample(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize (h, w, 3) uint8 to (size, size, 3): box filter when shrinking (an area
    average, as a scanner's lower magnification), bilinear when enlarging."""
    from PIL import Image

    image = Image.fromarray(pixels)
    shrinking = pixels.shape[0] > size
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(image.resize((size, size), resample))


def plan_regions(
    tiles: list[tuple[int, int]], tiles_per_region: int
) -> list[list[tuple[int, int]]]:
    """Split tiles into square blocks of about `tiles_per_region` tiles (empty blocks
    dropped), the blocks in Hilbert order so neighbouring regions follow each other."""
    from functions.inference.outputs import hilbert_index

    side = max(1, math.isqrt(tiles_per_region))
    blocks: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for col, row in tiles:
        blocks.setdefault((col // side, row // side), []).append((col, row))
    keys = list(blocks)
    if not keys:
        return []
    order = np.argsort(
        hilbert_index(np.array([k[0] for k in keys]), np.array([k[1] for k in keys])), kind="stable"
    )
    return [sorted(blocks[keys[i]], key=lambda t: (t[1], t[0])) for i in order]
