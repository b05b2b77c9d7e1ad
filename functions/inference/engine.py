"""The engine: a model over a list of tiles, in batches, streaming (a worker holds one
batch of tiles at a time, whatever the slide's size), with the seam rule applied per
tile: an object is kept by the tile whose core holds its centroid, and only if it
does not touch one of that tile's inner edges (there it is cut; the neighbour, which
overlaps by at least twice the largest object, holds it whole)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from common.errors import JobCancelled
from functions.inference.measure import KeepFn
from functions.inference.models import TileModel
from functions.inference.objects import Objects, concat
from functions.inference.tiling import SlideReader, TileGrid
from functions.inference.tissue import TissueMask

#: Objects this close (model pixels) to an inner tile edge count as touching it.
EDGE = 1.0


def seam_keep(grid: TileGrid, col: int, row: int, *, edges: bool = True) -> KeepFn:
    """keep(centroids, bboxes) for tile (col, row), in tile pixel coordinates
    (`edges` False: objects may touch inner edges, as per-tile classifications do)."""
    ox, oy = grid.origin(col, row)
    x0, y0, x1, y1 = grid.core(col, row)
    left, top, right, bottom = grid.inner_edges(col, row) if edges else (False,) * 4
    size = grid.tile

    def keep(centroids: np.ndarray, bboxes: np.ndarray) -> np.ndarray:
        cx, cy = centroids[:, 0] + ox, centroids[:, 1] + oy
        inside = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
        if left:
            inside &= bboxes[:, 0] > EDGE - 1e-9
        if top:
            inside &= bboxes[:, 1] > EDGE - 1e-9
        if right:
            inside &= bboxes[:, 2] < size - EDGE + 1e-9
        if bottom:
            inside &= bboxes[:, 3] < size - EDGE + 1e-9
        return inside

    return keep


def _to_core(objects: Objects, grid: TileGrid, col: int, row: int, mpp: float) -> Objects:
    """Per-tile objects (classifications) cut to the tile's core within the slide, so
    the squares of neighbouring tiles meet without overlapping."""
    ox, oy = grid.origin(col, row)
    w, h = grid.model_size
    x0, y0, x1, y1 = grid.core(col, row)
    x0, y0 = max(x0, 0.0) - ox, max(y0, 0.0) - oy
    x1, y1 = min(x1, w, ox + grid.tile) - ox, min(y1, h, oy + grid.tile) - oy
    ring = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    n = len(objects)
    objects.polygons = [ring.copy() for _ in range(n)]
    objects.centroid = np.tile([(x0 + x1) / 2, (y0 + y1) / 2], (n, 1))
    objects.area_um2 = np.full(n, (x1 - x0) * (y1 - y0) * mpp * mpp)
    if "area_um2" in objects.measurements:
        objects.measurements["area_um2"] = objects.area_um2
    return objects


def run_tiles(
    model: TileModel,
    reader: SlideReader,
    grid: TileGrid,
    tiles: Sequence[tuple[int, int]],
    *,
    tissue: TissueMask | None = None,
    confidence_threshold: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Objects:
    """Objects of `model` over `tiles` of `grid`, in level-0 pixels.

    Objects whose centroid is outside `tissue` or whose confidence is below
    `confidence_threshold` are dropped. `progress(done, total)` is called after each
    batch; `cancelled()` is checked before each.
    """
    parts: list[Objects] = []
    names = ("centroid_x", "centroid_y", *model.io.measurements)
    batch = model.io.batch
    for start in range(0, len(tiles), batch):
        if cancelled is not None and cancelled():
            raise JobCancelled()
        chunk = tiles[start : start + batch]
        pixels = [reader.read_tile(grid, col, row) for col, row in chunk]
        edges = model.io.kind != "classification"
        keeps = [seam_keep(grid, col, row, edges=edges) for col, row in chunk]
        found = model.predict(pixels, keeps)
        for (col, row), objects in zip(chunk, found, strict=True):
            if not edges:
                objects = _to_core(objects, grid, col, row, model.io.mpp)
            placed = objects.transformed(grid.origin(col, row), grid.scale, (col, row))
            keep = placed.confidence >= confidence_threshold
            if tissue is not None:
                keep &= tissue.contains(placed.centroid[:, 0], placed.centroid[:, 1])
            placed = placed.select(keep)
            placed.measurements = {
                "centroid_x": placed.centroid[:, 0],
                "centroid_y": placed.centroid[:, 1],
                **placed.measurements,
            }
            parts.append(placed)
        if progress is not None:
            progress(min(start + batch, len(tiles)), len(tiles))
    return concat(parts, names)
