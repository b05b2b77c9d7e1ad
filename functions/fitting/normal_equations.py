"""Cost, JᵀJ and Jᵀr of the weighted residuals at given parameters, for a working set.

This is everything a Levenberg-Marquardt iteration needs from the model, so no (n, T)
array outlives an evaluation. A model with a fused kernel for the backend
(`fused.fused_normal_equations`) computes them in one pass over the data; otherwise they
come from the model kernel's Jacobian columns (`kernels.Terms`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from functions.fitting.fused import Fused
from functions.fitting.kernels import as_terms
from functions.fitting.spec import FitSpec
from functions.fitting.working_set import WorkingSet

#: Evaluate only the live rows when fewer than this share of the set still iterate.
LIVE_GATHER = 0.9


def evaluate(
    xp: ModuleType, spec: FitSpec, fused: Fused | None, s: WorkingSet, p: Any
) -> tuple[Any, Any, Any]:
    """Cost ½·SS_res (n,), JᵀJ (n, k, k) and Jᵀr (n, k) of the rows of `s` at `p`."""
    if fused is not None:
        return fused(s.t, s.y, None if s.dense else s.w, p)
    names = spec.free_names
    f, cols = spec.model.evaluate_terms(xp, s.t, p, frozenset(names), spec.constants)
    r = s.y - f
    if not s.dense:
        r *= s.w
    cost = 0.5 * xp.einsum("nt,nt->n", r, r)
    return (cost, *_from_columns(xp, names, s, r, cols))


def evaluate_live(
    xp: ModuleType, spec: FitSpec, fused: Fused | None, s: WorkingSet, p: Any
) -> tuple[Any, Any, Any]:
    """`evaluate` at `p` for the live rows; finished rows riding along in the working set
    get a NaN cost (a rejected step) and keep their JᵀJ and Jᵀr.

    Up to a quarter of the rows wait there for a refill; skipping them saves more than
    gathering the live rows' data costs once they are a tenth of the set.
    """
    if s.live_count >= LIVE_GATHER * s.size:
        return evaluate(xp, spec, fused, s, p)
    rows = xp.flatnonzero(s.live)
    cost_sub, A_sub, g_sub = evaluate(xp, spec, fused, s.data_of(rows), p[rows])
    cost, A, g = xp.full(s.size, xp.nan), s.A.copy(), s.g.copy()
    cost[rows], A[rows], g[rows] = cost_sub, A_sub, g_sub
    return cost, A, g


def _from_columns(
    xp: ModuleType, names: tuple[str, ...], s: WorkingSet, r: Any, cols: dict[str, Any]
) -> tuple[Any, Any]:
    """JᵀJ (n, k, k) and Jᵀr (n, k) from the Jacobian columns as the kernel gives them: a
    column given as c1·X + c2·Y (`kernels.Terms`: per-trace coefficients times shared
    arrays) is never formed; the products of X and Y are combined."""
    B, C = _basis(xp, names, s, r.shape, cols)
    G, Gr = _products(xp, s, B, r)
    A = (C @ G) @ C.transpose(0, 2, 1)  # C G Cᵀ per trace (a 3-operand einsum is 5x slower)
    g = xp.einsum("nia,na->ni", C, Gr)
    return A, g


def _basis(
    xp: ModuleType,
    names: tuple[str, ...],
    s: WorkingSet,
    shape: tuple[int, int],
    cols: dict[str, Any],
) -> tuple[list[Any], Any]:
    """The distinct weighted arrays B the columns are made of, and the coefficients C
    (n, k, len(B)) that combine them: column i = Σ_a C[:, i, a]·B[a]."""
    n = shape[0]
    B: list[Any] = []
    seen: dict[int, int] = {}
    entries = []
    for i, name in enumerate(names):
        for coef, array in as_terms(cols[name]):
            if id(array) not in seen:
                seen[id(array)] = len(B)
                B.append(_weighted(xp, s, array, shape))
            entries.append((i, seen[id(array)], coef))
    C = xp.zeros((n, len(names), len(B)))
    for i, a, coef in entries:
        C[:, i, a] += xp.broadcast_to(xp.asarray(coef, dtype=float), (n, 1))[:, 0]
    return B, C


def _products(xp: ModuleType, s: WorkingSet, B: list[Any], r: Any) -> tuple[Any, Any]:
    """G = BᵀB (n, m, m) and Gr = Bᵀr (n, m) per trace.

    A basis array of shape `(n, 1)` (an offset's column: constant in t) stays that size
    and is reduced with sums: with 0/1 weights a constant array c·w contributes c·Σ(array)
    to a product with a weighted array, and c_i·c_j·Σw to a product of two constant ones.
    Without missing points no weights apply.
    """
    n, m = r.shape[0], len(B)
    flat = [b.shape[1] == 1 for b in B]
    sums: dict[int, Any] = {}

    def total(i: int) -> Any:
        if i not in sums:
            sums[i] = B[i].sum(axis=1) if i >= 0 else s.npts
        return sums[i]

    G = xp.empty((n, m, m))
    Gr = xp.empty((n, m))
    for a in range(m):
        for b in range(a, m):
            if flat[a] and flat[b]:
                G[:, a, b] = B[a][:, 0] * B[b][:, 0] * total(-1)
            elif flat[a] or flat[b]:
                c, other = (a, b) if flat[a] else (b, a)
                G[:, a, b] = B[c][:, 0] * total(other)
            else:
                G[:, a, b] = xp.einsum("nt,nt->n", B[a], B[b])
            if b != a:
                G[:, b, a] = G[:, a, b]
        if flat[a]:
            Gr[:, a] = B[a][:, 0] * r.sum(axis=1)
        else:
            Gr[:, a] = xp.einsum("nt,nt->n", B[a], r)
    return G, Gr


def _weighted(xp: ModuleType, s: WorkingSet, array: Any, shape: tuple[int, int]) -> Any:
    if array.shape == shape:
        return array if s.dense else array * s.w
    if array.shape[1] == 1:
        return xp.broadcast_to(array, (shape[0], 1)).copy()
    return xp.broadcast_to(array, shape) * s.w
