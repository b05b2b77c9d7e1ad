"""Deterministic multi-start: pick each trace's starting point from a fixed candidate grid.

Candidates are the request's start values plus the Cartesian product of each model
parameter's start grid (t0, rates, mid-points, EC50; see `Parameter.grid`). For every
candidate the parameters the model is linear in (amplitudes, offsets) are solved for
exactly by one linear least-squares step (a variable-projection start), and the
candidate with the lowest cost wins per trace. The unmodified request start is always
a candidate, so the solver never starts from a worse point than the plain start.
"""

from __future__ import annotations

import itertools
from types import ModuleType
from typing import Any

import numpy as np

from functions.fitting.linalg import solve_spd
from functions.fitting.models import Parameter
from functions.fitting.spec import FitSpec

SCREEN_POINTS = 30  # time points used to rank start candidates


def _grid(xp: ModuleType, p: Parameter, lo: float, hi: float, t: Any, w: Any) -> Any:
    """Candidate values of one parameter, (n, K) or (1, K), inside [lo, hi]."""
    k = p.n_starts
    # Interior points only: a start on a bound invites the solver to stop at a
    # constrained local minimum there.
    mid = ((xp.arange(k) + 0.5) / k)[None, :]
    if p.grid == "linear":
        values = lo + (hi - lo) * mid
    elif p.grid == "log" and lo > 0:
        values = xp.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * mid)
    else:
        valid = w > 0
        t_full = xp.broadcast_to(t, w.shape)
        if t.shape[0] == 1 and bool(valid.all()):  # shared times, nothing missing
            tmin, tmax = t.min(axis=1, keepdims=True), t.max(axis=1, keepdims=True)
        else:
            tmin = xp.where(valid, t_full, xp.inf).min(axis=1, keepdims=True)
            tmax = xp.where(valid, t_full, -xp.inf).max(axis=1, keepdims=True)
        span = xp.maximum(tmax - tmin, 1e-12)
        if p.grid == "time":
            values = tmin + span * mid
        elif p.grid == "frames":  # mid-points between samples: one per smooth piece
            mids = 0.5 * (t_full[:, 1:] + t_full[:, :-1])
            inside = valid[:, 1:] & valid[:, :-1] & (mids > lo) & (mids < hi)
            ranked = xp.where(inside, mids, xp.inf)
            ranked = xp.sort(ranked, axis=1)[:, :k]
            fallback = lo + (hi - lo) * mid[:, : ranked.shape[1]]
            values = xp.where(xp.isfinite(ranked), ranked, fallback)
        elif p.grid == "rate":
            values = xp.exp(xp.linspace(np.log(0.3), np.log(300.0), k))[None, :] / span
        else:  # dose: log-spaced over the positive x range
            pos_min = xp.where(valid & (t_full > 0), t_full, xp.inf).min(axis=1, keepdims=True)
            pos_min = xp.where(xp.isfinite(pos_min), pos_min, 1.0)
            top = xp.maximum(tmax, pos_min * 10)
            frac = xp.linspace(0.0, 1.0, k)[None, :]
            values = xp.exp(xp.log(pos_min) + frac * (xp.log(top) - xp.log(pos_min)))
    return xp.clip(values, lo, hi)


def _candidates(
    xp: ModuleType, spec: FitSpec, t: Any, w: Any, n: int
) -> tuple[list[Any], list[int]]:
    """(n, P) parameter arrays (the request start first, then the grid product) and a
    group per candidate: candidates sharing a "frames" value form one group, so the
    starts kept for several solver runs sit in different smooth pieces."""
    start = xp.tile(xp.asarray(spec.start)[None, :], (n, 1))
    gridded = [
        (i, _grid(xp, p, spec.lower[i], spec.upper[i], t, w))
        for i, p in enumerate(spec.model.parameters)
        if spec.free[i] and p.grid is not None and p.n_starts > 0
    ]
    frames = [k for k, (i, _) in enumerate(gridded) if spec.model.parameters[i].grid == "frames"]
    out, groups = [start], [-1]
    for c, combo in enumerate(itertools.product(*(range(g.shape[1]) for _, g in gridded))):
        cand = start.copy()
        for (i, values), j in zip(gridded, combo, strict=True):
            cand[:, i] = values[:, j]
        out.append(cand)
        groups.append(combo[frames[0]] if frames else c)
    return out, groups


