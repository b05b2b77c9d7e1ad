"""Object density over a viewport: counts of object centroids on a grid of cells, from
the objects Parquet's light columns only (no outlines read or sent). What the viewer
draws as a heat map when a viewport holds too many objects to outline."""

from __future__ import annotations

import math
from pathlib import Path
from typing import IO, Any

import numpy as np

from common.errors import InvalidInput
from functions.inference.query import open_objects, select_rows

#: Columns read: the query filters need the box, confidence and class; counts the centroid.
DENSITY_COLUMNS = [
    "class",
    "confidence",
    "x_min",
    "y_min",
    "x_max",
    "y_max",
    "centroid_x",
    "centroid_y",
]
MAX_GRID = 512


def viewport_density(
    source: str | Path | IO[bytes],
    *,
    bbox: tuple[float, float, float, float] | None = None,
    min_confidence: float = 0.0,
    classes: set[str] | None = None,
    grid: int = 64,
    cache_key: str | None = None,
) -> dict[str, Any]:
    """Centroid counts of the matching objects (see `query.select_rows`) on square
    cells: `grid` cells along the longer side of `bbox` (default: the objects' extent).

    Returns
    -------
    dict
        ``bbox`` [x0, y0, x1, y1], ``cell`` (level-0 px), ``cols``, ``rows``, ``counts``
        (row-major, ``rows * cols``), ``total`` and ``max``.

    Raises
    ------
    InvalidInput
        A grid outside [1, MAX_GRID], or what `select_rows` refuses.
    """
    if not 1 <= grid <= MAX_GRID:
        raise InvalidInput(f"grid must be in [1, {MAX_GRID}], got {grid}")
    if bbox is None:
        _, index = open_objects(source, cache_key)
        finite = np.isfinite(index.bounds).all(axis=1)
        b = index.bounds[finite]
        bbox = (
            (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))
            if len(b)
            else (0.0, 0.0, 1.0, 1.0)
        )
    tables = select_rows(
        source,
        bbox=bbox,
        min_confidence=min_confidence,
        classes=classes,
        columns=DENSITY_COLUMNS,
        cache_key=cache_key,
    )
    x0, y0, x1, y1 = bbox
    cell = max(x1 - x0, y1 - y0) / grid
    cols, rows = max(1, math.ceil((x1 - x0) / cell)), max(1, math.ceil((y1 - y0) / cell))
    counts = np.zeros((rows, cols), np.int64)
    for table in tables:
        x = table["centroid_x"].to_numpy()
        y = table["centroid_y"].to_numpy()
        inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
        c = np.minimum(((x[inside] - x0) / cell).astype(np.int64), cols - 1)
        r = np.minimum(((y[inside] - y0) / cell).astype(np.int64), rows - 1)
        np.add.at(counts, (r, c), 1)
    return {
        "bbox": [x0, y0, x1, y1],
        "cell": cell,
        "cols": cols,
        "rows": rows,
        "counts": counts.ravel().tolist(),
        "total": int(counts.sum()),
        "max": int(counts.max()) if counts.size else 0,
    }
