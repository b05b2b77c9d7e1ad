"""Fluorescence background as a smooth surface fitted to masked block means.

The frame is cut into small blocks (1/32 to 1/16 of its shorter side, the workflow's
``tile_size``); each block gives the mean and the centroid of its background pixels
(outside the dilated cells, on every pixel up to 512² and every other row and column
above). A tensor-product cubic B-spline with one knot interval per 64 px (1 to 6 per
axis) is fitted to those means at those centroids by weighted least squares (weight:
background pixels in the block), with a small roughness penalty so it stays
well-posed where cells leave no background at all, a few consecutive frames fitted
together (coefficients linear in time), and refitted without the blocks that
something the segmentation missed has spoiled
(:mod:`functions.microscopy.background_solver`).

Why not PyAMA's tile medians: the median of a right-skewed background (Poisson noise,
autofluorescence) lies below its mean, which is what sits under a cell, and a spline
*through* a handful of overlapping-tile medians placed at the tile centres sits below a
concave vignetting peak and is pulled sideways in tiles that cells half cover. Means at
centroids are unbiased for any noise, and many blocks with a few knots follow any
smooth illumination at any frame size.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from common.arrays import Backend, get_backend
from functions.microscopy.background_solver import fit_coefficients
from functions.microscopy.segmentation import _dilate


def auto_block(height: int, width: int) -> int:
    """Block side (px) for a frame: 1/32 of its shorter side, but on frames under
    1024 px up to 1/16 of it (at most 32 px), 4 to 64 px.

    Smaller frames get relatively larger blocks: a 512² frame still has 16 x 16 blocks
    per frame against at most 9 x 9 spline coefficients, and the per-block work of the
    fit (a quarter of the blocks) no longer dominates the background's cost.
    """
    side = min(height, width)
    return int(np.clip(max(round(side / 32), min(32, round(side / 16))), 4, 64))


def auto_intervals(length: int) -> int:
    """Knot intervals along an axis of `length` px: one per 64 px, 1 to 6.

    Six intervals follow a vignetting bump across any field of view; fewer on a small
    frame keep the surface under a cell (a hole in the data that is a large share of
    such a frame) set by many background pixels rather than by noise.
    """
    return int(np.clip(round(length / 64), 1, 6))


def auto_step(height: int, width: int) -> int:
    """Sampling step of the background statistics: every pixel up to 512 x 512, else
    every other row and column (a quarter of the pixels still outnumber the surface's
    coefficients by thousands)."""
    return 1 if height * width <= 512 * 512 else 2


def bspline_basis(x: np.ndarray, length: float, intervals: int) -> np.ndarray:
    """Uniform cubic B-spline basis on ``[0, length]`` with `intervals` equal intervals.

    Parameters
    ----------
    x : (...) ndarray
        Positions (px); values outside ``[0, length]`` extrapolate the end pieces.
    length : float
    intervals : int

    Returns
    -------
    basis : (..., intervals + 3) float64 ndarray
        Rows sum to 1.
    """
    u = np.asarray(x, dtype=np.float64) * (intervals / length)
    i = np.clip(np.floor(u), 0, intervals - 1)
    t = u - i
    t2, t3 = t * t, t * t * t
    pieces = (
        (1 - 3 * t + 3 * t2 - t3) / 6,
        (4 - 6 * t2 + 3 * t3) / 6,
        (1 + 3 * t + 3 * t2 - 3 * t3) / 6,
        t3 / 6,
    )
    return _place(u, i, pieces, intervals)


def bspline_curvature(x: np.ndarray, length: float, intervals: int) -> np.ndarray:
    """Second derivative (per px²) of :func:`bspline_basis` at `x`."""
    u = np.asarray(x, dtype=np.float64) * (intervals / length)
    i = np.clip(np.floor(u), 0, intervals - 1)
    t = u - i
    scale = (intervals / length) ** 2
    pieces = ((1 - t) * scale, (3 * t - 2) * scale, (1 - 3 * t) * scale, t * scale)
    return _place(u, i, pieces, intervals)


def _place(
    u: np.ndarray, i: np.ndarray, pieces: tuple[np.ndarray, ...], intervals: int
) -> np.ndarray:
    """The four pieces of each position at columns ``i .. i + 3`` of the basis."""
    out = np.zeros((*u.shape, intervals + 3))
    idx = i.astype(np.int64)
    for k, piece in enumerate(pieces):
        np.put_along_axis(out, (idx + k)[..., None], piece[..., None], axis=-1)
    return out


@lru_cache(maxsize=16)
def _pixel_basis(n: int, intervals: int) -> np.ndarray:
    """Basis at every pixel centre of an axis of length `n`, float32, read-only."""
    out = bspline_basis(np.arange(n) + 0.5, float(n), intervals).astype(np.float32)
    out.setflags(write=False)
    return out


class BlockStats(NamedTuple):
    """Per frame and block: background pixels, their sum and centroid (host arrays)."""

    pixels: np.ndarray  # (T, ny, nx) float64
    total: np.ndarray  # (T, ny, nx) float64
    y: np.ndarray  # (T, ny, nx) centroid row, px of the full frame
    x: np.ndarray  # (T, ny, nx) centroid column


class SurfaceFit(NamedTuple):
    """A fitted background and what it was fitted to."""

    surface: Any  # (T, Y, X) float32, on the backend
    level: np.ndarray  # (T,) mean of each frame's surface
    stats: BlockStats  # of the sampled grid; centroids in px of the frame
    at_centroids: np.ndarray  # (T, ny, nx) the surface's mean over each block (2nd order)
    block: int  # block side on the sampled grid


def fold(a: Any, axis: int, size: int, dtype: Any) -> Any:
    """Sum runs of `size` along `axis`; a shorter remainder joins the last run."""
    n = a.shape[axis]
    if n <= size:
        return a.sum(axis=axis, dtype=dtype, keepdims=True)
    nb = n // size
    pre = (slice(None),) * axis
    head = a[(*pre, slice(0, nb * size))]
    out = head.reshape((*a.shape[:axis], nb, size, *a.shape[axis + 1 :])).sum(
        axis=axis + 1, dtype=dtype
    )
    if nb * size < n:
        out[(*pre, -1)] += a[(*pre, slice(nb * size, n))].sum(axis=axis, dtype=dtype)
    return out


def _offsets(n: int, size: int) -> np.ndarray:
    """Position of each index inside its run (see :func:`fold`), uint8."""
    i = np.arange(n)
    start = np.minimum(i // size, max(n // size, 1) - 1) * size
    return (i - start).astype(np.uint8)


def _starts(n: int, size: int) -> np.ndarray:
    nb = max(n // size, 1) if n > size else 1
    return np.arange(nb) * size


def block_stats(
    frames: Any, keep: Any, block: int, *, backend: Backend | None = None
) -> BlockStats:
    """Count, sum and centroid of the kept pixels of every block of every frame.

    Parameters
    ----------
    frames, keep : (T, Y, X) ndarray
        Values and the pixels that are background (bool).
    block : int
        Block side; remainders join the last block of each axis (at most 127).

    Returns
    -------
    stats : BlockStats
        Host arrays, centroids in the pixel coordinates of `frames`.
    """
    be = backend or get_backend("cpu")
    xp = be.xp
    if not 1 <= block <= 127:
        raise ValueError(f"block must be in 1..127 on the sampled grid, got {block}")
    _, h, w = frames.shape
    integer = np.issubdtype(np.dtype(frames.dtype), np.integer)
    values = frames * keep if integer else xp.where(keep, frames, 0)
    acc = xp.uint32 if integer and np.dtype(frames.dtype).itemsize <= 2 else xp.float64
    total = fold(fold(values, 1, block, acc), 2, block, xp.float64)
    small = xp.uint8 if 2 * block <= 255 else xp.uint16
    cols = fold(keep, 1, block, small)  # kept pixels per column of each block row
    count = fold(cols, 2, block, xp.float64)
    weighted = xp.multiply(cols, be.asarray(_offsets(w, block))[None, None, :], dtype=xp.uint32)
    sx = fold(weighted, 2, block, xp.float64)
    rows = keep * be.asarray(_offsets(h, block))[None, :, None]
    sy = fold(fold(rows, 1, block, xp.uint32), 2, block, xp.float64)
    count, total, sy, sx = (be.to_numpy(a) for a in (count, total, sy, sx))
    safe = np.maximum(count, 1)
    y0, x0 = _starts(h, block), _starts(w, block)
    return BlockStats(
        count, total, y0[None, :, None] + sy / safe + 0.5, x0[None, None, :] + sx / safe + 0.5
    )


def background_pixels(
    cells: Any, *, dilation: int = 21, step: int = 2, backend: Backend | None = None
) -> Any:
    """Background pixels of every `step`-th row and column: farther than ``dilation // 2``
    px (Chebyshev) from every cell pixel, as PyAMA's dilation by a ``dilation``-px square.

    The cell mask is max-pooled over ``step x step`` cells first, then dilated on the
    sampled grid by ``ceil(r / step)``: never keeps a pixel the full-resolution
    dilation covers, at a quarter of its cost for ``step = 2``.

    Returns
    -------
    keep : (T, ceil(Y / step), ceil(X / step)) bool ndarray
    """
    be = backend or get_backend("cpu")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    if cells.ndim != 3:
        raise ValueError(f"cells must be (T, Y, X), got shape {cells.shape}")
    pooled = cells[:, ::step, ::step]
    if step > 1:
        pooled = pooled.copy()
        for dy in range(step):
            for dx in range(step):
                if dy or dx:
                    part = cells[:, dy::step, dx::step]
                    pooled[:, : part.shape[1], : part.shape[2]] |= part
    radius = -(-(dilation // 2) // step)  # ceil
    grown = _dilate(pooled, 2 * radius + 1, be.xp) if radius > 0 else pooled
    return ~grown


def fit_surface(
    frames: Any,
    keep: Any,
    *,
    step: int = 2,
    block: int | None = None,
    intervals: int | None = None,
    window: int = 1,
    smoothing: float = 1e-3,
    backend: Backend | None = None,
) -> SurfaceFit:
    """Background surface of fluorescence frames from their background pixels, with
    the block statistics it was fitted to (for :func:`block_residuals`).

    Parameters
    ----------
    frames : (T, Y, X) ndarray
        Fluorescence frames, any real dtype.
    keep : (T, ceil(Y / step), ceil(X / step)) bool ndarray
        Background pixels of the sampled grid (:func:`background_pixels`).
    step : int, optional
        Sampling step `keep` was made with.
    block : int, optional
        Block side in px of the frame; by default :func:`auto_block`.
    intervals : int, optional
        Knot intervals per axis; by default :func:`auto_intervals`.
    window, smoothing : optional
        See :func:`fit_coefficients`.

    Returns
    -------
    fit : SurfaceFit
    """
    be = backend or get_backend("cpu")
    _, h, w = frames.shape
    sampled = frames[:, ::step, ::step]
    if frames.ndim != 3 or sampled.shape != keep.shape:
        raise ValueError(f"keep {keep.shape} must be frames {frames.shape} sampled every {step} px")
    side = block or auto_block(h, w)
    sub = max(side // step, 1)
    sub = min(sub, 127)
    stats = block_stats(sampled, keep, sub, backend=be)
    stats = stats._replace(y=stats.y * step - (step - 1) / 2, x=stats.x * step - (step - 1) / 2)
    knots = (intervals or auto_intervals(h), intervals or auto_intervals(w))
    coef = fit_coefficients(stats, h, w, knots, window=window, smoothing=smoothing)
    empty = stats.pixels.sum(axis=(1, 2)) == 0
    by, bx = _pixel_basis(h, knots[0]), _pixel_basis(w, knots[1])
    level = np.einsum(
        "i,tij,j->t", by.mean(0, dtype=np.float64), coef, bx.mean(0, dtype=np.float64)
    )
    if empty.any():  # no background pixel at all: the frame's mean
        for f in np.flatnonzero(empty).tolist():
            level[f] = float(frames[f].mean(dtype=be.xp.float64))
    surface = _evaluate(coef, by, bx, level, empty, be)
    return SurfaceFit(surface, level, stats, _block_means(coef, stats, h, w, knots, sub, step), sub)


def _block_means(
    coef: np.ndarray,
    stats: BlockStats,
    h: int,
    w: int,
    knots: tuple[int, int],
    sub: int,
    step: int,
) -> np.ndarray:
    """The surface's mean over each block's pixels, to second order: its value at their
    centroid plus half its curvature times their spread (that of a whole block's grid:
    a concave vignetting peak would otherwise leave ~0.1 % of the level in every
    block's residual)."""
    t, ny, nx = stats.y.shape

    def rows(basis: np.ndarray) -> np.ndarray:  # (T, ny * nx, a) @ (T, a, b)
        return np.matmul(basis.reshape(t, ny * nx, -1), coef).reshape(t, ny, nx, -1)

    bx = bspline_basis(stats.x, w, knots[1])
    along_y = rows(bspline_basis(stats.y, h, knots[0]))
    curved_y = rows(bspline_curvature(stats.y, h, knots[0]))
    spread = (sub * sub - 1) / 12 * step * step  # variance of a block's positions, px²
    mean = along_y * bx
    mean += 0.5 * spread * (curved_y * bx + along_y * bspline_curvature(stats.x, w, knots[1]))
    return mean.sum(axis=-1)  # type: ignore[no-any-return]


def fit_background(frames: Any, keep: Any, **options: Any) -> tuple[Any, np.ndarray]:
    """:func:`fit_surface`'s surface and level alone.

    Returns
    -------
    surface : (T, Y, X) float32 ndarray
    level : (T,) float64 ndarray
        Mean of each frame's surface.

    Examples
    --------
    >>> import numpy as np
    >>> f = np.full((1, 64, 80), 7, np.uint16)
    >>> s, level = fit_background(f, np.ones((1, 32, 40), bool))
    >>> round(float(s[0, 5, 5]), 3), round(float(level[0]), 3)
    (7.0, 7.0)
    """
    fit = fit_surface(frames, keep, **options)
    return fit.surface, fit.level


def _evaluate(
    coef: np.ndarray,
    by: np.ndarray,
    bx: np.ndarray,
    level: np.ndarray,
    empty: np.ndarray,
    be: Backend,
) -> Any:
    """``By @ C @ Bx.T`` per frame in float32 on the backend (constant where empty)."""
    xp = be.xp
    left = be.asarray(np.einsum("yi,tij->tyj", by, coef).astype(np.float32))  # (T, Y, mx)
    bx_t = be.asarray(np.ascontiguousarray(bx.T))
    surface = xp.matmul(left, bx_t)
    for f in np.flatnonzero(empty).tolist():
        surface[f] = xp.float32(level[f])
    return surface
