"""Per-cell features from label statistics over whole frames.

Every statistic is a ``bincount`` over the foreground pixels of a batch of labelled
frames (component ids unique across the batch), so the cost does not depend on the
number of cells; no full-frame mask is ever built per cell. Only solidity loops over
cells, on each cell's boundary pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: name -> (description, unit); ``GET /processing/features`` lists these.
PHASE_FEATURES: dict[str, tuple[str, str]] = {
    "area": ("pixels in the cell mask", "px"),
    "perimeter": ("boundary length (scikit-image's 4-connected estimator)", "px"),
    "aspect_ratio": ("major / minor axis length of the mask's inertia ellipse", "1"),
    "circularity": ("4π·area / perimeter²", "1"),
    "eccentricity": ("eccentricity of the mask's inertia ellipse", "1"),
    "solidity": ("area / pixels in the convex hull of the mask", "1"),
}
FLUORESCENCE_FEATURES: dict[str, tuple[str, str]] = {
    "intensity_total": ("Σ (I - w·B) over the (optionally eroded) mask", "counts"),
    "intensity_mean": ("mean of I - w·B over the mask", "counts/px"),
    "intensity_max": ("maximum of I - w·B over the mask", "counts/px"),
    "intensity_std": ("standard deviation of I - w·B over the mask", "counts/px"),
    "intensity_median": ("median of I - w·B over the mask", "counts/px"),
}


def list_features() -> list[dict[str, str]]:
    """Every feature the workflow can extract, with its channel kind, description, unit.

    Examples
    --------
    >>> [f["name"] for f in list_features()][:2]
    ['area', 'perimeter']
    """
    out = [
        {"name": k, "kind": "phase", "description": d, "unit": u}
        for k, (d, u) in PHASE_FEATURES.items()
    ]
    out += [
        {"name": k, "kind": "fluorescence", "description": d, "unit": u}
        for k, (d, u) in FLUORESCENCE_FEATURES.items()
    ]
    return out


_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2


@dataclass
class Foreground:
    """Foreground pixels of a padded ``(T, Y + 2, X + 2)`` label batch, in flat order."""

    padded: np.ndarray  # (T, Y+2, X+2) labels, zero border around every frame
    index: np.ndarray  # flat indices into `padded` of labelled pixels
    label: np.ndarray  # their labels
    n: int  # largest label

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> Foreground:
        if labels.ndim != 3:
            raise ValueError(f"labels must be (T, Y, X), got shape {labels.shape}")
        padded = np.pad(labels, ((0, 0), (1, 1), (1, 1)))
        flat = padded.ravel()
        index = np.flatnonzero(flat)
        label = flat[index].astype(np.int64)
        return cls(padded, index, label, int(label.max()) if label.size else 0)

    def coords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame, row and column (unpadded) of every foreground pixel."""
        _, h, w = self.padded.shape
        t, r = np.divmod(self.index, h * w)
        y, x = np.divmod(r, w)
        return t, y - 1, x - 1