def _project(xp: ModuleType, spec: FitSpec, t: Any, y: Any, w: Any, p: Any) -> tuple[Any, Any, Any]:
    """Solve for the free linear parameters at `p`: (projected p, its cost, raw cost)."""
    lin = [i for i, q in enumerate(spec.model.parameters) if spec.free[i] and q.linear]
    names = [spec.names[i] for i in lin]
    f, cols = spec.model.evaluate(xp, t, p, frozenset(names), spec.constants)
    r = (y - f) * w
    raw = 0.5 * xp.einsum("nt,nt->n", r, r)
    if not lin:
        return p, raw, raw
    J = [xp.broadcast_to(cols[name], r.shape) * w for name in names]
    A = xp.empty((r.shape[0], len(lin), len(lin)))
    for i in range(len(lin)):
        for j in range(i, len(lin)):
            A[:, i, j] = A[:, j, i] = xp.einsum("nt,nt->n", J[i], J[j])
    g = xp.stack([xp.einsum("nt,nt->n", Ji, r) for Ji in J], axis=1)
    ridge = 1e-12 * xp.diagonal(A, axis1=1, axis2=2).max(axis=1) + 1e-300
    eye = xp.eye(len(lin))
    A_r = A + ridge[:, None, None] * eye
    lo, hi = xp.asarray(spec.lower[lin]), xp.asarray(spec.upper[lin])
    p_lin = p[:, lin]
    d = solve_spd(xp, A_r, g)
    clipped = (p_lin + d < lo) | (p_lin + d > hi)
    if len(lin) > 1 and bool(clipped.any()):
        # One active-set pass: hold the clipped parameters on their bound and re-solve
        # for the others (clipping a coupled solution alone can be far from optimal).
        d_c = xp.where(clipped, xp.clip(p_lin + d, lo, hi) - p_lin, 0.0)
        rhs = xp.where(clipped, d_c, g - xp.einsum("nij,nj->ni", A_r, d_c))
        off = clipped[:, :, None] | clipped[:, None, :]
        M = xp.where(off, 0.0, A_r) + eye * clipped[:, :, None]
        d = solve_spd(xp, M, rhs)
    d = xp.clip(p_lin + d, lo, hi) - p_lin
    d = xp.where(xp.isfinite(d), d, 0.0)
    cost = raw - xp.einsum("ni,ni->n", d, g) + 0.5 * xp.einsum("ni,nij,nj->n", d, A, d)
    q = p.copy()
    q[:, lin] = p[:, lin] + d
    return q, cost, raw


def choose_starts(
    xp: ModuleType,
    spec: FitSpec,
    t: Any,
    y: Any,
    w: Any,
    *,
    multistart: bool = True,
    keep: int = 1,
) -> Any:
    """Best starting point per trace, `(n, P)`.

    Parameters
    ----------
    xp : module
        numpy or cupy.
    spec : FitSpec
    t : (n, T) or (1, T) array
    y, w : (n, T) arrays
        Data (0 where missing) and 0/1 weights.
    multistart : bool, optional
        False: the request start only, with its linear parameters projected.
    keep : int, optional
        How many of the best candidates to return.

    Returns
    -------
    (keep, n, P) array
        Starting points, best first.
    """
    n = y.shape[0]
    if multistart:
        cands, groups = _candidates(xp, spec, t, w, n)
    else:
        cands, groups = [xp.tile(xp.asarray(spec.start)[None, :], (n, 1))], [-1]
    frames = any(p.grid == "frames" for p in spec.model.parameters)
    if len(cands) > 1 and y.shape[1] > 2 * SCREEN_POINTS and not frames:
        # Ranking candidates needs the trace's shape, not every point: screen on a
        # strided subset, which makes the multi-start a fraction of one LM run.
        stride = -(-y.shape[1] // SCREEN_POINTS)
        t, y, w = (xp.ascontiguousarray(a[:, ::stride]) for a in (t, y, w))
    # All candidates in one batch: rows c*n .. c*n+n-1 hold candidate c.
    count = len(cands)
    t_all, y_all, w_all = (a if a.shape[0] == 1 else xp.concatenate([a] * count) for a in (t, y, w))
    q, cost, raw = _project(xp, spec, t_all, y_all, w_all, xp.concatenate(cands))
    points = [cands[0], *(q[c * n : (c + 1) * n] for c in range(count))]
    costs = [raw[:n], *(cost[c * n : (c + 1) * n] for c in range(count))]
    costs = [xp.where(xp.isfinite(c), c, xp.inf) for c in costs]
    member = [groups[0], *groups]  # the unprojected request start competes too
    stacked, all_costs = xp.stack(points), xp.stack(costs)  # (C, n, P), (C, n)
    # Best candidate of each group, then the groups ranked by their best cost.
    best_idx, best_cost = [], []
    for g in dict.fromkeys(member):
        idx = xp.asarray([c for c, m in enumerate(member) if m == g])
        sub = all_costs[idx]
        best_idx.append(idx[xp.argmin(sub, axis=0)])
        best_cost.append(sub.min(axis=0))
    ranked = xp.stack(best_cost)
    # ties keep candidate order (the request start first); cupy's sort is stable anyway
    order = np.argsort(ranked, axis=0, kind="stable") if xp is np else xp.argsort(ranked, axis=0)
    best = xp.stack(best_idx)
    cols = xp.arange(n)
    picks = [best[order[min(j, len(best_idx) - 1)], cols] for j in range(keep)]
    return xp.stack([stacked[pick, cols] for pick in picks])  # (keep, n, P)
