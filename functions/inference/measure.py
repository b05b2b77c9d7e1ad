"""From a label image to objects: label statistics in one pass over the foreground
(`numpy.bincount`, never a full-frame mask per object), then outlines only for the
objects the caller keeps.

Coordinates are continuous tile pixels: pixel (row r, col c) covers [c, c + 1) x
[r, r + 1), so its centre is (c + 0.5, r + 0.5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from functions.inference.objects import Objects

#: keep(centroids (n, 2), bboxes (n, 4)) -> (n,) bool: which objects to outline.
KeepFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LabelStats:
    """Per label 1..n: pixel count, centroid, bounding box, second moments, and the
    mean of each intensity image given."""

    area: np.ndarray  # (n,) pixels
    centroid: np.ndarray  # (n, 2) x, y
    bbox: np.ndarray  # (n, 4) x0, y0, x1, y1 (pixel edges)
    eccentricity: np.ndarray  # (n,)
    means: dict[str, np.ndarray]
    slices: list[tuple[slice, slice] | None]


def label_stats(labels: np.ndarray, images: dict[str, np.ndarray] | None = None) -> LabelStats:
    """Statistics of every label of a (H, W) integer image (0 is background)."""
    from scipy import ndimage

    n = int(labels.max()) if labels.size else 0
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    lab = flat[where]
    y, x = np.divmod(where, labels.shape[1])
    x, y = x.astype(np.float64) + 0.5, y.astype(np.float64) + 0.5

    def total(weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(lab, weights, minlength=n + 1)[1:]

    area = total()
    safe = np.maximum(area, 1)
    cx, cy = total(x) / safe, total(y) / safe
    cxx = total(x * x) / safe - cx * cx + 1 / 12  # + a pixel's own spread, as skimage
    cyy = total(y * y) / safe - cy * cy + 1 / 12
    cxy = total(x * y) / safe - cx * cy
    half = np.sqrt(((cxx - cyy) / 2) ** 2 + cxy**2)
    major, minor = (cxx + cyy) / 2 + half, (cxx + cyy) / 2 - half
    eccentricity = np.sqrt(np.clip(1 - minor / np.maximum(major, 1e-12), 0, 1))
    slices = ndimage.find_objects(labels, max_label=n) if n else []
    bbox = np.array(
        [
            (s[1].start, s[0].start, s[1].stop, s[0].stop) if s is not None else (0, 0, 0, 0)
            for s in slices
        ],
        dtype=np.float64,
    ).reshape(-1, 4)
    means = {
        name: total(img.ravel()[where].astype(np.float64)) / safe
        for name, img in (images or {}).items()
    }
    return LabelStats(area, np.stack([cx, cy], axis=1), bbox, eccentricity, means, slices)


def labels_to_objects(
    labels: np.ndarray,
    stats: LabelStats,
    keep: np.ndarray,
    *,
    mpp: float,
    tolerance: float,
) -> tuple[Objects, np.ndarray]:
    """Outlines and basic columns of the labels (index i is label i + 1) where `keep`;
    also returns each kept object's solidity (outline area / its convex hull's area)."""
    from functions.inference.outlines import convex_areas, polygon_areas, simplify, star_outlines

    chosen = np.flatnonzero(keep)
    rings = star_outlines(labels, chosen + 1, stats.centroid[chosen], stats.bbox[chosen])
    hull = convex_areas(rings)
    solidity = np.clip(polygon_areas(rings) / np.maximum(hull, 1e-9), 0, 1)
    objects = Objects(
        polygons=simplify(rings, tolerance),
        centroid=stats.centroid[chosen],
        confidence=np.ones(len(chosen), np.float32),
        label=np.zeros(len(chosen), np.int16),
        area_um2=stats.area[chosen] * mpp * mpp,
    )
    return objects, solidity