def _bincount(lab: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(lab, weights=weights, minlength=n + 1)


def shape_features(fg: Foreground) -> dict[str, np.ndarray]:
    """Position and phase features of every component of a batch.

    Parameters
    ----------
    fg : Foreground
        From ``Foreground.from_labels(labels)`` with labels ``(T, Y, X)``.

    Returns
    -------
    features : dict of (n + 1,) ndarray
        ``frame, position_y, position_x, bbox_y0, bbox_x0, bbox_y1, bbox_x1`` (exclusive
        upper bounds) and :data:`PHASE_FEATURES`; index 0 (background) is meaningless.
    """
    n, lab = fg.n, fg.label
    t, y, x = fg.coords()
    area = _bincount(lab, n).astype(np.float64)
    safe = np.maximum(area, 1)
    cy = _bincount(lab, n, y.astype(np.float64)) / safe
    cx = _bincount(lab, n, x.astype(np.float64)) / safe
    dy, dx = y - cy[lab], x - cx[lab]
    syy = _bincount(lab, n, dy * dy) / safe
    sxx = _bincount(lab, n, dx * dx) / safe
    sxy = _bincount(lab, n, dy * dx) / safe
    half_tr, diff = (syy + sxx) / 2, np.sqrt(((syy - sxx) / 2) ** 2 + sxy**2)
    l1, l2 = half_tr + diff, np.maximum(half_tr - diff, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ecc = np.where(l1 > 0, np.sqrt(np.clip(1 - l2 / l1, 0, 1)), 0.0)
        aspect = np.where(l2 > 0, np.sqrt(l1 / l2), np.inf)
    perim = perimeters(fg)
    with np.errstate(divide="ignore", invalid="ignore"):
        circ = np.where(perim > 0, 4 * np.pi * area / perim**2, 0.0)
    frame = np.zeros(n + 1, dtype=np.int64)
    frame[lab] = t
    y0, x0 = _extreme(lab, y, n, np.minimum), _extreme(lab, x, n, np.minimum)
    y1, x1 = _extreme(lab, y, n, np.maximum) + 1, _extreme(lab, x, n, np.maximum) + 1
    return {
        "frame": frame,
        "position_x": cx,
        "position_y": cy,
        "bbox_x0": x0,
        "bbox_y0": y0,
        "bbox_x1": x1,
        "bbox_y1": y1,
        "area": area,
        "perimeter": perim,
        "aspect_ratio": aspect,
        "circularity": circ,
        "eccentricity": ecc,
        "solidity": area / np.maximum(convex_areas(fg), 1),
    }


def _extreme(lab: np.ndarray, v: np.ndarray, n: int, ufunc: Any) -> np.ndarray:
    init = np.iinfo(np.int64).max if ufunc is np.minimum else -1
    out = np.full(n + 1, init, dtype=np.int64)
    ufunc.at(out, lab, v)
    return out


def _border(fg: Foreground) -> np.ndarray:
    """Boolean over foreground pixels: has a 4-neighbour with another label."""
    flat, i, lab = fg.padded.ravel(), fg.index, fg.label
    w = fg.padded.shape[2]
    inner = np.ones(len(i), dtype=bool)
    for d in (1, -1, w, -w):
        inner &= flat[i + d] == lab
    return ~inner


def perimeters(fg: Foreground) -> np.ndarray:
    """Perimeter of every component, as ``skimage.measure.perimeter(mask, 4)``.

    Returns
    -------
    perimeter : (n + 1,) float64 ndarray
    """
    flat = fg.padded.ravel()
    border = _border(fg)
    bi, bl = fg.index[border], fg.label[border]
    is_border = np.zeros(flat.shape, dtype=bool)
    is_border[bi] = True
    w = fg.padded.shape[2]
    code = np.ones(len(bi), dtype=np.int64)
    for d, weight in (
        (1, 2),
        (-1, 2),
        (w, 2),
        (-w, 2),
        (w + 1, 10),
        (w - 1, 10),
        (-w + 1, 10),
        (-w - 1, 10),
    ):
        j = bi + d
        code += weight * (is_border[j] & (flat[j] == bl))
    return _bincount(bl, fg.n, _PERIMETER_WEIGHTS[code])


def convex_areas(fg: Foreground) -> np.ndarray:
    """Pixels in each component's convex hull, as scikit-image's ``area_convex``.

    scikit-image takes the hull of the midpoints of the boundary pixels' edges and counts
    the pixel centres inside or on it. Only each row's outermost pixels matter; the hull's
    left boundary is then the greatest convex minorant of the left points (x as a
    function of y) and its right boundary the least concave majorant of the right ones,
    both found for every component at once by pruning points that lie on or beyond the
    segment joining their neighbours, until none does.

    Returns
    -------
    convex_area : (n + 1,) float64 ndarray
    """
    if not len(fg.label):
        return np.zeros(fg.n + 1)
    _, y, x = fg.coords()
    _, h, w = fg.padded.shape
    order = np.argsort((fg.label * h + y) * w + x)
    lab, y, x = fg.label[order], y[order], x[order]
    row = lab * h + y
    first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    last = np.r_[first[1:] - 1, len(row) - 1]
    rl, ry = lab[first], y[first]
    xl, xr = x[first].astype(np.float64), x[last].astype(np.float64)
    left = _minorant_at_rows(rl, ry, xl, -1.0, h)
    right = -_minorant_at_rows(rl, ry, -xr, -1.0, h)
    tol = 1e-9
    count = np.floor(right + tol) - np.ceil(left - tol) + 1
    return _bincount(rl, fg.n, np.maximum(count, 0))


def _minorant_at_rows(
    lab: np.ndarray, ry: np.ndarray, xe: np.ndarray, outward: float, h: int
) -> np.ndarray:
    """Greatest convex minorant (x of y) of each component's edge-midpoint points
    ``(y ± ½, xe)`` and ``(y, xe + outward·½)``, evaluated at every row ``ry``.

    ``lab, ry`` are sorted by label then row; returns an array aligned with them.
    """
    # points in half-pixel row units: 2y - 1, 2y, 2y + 1
    py = np.concatenate([2 * ry - 1, 2 * ry, 2 * ry + 1])
    px = np.concatenate([xe, xe + outward * 0.5, xe])
    pl = np.concatenate([lab, lab, lab])
    key = pl * (2 * h + 4) + (py + 1)
    order = np.argsort(key, kind="stable")
    key, py, px, pl = key[order], py[order], px[order], pl[order]
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    px = np.minimum.reduceat(px, start)  # rows meeting at y ± ½: keep the outermost
    key, py, pl = key[start], py[start].astype(np.float64), pl[start]
    while True:
        inner = np.zeros(len(key), dtype=bool)
        inner[1:-1] = (pl[1:-1] == pl[:-2]) & (pl[1:-1] == pl[2:])
        i = np.flatnonzero(inner)
        if not len(i):
            break
        # on or above the chord of its neighbours: not a vertex of the minorant
        chord = px[i - 1] + (px[i + 1] - px[i - 1]) * (py[i] - py[i - 1]) / (py[i + 1] - py[i - 1])
        drop = i[px[i] >= chord - 1e-12]
        if not len(drop):
            break
        keep = np.ones(len(key), dtype=bool)
        keep[drop] = False
        key, py, px, pl = key[keep], py[keep], px[keep], pl[keep]
    qkey = lab * (2 * h + 4) + (2 * ry + 1)
    j = np.clip(np.searchsorted(key, qkey, side="right") - 1, 0, len(key) - 2)
    same = key[j] == qkey
    k = np.minimum(j + 1, len(key) - 1)
    frac = (2 * ry - py[j]) / np.where(py[k] != py[j], py[k] - py[j], 1.0)
    return np.where(same, px[j], px[j] + (px[k] - px[j]) * frac)


def intensity_features(
    fg: Foreground, values: np.ndarray, *, erosion: int = 0
) -> dict[str, np.ndarray]:
    """Fluorescence statistics of every component over background-corrected values.

    Parameters
    ----------
    fg : Foreground
        Foreground of the labels, ``(T, Y, X)``.
    values : (T, Y, X) float ndarray
        ``I - w·B`` for one channel.
    erosion : int, optional
        Erode each mask by this many pixels (square) before summing ``intensity_total``.

    Returns
    -------
    features : dict of (n + 1,) float64 ndarray
        :data:`FLUORESCENCE_FEATURES`.
    """
    t, h, w = fg.padded.shape
    if values.shape != (t, h - 2, w - 2):
        raise ValueError(f"values {values.shape} do not match labels {(t, h - 2, w - 2)}")
    n, lab = fg.n, fg.label
    tt, y, x = fg.coords()
    v = values[tt, y, x].astype(np.float64)
    area = np.maximum(_bincount(lab, n), 1)
    total = _bincount(lab, n, v)
    mean = total / area
    var = np.maximum(_bincount(lab, n, v * v) / area - mean**2, 0)
    mx, med = _max_median(lab, values[tt, y, x].astype(np.float32), n)
    if erosion > 0:
        keep = _eroded(fg, erosion)
        total = _bincount(lab[keep], n, v[keep])
    return {
        "intensity_total": total,
        "intensity_mean": mean,
        "intensity_max": mx,
        "intensity_std": np.sqrt(var),
        "intensity_median": med,
    }


def _eroded(fg: Foreground, erosion: int) -> np.ndarray:
    """Foreground pixels whose whole (2e+1)² neighbourhood has their label."""
    from scipy import ndimage

    size = (1, 2 * erosion + 1, 2 * erosion + 1)
    lo = ndimage.minimum_filter(fg.padded, size=size, mode="constant").ravel()[fg.index]
    hi = ndimage.maximum_filter(fg.padded, size=size, mode="constant").ravel()[fg.index]
    return (lo == fg.label) & (hi == fg.label)


def _max_median(lab: np.ndarray, v: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-label max and median from one sort of (label, value) packed into uint64."""
    bits = v.view(np.uint32)
    # order-preserving map of float32 bits to uint32: flip negatives, set sign of positives
    key = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000)).astype(np.uint64)
    key |= lab.astype(np.uint64) << np.uint64(32)
    key.sort()
    low = (key & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    vals = np.where(low >> 31, low & np.uint32(0x7FFFFFFF), ~low).view(np.float32)
    counts = _bincount(lab, n)
    ends = np.cumsum(counts)
    starts = ends - counts
    present = counts > 0
    mx = np.full(n + 1, np.nan)
    med = np.full(n + 1, np.nan)
    mx[present] = vals[ends[present] - 1]
    c = counts[present]
    lo = vals[starts[present] + (c - 1) // 2].astype(np.float64)
    hi = vals[starts[present] + c // 2].astype(np.float64)
    med[present] = (lo + hi) / 2
    return mx, med
