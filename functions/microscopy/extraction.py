"""Per-cell features from label statistics over whole frames.

Every statistic is a ``bincount`` over a batch of labelled frames (component ids unique
across the batch), so the cost does not depend on the number of cells; no full-frame
mask is ever built per cell. What depends on positions only (area, moments, bounding
box, convex hull) is summed in closed form over horizontal runs
(:mod:`functions.microscopy.foreground`), the perimeter over the boundary pixels, and
intensities over the labelled pixels.
"""

from __future__ import annotations

import numpy as np

from functions.microscopy.foreground import Foreground
from functions.microscopy.rank_stats import max_median

__all__ = [
    "FLUORESCENCE_FEATURES",
    "PHASE_FEATURES",
    "Foreground",
    "convex_areas",
    "foreground_intensity_features",
    "intensity_features",
    "list_features",
    "perimeters",
    "shape_features",
]

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
    m = _run_moments(fg)
    area = m["area"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ecc = np.where(m["l1"] > 0, np.sqrt(np.clip(1 - m["l2"] / m["l1"], 0, 1)), 0.0)
        aspect = np.where(m["l2"] > 0, np.sqrt(m["l1"] / m["l2"]), np.inf)
    perim = perimeters(fg)
    with np.errstate(divide="ignore", invalid="ignore"):
        circ = np.where(perim > 0, 4 * np.pi * area / perim**2, 0.0)
    return {
        "frame": m["frame"],
        "position_x": m["cx"],
        "position_y": m["cy"],
        "bbox_x0": m["x0"],
        "bbox_y0": m["y0"],
        "bbox_x1": m["x1"],
        "bbox_y1": m["y1"],
        "area": area,
        "perimeter": perim,
        "aspect_ratio": aspect,
        "circularity": circ,
        "eccentricity": ecc,
        "solidity": area / np.maximum(convex_areas(fg), 1),
    }


def _run_moments(fg: Foreground) -> dict[str, np.ndarray]:
    """Area, centroid, inertia eigenvalues, frame and bounding box of every label, from
    closed-form sums over its runs (coordinates taken relative to the label's first
    run, so the second moments lose nothing to cancellation)."""
    n, r = fg.n, fg.runs
    lab = r.label
    if not len(lab):
        zero, none = np.zeros(n + 1), np.zeros(n + 1, dtype=np.int64)
        keys = ("area", "cy", "cx", "l1", "l2")
        return {
            **dict.fromkeys(keys, zero),
            **dict.fromkeys(("frame", "y0", "x0", "y1", "x1"), none),
        }
    order = np.argsort(lab, kind="stable")  # by label, raster order within
    starts = np.flatnonzero(np.r_[True, np.diff(lab[order]) != 0])
    present = lab[order][starts]
    first = np.zeros(n + 1, dtype=np.int64)
    first[present] = order[starts]  # each label's first run
    y = (r.row - r.row[first][lab]).astype(np.float64)
    a = (r.start - r.start[first][lab]).astype(np.float64)
    length = r.length.astype(np.float64)
    b = a + length - 1  # last column of the run
    sx = length * (a + b) / 2
    sxx = (b * (b + 1) * (2 * b + 1) - (a - 1) * a * (2 * a - 1)) / 6
    area = _bincount(lab, n, length)
    safe = np.maximum(area, 1)
    my, mx = _bincount(lab, n, length * y) / safe, _bincount(lab, n, sx) / safe
    syy = _bincount(lab, n, length * y * y) / safe - my * my
    sxx_ = _bincount(lab, n, sxx) / safe - mx * mx
    sxy = _bincount(lab, n, y * sx) / safe - my * mx
    half_tr, diff = (syy + sxx_) / 2, np.sqrt(((syy - sxx_) / 2) ** 2 + sxy**2)
    frame = np.zeros(n + 1, dtype=np.int64)
    frame[present] = r.frame[first[present]]
    box = {}
    for key, values, ufunc in (
        ("y0", r.row, np.minimum),
        ("x0", r.start, np.minimum),
        ("y1", r.row + 1, np.maximum),
        ("x1", r.stop, np.maximum),
    ):
        init = np.iinfo(np.int64).max if ufunc is np.minimum else -1
        out = np.full(n + 1, init, dtype=np.int64)
        out[present] = ufunc.reduceat(values[order].astype(np.int64), starts)
        box[key] = out
    origin_y = r.row[first].astype(np.float64)
    origin_x = r.start[first].astype(np.float64)
    return {
        "area": area,
        "cy": my + origin_y,
        "cx": mx + origin_x,
        "l1": half_tr + diff,
        "l2": np.maximum(half_tr - diff, 0),
        "frame": frame,
        **box,
    }


def _border(fg: Foreground) -> np.ndarray:
    """Boolean over foreground pixels: has a 4-neighbour with another label. A run's
    ends always do (runs are maximal); other pixels only through the rows above and
    below."""
    flat, i, lab = fg.padded.reshape(-1), fg.index, fg.label
    w = fg.padded.shape[2]
    border = (flat[i + w] != lab) | (flat[i - w] != lab)
    starts = fg._run_starts
    border[starts] = True
    border[starts[1:] - 1] = True
    border[-1:] = True
    return border  # type: ignore[no-any-return]


def _mask_border(mask: np.ndarray) -> np.ndarray:
    """Set pixels of a zero-bordered ``(T, Y + 2, X + 2)`` mask with an unset
    4-neighbour, as a bool image of its shape, from shifted views (no gathers): the
    border pixels of labels that never touch (a labelled neighbour has the pixel's own
    label)."""
    centre = mask[:, 1:-1, 1:-1]
    inner = centre & mask[:, :-2, 1:-1]
    inner &= mask[:, 2:, 1:-1]
    inner &= mask[:, 1:-1, :-2]
    inner &= mask[:, 1:-1, 2:]
    out = np.zeros_like(mask)
    np.greater(centre, inner, out=out[:, 1:-1, 1:-1])  # set and not inner
    return out


def perimeters(fg: Foreground) -> np.ndarray:
    """Perimeter of every component, as ``skimage.measure.perimeter(mask, 4)``.

    Returns
    -------
    perimeter : (n + 1,) float64 ndarray
    """
    flat = fg.padded.ravel()
    if fg.separated:  # border pixels from the mask alone, then only they are looked at
        is_border = _mask_border(fg._cache.get("mask", fg.padded != 0))
        bi = np.flatnonzero(is_border)
        bl = flat[bi]
    else:
        border = _border(fg)
        bi, bl = fg.index[border], fg.label[border]
        is_border = np.zeros(flat.shape, dtype=bool)
        is_border[bi] = True
    is_border = is_border.reshape(-1)
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
    r = fg.runs
    if not len(r):
        return np.zeros(fg.n + 1)
    h = fg.padded.shape[1]
    order = np.argsort(r.label, kind="stable")  # by label; rows ascending within
    lab, y = r.label[order], r.row[order].astype(np.int64)
    row = lab * h + y
    first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    rl, ry = lab[first], y[first]
    xl = np.minimum.reduceat(r.start[order], first).astype(np.float64)
    xr = np.maximum.reduceat(r.stop[order], first).astype(np.float64) - 1
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
    return foreground_intensity_features(fg, fg.values(values), erosion=erosion)


def foreground_intensity_features(
    fg: Foreground, at: np.ndarray, *, erosion: int = 0
) -> dict[str, np.ndarray]:
    """:func:`intensity_features` from the values at the foreground pixels only (in the
    order of ``fg.index``): a caller that corrects only those pixels never builds the
    corrected frames."""
    if at.shape != fg.index.shape:
        raise ValueError(f"{at.shape} values for {fg.index.shape} foreground pixels")
    n, lab = fg.n, fg.label
    runs, starts = fg.runs, fg._run_starts
    area = _bincount(runs.label, n, runs.length.astype(np.float64))
    if len(starts):  # per run first (contiguous in `at`), then per label: few bincounts
        total = _bincount(runs.label, n, np.add.reduceat(at, starts, dtype=np.float64))
        squares = at.astype(np.float64)
        squares *= squares
        sum_sq = _bincount(runs.label, n, np.add.reduceat(squares, starts))
    else:
        total, sum_sq = np.zeros(n + 1), np.zeros(n + 1)
    safe = np.maximum(area, 1)
    mean = total / safe
    var = np.maximum(sum_sq / safe - mean**2, 0)
    mx, med = max_median(fg, at.astype(np.float32, copy=False), area.astype(np.int64))
    if erosion > 0:
        keep = _eroded(fg, erosion)
        total = _bincount(lab[keep], n, at[keep].astype(np.float64))
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
