"""Penalised, robust least squares of a tensor-product spline to block means.

Each block contributes one row (the basis at its centroid) weighted by its pixel
count; a thin-plate-like roughness penalty keeps the problem well-posed where cells
leave no background. Consecutive frames of a window are fitted together with
coefficients linear in time. Robustness: a first, stiff fit (something bright that the
segmentation missed bends it little), then refits without the blocks that deviate by
more than ~4.7 standard errors *and* 2 % of the level. The per-frame normal matrices
are computed once; a refit only subtracts the rejected blocks' rows, so robustness
costs a few small products, not a fit each time.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from functions.microscopy.background_fit import BlockStats

#: Rejection at this many robust standard errors (Tukey's constant).
_REACH = 4.685
#: Penalty factor of the first, stiff fit.
_STIFF = 1e3
#: Deviations below this fraction of the level never make a block an outlier.
_FLOOR = 0.02


@lru_cache(maxsize=16)
def _penalty(my: int, mx: int) -> np.ndarray:
    """Thin-plate-like roughness of a ``(my, mx)`` coefficient grid: squared second
    differences along y and x and twice the squared mixed differences, so that only
    planes cost nothing and a surface over a large gap in the data stays a plane."""

    def diff(m: int, order: int) -> np.ndarray:
        d = np.diff(np.eye(m), order, axis=0) if m > order else np.zeros((0, m))
        return d.T @ d

    return (
        np.kron(diff(my, 2), np.eye(mx))
        + np.kron(np.eye(my), diff(mx, 2))
        + 2 * np.kron(diff(my, 1), diff(mx, 1))
    )


def fit_coefficients(
    stats: BlockStats,
    height: float,
    width: float,
    intervals: tuple[int, int],
    *,
    window: int = 1,
    smoothing: float = 1e-3,
    robust_iterations: int = 2,
) -> np.ndarray:
    """Spline coefficients of every frame's background (host, float64).

    Parameters
    ----------
    stats : BlockStats
        Block means at centroids, in px of a ``height x width`` frame.
    intervals : (int, int)
        Knot intervals along y and x.
    window : int, optional
        Consecutive frames fitted together, the coefficients varying linearly in time
        within a window: illumination changes slowly, so pooling frames averages the
        noise of the fit without following it any less.
    smoothing : float, optional
        Roughness penalty relative to the mean diagonal of the data's normal matrix.
    robust_iterations : int, optional
        Refits without outlying blocks after the first, stiff fit.

    Returns
    -------
    coefficients : (T, iy + 3, ix + 3) float64 ndarray
    """
    from functions.microscopy.background_fit import bspline_basis

    t = stats.pixels.shape[0]
    my, mx = intervals[0] + 3, intervals[1] + 3
    ay = bspline_basis(stats.y.reshape(t, -1), height, intervals[0])
    ax = bspline_basis(stats.x.reshape(t, -1), width, intervals[1])
    n = stats.pixels.reshape(t, -1)
    z = stats.total.reshape(t, -1) / np.maximum(n, 1)
    # design rows (ay ⊗ ax) scaled by √n: the normal matrix is Sᵀ·S of one buffer,
    # which BLAS computes as a symmetric rank-k update (half the work of a general
    # product); the unscaled design is never built (fits are evaluated from ay, ax)
    root = np.sqrt(n)
    scaled = ((ay * root[..., None])[..., :, None] * ax[..., None, :]).reshape(t, -1, my * mx)
    rooted_z = root * z
    normal = np.matmul(scaled.transpose(0, 2, 1), scaled)  # (t, m, m), once
    rhs = np.matmul(scaled.transpose(0, 2, 1), rooted_z[..., None])[..., 0]
    penalty = _penalty(my, mx)
    coef = np.zeros((t, my * mx))
    step = max(window, 1)
    for start in range(0, t, step):
        sl = slice(start, min(start + step, t))
        out = np.zeros(n[sl].shape, dtype=bool)
        for it in range(robust_iterations + 1):
            stiffness = smoothing * (_STIFF if it == 0 and robust_iterations else 1.0)
            a, b = _without(normal[sl], rhs[sl], scaled[sl], rooted_z[sl], out)
            coef[sl] = _solve_window(a, b, penalty, stiffness)
            if it == robust_iterations:
                break
            grid = coef[sl].reshape(-1, my, mx)
            fitted = (ay[sl] * np.matmul(ax[sl], grid.transpose(0, 2, 1))).sum(axis=-1)
            rejected = _outliers(z[sl] - fitted, n[sl], z[sl])
            if it > 0 and np.array_equal(rejected, out):
                break  # the same blocks out, same stiffness: the refit would be this fit
            out = rejected
    return coef.reshape(t, my, mx)


def _without(
    normal: np.ndarray,
    rhs: np.ndarray,
    scaled: np.ndarray,
    rooted_z: np.ndarray,
    out: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Normal matrices and right-hand sides less the (√n-scaled) rows of the blocks in
    `out`."""
    if not out.any():
        return normal, rhs
    normal, rhs = normal.copy(), rhs.copy()
    for f in np.flatnonzero(out.any(axis=1)).tolist():
        rows = scaled[f][out[f]]
        normal[f] -= rows.T @ rows
        rhs[f] -= rows.T @ rooted_z[f][out[f]]
    return normal, rhs


