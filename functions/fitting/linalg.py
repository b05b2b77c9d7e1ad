"""Batched solves of many small symmetric positive definite systems.

The solver's normal equations are thousands of k x k systems (k = free parameters,
rarely above 6). numpy's batched `linalg.solve` calls LAPACK once per matrix, which
costs more than the arithmetic; a Cholesky factorisation written out over k, with
each scalar operation applied to the whole batch at once, is several times faster on
the CPU and runs unchanged on cupy.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def solve_spd(xp: ModuleType, A: Any, b: Any) -> Any:
    """Solve `A x = b` for a batch of symmetric positive definite matrices.

    Parameters
    ----------
    xp : module
        numpy or cupy.
    A : (n, k, k) array
        Symmetric positive definite matrices (only the lower triangle is read).
    b : (n, k) array

    Returns
    -------
    (n, k) array
        The solutions. A matrix that is not numerically positive definite has its
        failing pivots floored at 1e-30 of the diagonal (large, finite components,
        as an LU solve of a nearly singular matrix gives); non-finite input gives
        non-finite output.

    Notes
    -----
    The matrices are first scaled to unit diagonal (Jacobi): the solver's parameters
    differ in scale by many orders of magnitude, and Cholesky on the scaled matrix is
    backward stable whatever the scaling was.
    """
    k = b.shape[1]
    # (k, k, n) and (k, n): each entry is then a contiguous batch vector
    At = xp.ascontiguousarray(xp.moveaxis(A, 0, -1))
    bt = xp.ascontiguousarray(b.T)
    d = xp.sqrt(xp.stack([At[i, i] for i in range(k)]))
    d = xp.where((d > 0) & xp.isfinite(d), d, 1.0)
    inv_d = 1.0 / d
    L: list[list[Any]] = [[None] * k for _ in range(k)]
    inv_diag: list[Any] = [None] * k
    for j in range(k):
        s = At[j, j] * inv_d[j] * inv_d[j]
        for m in range(j):
            s = s - L[j][m] * L[j][m]
        inv_diag[j] = 1.0 / xp.sqrt(xp.maximum(s, 1e-30))
        for i in range(j + 1, k):
            v = At[i, j] * (inv_d[i] * inv_d[j])
            for m in range(j):
                v = v - L[i][m] * L[j][m]
            L[i][j] = v * inv_diag[j]
    y = bt * inv_d
    z: list[Any] = [None] * k
    for i in range(k):
        v = y[i]
        for m in range(i):
            v = v - L[i][m] * z[m]
        z[i] = v * inv_diag[i]
    x: list[Any] = [None] * k
    for i in reversed(range(k)):
        v = z[i]
        for m in range(i + 1, k):
            v = v - L[m][i] * x[m]
        x[i] = v * inv_diag[i]
    # C order, as every other per-trace array: numpy's reductions (einsum) over an
    # F-ordered result sum in another order, so a row's bits would depend on its batch
    return xp.ascontiguousarray((xp.stack(x) * inv_d).T)


def inverse_spd(xp: ModuleType, A: Any) -> Any:
    """Inverses of a batch `(n, k, k)` of symmetric positive definite matrices, by
    `solve_spd` against the k unit vectors of each (same conventions)."""
    n, k = A.shape[0], A.shape[1]
    columns = solve_spd(xp, xp.repeat(A, k, axis=0), xp.tile(xp.eye(k), (n, 1)))
    return columns.reshape(n, k, k)  # row j holds column j: the same, by symmetry


def rows_times(xp: ModuleType, a: Any, b: Any) -> Any:
    """`a @ b` for a (n, T) batch of rows, each row's result the same whatever the other
    rows are: numpy sends a single row to gemv, which sums in another order than gemm.
    (A trace's fit may not depend on its batch: a fan-out's chunks must reproduce the
    unsplit fit to the bit.)"""
    if a.shape[0] == 1:
        return (xp.repeat(a, 2, axis=0) @ b)[:1]
    return a @ b
