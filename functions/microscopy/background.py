"""Fluorescence background: tile medians outside cells, a spline surface through them.

PyAMA's method: mask cells dilated by a 21x21 square, take the median of each 256-px
tile (tiles overlap by half), fit a cubic spline through the tile centres and evaluate
it at every pixel. Unlike PyAMA this works for any frame size: with fewer than four
tile centres along an axis the spline degree drops (3 centres → quadratic, 2 → linear,
1 → constant), and frames smaller than a tile use one tile covering the frame.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from common.arrays import Backend, get_backend
from functions.microscopy.segmentation import _dilate


def tile_starts(n: int, tile: int) -> np.ndarray:
    """Start offsets of tiles of side ``min(tile, n)`` overlapping by half along an axis
    of length `n`; the last tile is aligned with the end so every pixel is covered."""
    if n < 1 or tile < 1:
        raise ValueError(f"axis length and tile must be >= 1, got {n}, {tile}")
    size = min(tile, n)
    step = max(size // 2, 1)
    starts = list(range(0, n - size + 1, step))
    if starts[-1] != n - size:
        starts.append(n - size)
    return np.asarray(starts, dtype=np.int64)


def tile_centres(n: int, tile: int) -> np.ndarray:
    """Pixel coordinates of tile centres along an axis (see :func:`tile_starts`)."""
    size = min(tile, n)
    return tile_starts(n, tile) + (size - 1) / 2.0


def tile_medians(
    frames: Any,
    excluded: Any,
    *,
    tile: int = 256,
    step: int = 1,
    backend: Backend | None = None,
) -> Any:
    """Median of the non-excluded pixels of every tile of every frame.

    Parameters
    ----------
    frames : (T, Y, X) ndarray
    excluded : (T, Y, X) bool ndarray
        Pixels left out of the medians (dilated cells).
    tile : int, optional
        Tile side in pixels; tiles overlap by half.
    step : int, optional
        Use every `step`-th pixel of each tile along both axes (1: exact medians; 2
        estimates each median from a quarter of the pixels, 4x faster, and differs from
        the exact one by well under the Poisson noise of a 256² tile).

    Returns
    -------
    medians : (T, ny, nx) float64 ndarray
        NaN for tiles with no usable pixel.
    """
    be = backend or get_backend("cpu")
    xp = be.xp
    if frames.shape != excluded.shape or frames.ndim != 3:
        raise ValueError(
            f"frames and excluded must be (T, Y, X) of one shape, got {frames.shape} and "
            f"{excluded.shape}"
        )
    t, h, w = frames.shape
    ys, xs = tile_starts(h, tile), tile_starts(w, tile)
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    th, tw = min(tile, h), min(tile, w)
    n = len(range(0, th, step)) * len(range(0, tw, step))
    out = xp.full((t, len(ys), len(xs)), xp.nan, dtype=xp.float64)
    k = (n - 1) // 2
    for i, y0 in enumerate(ys.tolist()):
        for j, x0 in enumerate(xs.tolist()):
            win = (slice(None), slice(y0, y0 + th, step), slice(x0, x0 + tw, step))
            vals = frames[win].reshape(t, n).astype(xp.float32)
            out[:, i, j] = _masked_median(vals, excluded[win].reshape(t, n), k, xp)
    return out


def _masked_median(vals: Any, masked: Any, k: int, xp: Any) -> Any:
    """Row medians of `vals` over unmasked entries with one partition for all rows.

    Masked entries become -inf (the first ``a`` of them) and +inf (the rest), with ``a``
    chosen per row so the valid median always lands at ranks ``k`` (and ``k + 1``).
    """
    n = vals.shape[1]
    valid = n - masked.sum(axis=1)
    if n == 1:
        return xp.where(valid > 0, vals[:, 0].astype(xp.float64), xp.nan)
    a = k - (valid - 1) // 2
    rank = xp.cumsum(masked, axis=1, dtype=xp.int32)
    vals[masked] = xp.inf
    vals[masked & (rank <= a[:, None])] = -xp.inf
    # on a GPU a full sort is cheap and needs no multi-kth partition
    part = np.partition(vals, (k, k + 1), axis=1) if xp is np else xp.sort(vals, axis=1)
    lo = xp.where(valid > 0, part[:, k].astype(xp.float64), 0.0)
    hi = xp.where((valid > 0) & (valid % 2 == 0), part[:, k + 1].astype(xp.float64), lo)
    return xp.where(valid > 0, (lo + hi) / 2, xp.nan)


@lru_cache(maxsize=32)
def interpolation_matrix(n: int, tile: int, degree: int = 3) -> np.ndarray:
    """Linear map from tile-centre values to a spline evaluated at every pixel of an axis.

    The interpolating spline (not-a-knot, the knots scipy's ``RectBivariateSpline`` uses
    with ``s=0``) is linear in its data, so evaluating it on the unit vectors gives a
    ``(n, n_centres)`` matrix; a 2-D surface is then ``Ay @ M @ Ax.T``. The spline is
    extrapolated beyond the outer centres (fitpack clamps there instead).

    Returns
    -------
    matrix : (n, n_centres) float64 ndarray
    """
    from scipy.interpolate import make_interp_spline

    centres = tile_centres(n, tile)
    m = len(centres)
    k = min(degree, m - 1)
    if k == 0:
        return np.ones((n, 1))
    spline = make_interp_spline(centres, np.eye(m), k=k)
    return np.asarray(spline(np.arange(n, dtype=np.float64), extrapolate=True))


def _fill_missing(medians: Any, frames: Any, xp: Any) -> Any:
    """Tiles fully covered by cells take the median of the frame's other tiles (or of the
    whole frame when every tile is covered)."""
    bad = xp.isnan(medians)
    if not bool(bad.any()):
        return medians
    for f in range(medians.shape[0]):
        if not bool(bad[f].any()):
            continue
        ok = medians[f][~bad[f]]
        fill = xp.median(ok) if ok.size else xp.median(frames[f].astype(xp.float64))
        medians[f][bad[f]] = fill
    return medians


def estimate_background(
    frames: Any,
    cells: Any,
    *,
    tile: int = 256,
    dilation: int = 21,
    degree: int = 3,
    sample_step: int = 2,
    backend: Backend | None = None,
) -> Any:
    """Background surface of fluorescence frames.

    Parameters
    ----------
    frames : (T, Y, X) ndarray
        Fluorescence frames (any real dtype).
    cells : (T, Y, X) bool ndarray
        Cell mask (e.g. from :func:`segment_logstd`); dilated by ``dilation`` and excluded.
    tile : int, optional
        Tile side; tiles overlap by half.
    dilation : int, optional
        Side of the square the cell mask is dilated with (0 or 1: no dilation).
    degree : int, optional
        Spline degree when there are enough tile centres.
    sample_step : int, optional
        Pixel step inside tiles for the medians (see :func:`tile_medians`; 1 is exact).

    Returns
    -------
    background : (T, Y, X) float32 ndarray

    Examples
    --------
    >>> import numpy as np
    >>> f = np.full((1, 40, 30), 7.0)
    >>> float(estimate_background(f, np.zeros(f.shape, bool))[0, 5, 5])
    7.0
    """
    be = backend or get_backend("cpu")
    xp = be.xp
    if frames.ndim != 3 or frames.shape != cells.shape:
        raise ValueError(
            f"frames and cells must be (T, Y, X) of one shape, got {frames.shape} and {cells.shape}"
        )
    excluded = _dilate(cells, dilation, xp) if dilation > 1 else cells
    med = tile_medians(frames, excluded, tile=tile, step=sample_step, backend=be)
    med = _fill_missing(med, frames, xp)
    _, h, w = frames.shape
    ay = be.asarray(interpolation_matrix(h, tile, degree))
    ax_t = be.asarray(
        np.ascontiguousarray(interpolation_matrix(w, tile, degree).T, dtype=np.float32)
    )
    surface = xp.empty(frames.shape, dtype=xp.float32)
    for f in range(frames.shape[0]):  # (Y, ny) @ (ny, nx) in float64, then one float32 GEMM
        xp.matmul((ay @ med[f]).astype(xp.float32), ax_t, out=surface[f])
    return surface


def subtract_background(
    frames: Any, background: Any, *, weight: float = 1.0, backend: Backend | None = None
) -> Any:
    """``frames - weight · background`` in float32.

    Parameters
    ----------
    frames, background : (T, Y, X) ndarray
    weight : float in [0, 1]

    Returns
    -------
    corrected : (T, Y, X) float32 ndarray
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    if frames.shape != background.shape:
        raise ValueError(f"frames {frames.shape} and background {background.shape} differ")
    be = backend or get_backend("cpu")
    out = frames.astype(be.xp.float32, copy=True)
    if weight:
        out -= be.xp.float32(weight) * background
    return out