def _outliers(resid: np.ndarray, pixels: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Blocks that deviate by more than ~4.7 robust standard errors (scale from the MAD
    of the residuals standardised by the block's pixel count) and by more than 2 % of
    the frame's level."""
    valid = pixels > 0
    root = np.sqrt(pixels)
    std = resid * root
    centre = _row_medians(std, valid)
    scale = 1.4826 * _row_medians(np.abs(std - centre[:, None]), valid)
    level = np.abs(_row_medians(z, valid))
    reach = np.maximum(_REACH * scale[:, None] / np.maximum(root, 1), _FLOOR * level[:, None])
    return valid & (np.abs(resid) >= reach)  # type: ignore[no-any-return]


def _row_medians(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median of each row's valid entries (NaN for none), all rows in one sort: the
    invalid ones set to +inf sort last."""
    count = valid.sum(axis=1)
    ordered = np.sort(np.where(valid, values, np.inf), axis=1)
    rows = np.arange(len(values))
    lo = ordered[rows, np.maximum(count - 1, 0) // 2]
    hi = ordered[rows, np.maximum(count, 1) // 2 - (count == 0)]
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, (lo + hi) / 2, np.nan)


def _solve_window(
    normal: np.ndarray, rhs: np.ndarray, penalty: np.ndarray, smoothing: float
) -> np.ndarray:
    """Penalised least squares of the frames of one window from their normal matrices:
    coefficients ``c0 + tau_t c1`` (``tau`` centred frame index; ``c1 = 0`` for one
    frame)."""
    t, m, _ = normal.shape
    tau = np.arange(t) - (t - 1) / 2
    q = 2 if t > 1 else 1
    big = np.zeros((q * m, q * m))
    vec = np.zeros(q * m)
    powers = [np.ones(t), tau][:q]
    for i in range(q):
        vec[i * m : (i + 1) * m] = powers[i] @ rhs
        for j in range(q):
            big[i * m : (i + 1) * m, j * m : (j + 1) * m] = np.tensordot(
                powers[i] * powers[j], normal, axes=1
            )
    scale = float(np.trace(big)) / (q * m)
    if scale <= 0:  # no background pixel in the whole window
        return np.zeros((t, m))
    for i in range(q):
        big[i * m : (i + 1) * m, i * m : (i + 1) * m] += smoothing * scale * penalty
    sol = np.linalg.solve(big, vec).reshape(q, m)
    return sol[0][None, :] + (tau[:, None] * sol[1][None, :] if q > 1 else 0.0)  # type: ignore[no-any-return]
