"""Deterministic multi-start: pick each trace's starting point from a fixed candidate grid.

Candidates are the request's start values plus the Cartesian product of each model
parameter's start grid (t0, rates, mid-points, EC50; see `Parameter.grid`). For every
candidate the parameters the model is linear in (amplitudes, offsets) are solved for
exactly by one linear least-squares step (a variable-projection start), and the
candidate with the lowest cost wins per trace. The unmodified request start is always
a candidate, so the solver never starts from a worse point than the plain start.

When all traces share one time axis and miss no point (the usual output of the
processing workflow), the candidates are the same for every trace and the projection
reduces to one matrix product of the data with the candidates' curves, over all time
points; otherwise each trace is screened on a strided subset of its points.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from functions.fitting.affine import CandidateNormals, candidate_normals
from functions.fitting.linalg import inverse_spd, rows_times, solve_spd
from functions.fitting.models import Parameter
from functions.fitting.solver_types import Box
from functions.fitting.spec import FitSpec

SCREEN_POINTS = 30  # time points used to rank start candidates, per trace
# "onset" starts sit at fractions ((k + 1/2)/K)^1.5 of the time span: 8 starts over 30 h
# at 0.5, 2.4, 5.2, 8.6, 12.6, 17, 21.8 and 27 h (measured on maturation: onsets near the
# first frame take 10 % fewer iterations than from an even grid, onsets spread over the
# time-lapse as few)
ONSET_SPACING = 1.5
# Sample intervals x time points screened for a "frames" parameter on a shared axis: all
# 179 intervals of 180 points; every few of 1,000 points (the screen's arrays grow as
# intervals x points x the other parameters' grid).
SHARED_FRAME_POINTS = 1 << 16


def _grid(xp: ModuleType, p: Parameter, lo: Any, hi: Any, t: Any, w: Any, y: Any = None) -> Any:
    """Candidate values of one parameter, (n, K) or (1, K), inside [lo, hi] (numbers,
    or each trace's (n, 1)); `y`, the data, is given when candidates may differ between
    traces."""
    k = p.n_starts
    # Interior points only: a start on a bound invites the solver to stop at a
    # constrained local minimum there.
    mid = ((xp.arange(k) + 0.5) / k)[None, :]
    if p.grid == "linear":
        values = lo + (hi - lo) * mid
    elif p.grid == "log" and bool((xp.asarray(lo) > 0).all()):
        log_lo, log_hi = (np.log(v) if np.isscalar(v) else xp.log(v) for v in (lo, hi))
        values = xp.exp(log_lo + (log_hi - log_lo) * mid)
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
        elif p.grid == "onset":  # denser early: expression mostly starts soon after
            values = tmin + span * mid**ONSET_SPACING
        elif p.grid == "frames":
            values = _frames(xp, lo, hi, t_full, valid, y, k)
        elif p.grid == "rate":
            values = xp.exp(xp.linspace(np.log(0.3), np.log(300.0), k))[None, :] / span
        else:  # dose: log-spaced over the positive x range
            pos_min = xp.where(valid & (t_full > 0), t_full, xp.inf).min(axis=1, keepdims=True)
            pos_min = xp.where(xp.isfinite(pos_min), pos_min, 1.0)
            top = xp.maximum(tmax, pos_min * 10)
            frac = xp.linspace(0.0, 1.0, k)[None, :]
            values = xp.exp(xp.log(pos_min) + frac * (xp.log(top) - xp.log(pos_min)))
    return xp.clip(values, lo, hi)


def _frames(xp: ModuleType, lo: Any, hi: Any, t: Any, valid: Any, y: Any, k: int) -> Any:
    """Starts of a parameter that places a step (an onset) in the model: mid-points
    between consecutive samples inside (lo, hi), one per smooth piece of the cost.

    Shared by every trace (`y` None): every interval, or as many as `SHARED_FRAME_POINTS`
    allows, evenly spread. Per trace: the `k` intervals where the trace jumps most (a
    step shows as the largest difference between consecutive samples), in time order.
    """
    if y is None:
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        inside = xp.flatnonzero(valid[0, 1:] & valid[0, :-1] & (mids[0] > lo) & (mids[0] < hi))
        if inside.shape[0] == 0:
            return xp.full((1, 1), 0.5 * (lo + hi))
        most = max(SHARED_FRAME_POINTS // t.shape[1], 16)
        if inside.shape[0] > most:
            inside = inside[xp.linspace(0, inside.shape[0] - 1, most).astype(int)]
        return mids[:, inside]
    # consecutive valid samples: the valid ones first, in time order
    missing = (~valid).astype(xp.int8)
    order = xp.argsort(missing, axis=1, kind="stable") if xp is np else xp.argsort(missing, axis=1)
    tv, yv, vv = (xp.take_along_axis(a, order, axis=1) for a in (t, y, valid))
    mids = 0.5 * (tv[:, 1:] + tv[:, :-1])
    inside = vv[:, 1:] & (mids > lo) & (mids < hi)
    jump = xp.where(inside, xp.abs(yv[:, 1:] - yv[:, :-1]), -1.0)
    k = min(k, jump.shape[1])
    ranked = xp.argsort(-jump, axis=1, kind="stable") if xp is np else xp.argsort(-jump, axis=1)
    top = xp.sort(ranked[:, :k], axis=1)
    picked = xp.take_along_axis(mids, top, axis=1)
    ok = xp.take_along_axis(jump, top, axis=1) >= 0
    fallback = lo + (hi - lo) * ((xp.arange(k) + 0.5) / k)[None, :]
    return xp.where(ok, picked, fallback)


def _candidates(
    xp: ModuleType, spec: FitSpec, t: Any, w: Any, n: int, y: Any = None, box: Box | None = None
) -> tuple[list[Any], list[int]]:
    """(n, P) parameter arrays (the request start first, then the grid product) and a
    group per candidate: candidates sharing a "frames" value form one group, so the
    starts kept for several solver runs sit in different smooth pieces. `y` (n, T), the
    data, is given when candidates may differ between traces (see `_frames`); `box`,
    each trace's own start and bounds, when they differ too."""
    start = _request_start(xp, spec, n, box)

    def bounds(i: int) -> tuple[Any, Any]:
        if box is None:
            return spec.lower[i], spec.upper[i]
        return box.lower[:, i : i + 1], box.upper[:, i : i + 1]

    gridded = [
        (i, _grid(xp, p, *bounds(i), t, w, y))
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


def _request_start(xp: ModuleType, spec: FitSpec, n: int, box: Box | None) -> Any:
    """(n, P) the start each trace's request resolves to."""
    return xp.tile(xp.asarray(spec.start)[None, :], (n, 1)) if box is None else box.start.copy()


def _linear_params(spec: FitSpec) -> tuple[list[int], list[str]]:
    lin = [i for i, q in enumerate(spec.model.parameters) if spec.free[i] and q.linear]
    return lin, [spec.names[i] for i in lin]


def _ridged(xp: ModuleType, A: Any) -> Any:
    ridge = 1e-12 * xp.diagonal(A, axis1=1, axis2=2).max(axis=1) + 1e-300
    return A + ridge[:, None, None] * xp.eye(A.shape[1])


def _linear_step(
    xp: ModuleType, spec: FitSpec, lin: list[int], p_lin: Any, A: Any, g: Any, d: Any = None
) -> Any:
    """The bounded least-squares change `d` of the linear parameters: A d = g (A the
    Gram matrix of their columns, g their product with the residual), kept in bounds.
    `d`, when given, is the unbounded solution already solved for."""
    A_r = _ridged(xp, A)
    lo, hi = xp.asarray(spec.lower[lin]), xp.asarray(spec.upper[lin])
    if d is None:
        d = solve_spd(xp, A_r, g)
    clipped = (p_lin + d < lo) | (p_lin + d > hi)
    if len(lin) > 1 and bool(clipped.any()):
        # One active-set pass: hold the clipped parameters on their bound and re-solve
        # for the others (clipping a coupled solution alone can be far from optimal).
        rows = xp.flatnonzero(clipped.any(axis=1))
        held, base, A_h, g_h = clipped[rows], p_lin[rows], A_r[rows], g[rows]
        d_c = xp.where(held, xp.clip(base + d[rows], lo, hi) - base, 0.0)
        rhs = xp.where(held, d_c, g_h - xp.einsum("nij,nj->ni", A_h, d_c))
        off = held[:, :, None] | held[:, None, :]
        M = xp.where(off, 0.0, A_h) + xp.eye(len(lin)) * held[:, :, None]
        d = d.copy()
        d[rows] = solve_spd(xp, M, rhs)
    d = xp.clip(p_lin + d, lo, hi) - p_lin
    return xp.where(xp.isfinite(d), d, 0.0)


def _project(xp: ModuleType, spec: FitSpec, t: Any, y: Any, w: Any, p: Any) -> tuple[Any, Any, Any]:
    """Solve for the free linear parameters at `p`: (projected p, its cost, raw cost)."""
    lin, names = _linear_params(spec)
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
    d = _linear_step(xp, spec, lin, p[:, lin], A, g)
    cost = raw - xp.einsum("ni,ni->n", d, g) + 0.5 * xp.einsum("ni,nij,nj->n", d, A, d)
    q = p.copy()
    q[:, lin] = p[:, lin] + d
    return q, cost, raw


@dataclass(frozen=True)
class SharedScreen:
    """The start screen's per-candidate quantities when all traces share one time axis
    and miss no point: the candidates and everything that depends only on them and on
    t, computed once per solve and reused for every batch of traces that enters.

    The model is linear in its linear parameters, so every trace's projection needs
    only products of its data with each candidate's curve and linear columns: one
    (n, T) x (T, C·(L+1)) matrix product instead of C model evaluations per trace.
    """

    cands: Any  # (C, P) the request start, then the grid candidates
    groups: list[int]  # group per choice: the request start unprojected, then `cands`
    lin: list[int]  # columns of the free linear parameters (L of them)
    curves: Any  # (T, C·(L+1)) each candidate's curve, then its linear columns by parameter
    ff: Any  # (C,) f·f
    gram: Any  # (C, L, L) Gram matrices of the linear columns
    inv: Any  # (C, L, L) their (ridged) inverses
    bf: Any  # (C, L) linear columns · curve
    normals: CandidateNormals  # the solver's first evaluation at the chosen starts


def shared_screen(xp: ModuleType, spec: FitSpec, t: Any) -> SharedScreen:
    """`SharedScreen` for the time axis `t` (1, T)."""
    shared, groups = _candidates(xp, spec, t, xp.ones_like(t), 1)
    cands = xp.concatenate(shared)  # (C, P)
    lin, names = _linear_params(spec)
    f, cols = spec.model.evaluate(xp, t, cands, frozenset(names), spec.constants)
    C, T, L = cands.shape[0], t.shape[1], len(lin)
    f = xp.broadcast_to(f, (C, T))
    B = [xp.broadcast_to(cols[name], (C, T)) for name in names]
    # (a contiguous right operand: OpenBLAS is several times slower on a transposed one)
    curves = xp.ascontiguousarray(xp.concatenate([f, *B]).T)
    gram = xp.empty((C, L, L))
    for i in range(L):
        for j in range(i, L):
            gram[:, i, j] = gram[:, j, i] = xp.einsum("ct,ct->c", B[i], B[j])
    bf = xp.stack([xp.einsum("ct,ct->c", Bi, f) for Bi in B], axis=1) if L else xp.zeros((C, 0))
    inv = inverse_spd(xp, _ridged(xp, gram)) if L else gram
    ff = xp.einsum("ct,ct->c", f, f)
    normals = candidate_normals(xp, spec, t, cands, lin)
    return SharedScreen(cands, [groups[0], *groups], lin, curves, ff, gram, inv, bf, normals)


def _times(v: Any, M: Any) -> Any:
    """v (n, C, L) times M (C, L, L) per candidate, as (n, C, L): L broadcast products
    (a stacked matmul pays per 1 x L matrix)."""
    out = v[:, :, 0, None] * M[None, :, 0, :]
    for j in range(1, M.shape[1]):
        out += v[:, :, j, None] * M[None, :, j, :]
    return out


def _project_shared(
    xp: ModuleType, spec: FitSpec, screen: SharedScreen, y: Any
) -> tuple[Any, Any, Any]:
    """`_project` of the shared candidates for the traces `y` (n, T): the linear
    parameters' changes (n, C, L), costs and raw costs (n, C).

    Costs come from the expanded square ½(y·y - 2y·f + f·f), whose rounding (about
    eps·y·y) is far below the differences that rank candidates.
    """
    lin, cands = screen.lin, screen.cands
    C, n, L = cands.shape[0], y.shape[0], len(screen.lin)
    prod = rows_times(xp, y, screen.curves)  # (n, C·(L+1))
    yy = xp.einsum("nt,nt->n", y, y)
    raw = 0.5 * (yy[:, None] - 2.0 * prod[:, :C] + screen.ff[None, :])
    if not lin:
        return xp.zeros((n, C, 0)), raw, raw
    g = prod[:, C:].reshape(n, L, C).transpose(0, 2, 1) - screen.bf[None]  # (n, C, L): Bᵀ(y - f)
    # One inverse per candidate serves every trace; the few traces whose solution
    # leaves the bounds get the active-set pass of `_linear_step`.
    d = _times(g, screen.inv)  # (n, C, L); inv is symmetric
    p_lin = cands[:, lin]
    lo, hi = xp.asarray(spec.lower[lin]), xp.asarray(spec.upper[lin])
    outside = ((p_lin + d < lo) | (p_lin + d > hi)).any(axis=2)
    if bool(outside.any()):
        rn, rc = xp.nonzero(outside)
        d[rn, rc] = _linear_step(xp, spec, lin, p_lin[rc], screen.gram[rc], g[rn, rc], d[rn, rc])
    d = xp.clip(p_lin + d, lo, hi) - p_lin
    d = xp.where(xp.isfinite(d), d, 0.0)
    cost = raw - xp.einsum("nci,nci->nc", d, g - 0.5 * _times(d, screen.gram))
    return d, cost, raw


def _rank(xp: ModuleType, costs: Any, member: list[int], keep: int) -> list[Any]:
    """Per trace, the `keep` best candidates (rows of `costs` (C, n)): the best of each
    group, groups ranked by their best cost; ties keep candidate order."""
    n = costs.shape[1]
    if keep == 1:  # the best of the best of each group: the best
        return [xp.argmin(costs, axis=0)]
    groups = list(dict.fromkeys(member))
    if len(groups) == len(member):  # every candidate its own group
        best = xp.broadcast_to(xp.arange(len(member))[:, None], costs.shape)
        ranked = costs
    else:
        best_idx, best_cost = [], []
        for g in groups:
            idx = xp.asarray([c for c, m in enumerate(member) if m == g])
            sub = costs[idx]
            best_idx.append(idx[xp.argmin(sub, axis=0)])
            best_cost.append(sub.min(axis=0))
        best, ranked = xp.stack(best_idx), xp.stack(best_cost)
    # cupy's sort is stable anyway
    order = np.argsort(ranked, axis=0, kind="stable") if xp is np else xp.argsort(ranked, axis=0)
    cols = xp.arange(n)
    return [best[order[min(j, len(groups) - 1)], cols] for j in range(keep)]


def pick_shared(
    xp: ModuleType, spec: FitSpec, screen: SharedScreen, y: Any, keep: int = 1
) -> tuple[Any, Any]:
    """`choose_starts` for traces `y` (n, T) on the screen's time axis, none missing:
    the starting points (keep, n, P), best first, and the candidate (row of
    `screen.cands`) each one's nonlinear parameters come from (keep, n)."""
    n = y.shape[0]
    d, cost, raw = _project_shared(xp, spec, screen, y)
    costs = xp.concatenate([raw[:, :1], cost], axis=1).T  # (1 + C, n)
    costs = xp.where(xp.isfinite(costs), costs, xp.inf)
    cols = xp.arange(n)
    points, cands = [], []
    for pick in _rank(xp, costs, screen.groups, keep):
        c = xp.maximum(pick - 1, 0)  # choice 0 is the request start, unprojected
        point = screen.cands[c]
        point[:, screen.lin] += xp.where((pick > 0)[:, None], d[cols, c], 0.0)
        points.append(point)
        cands.append(c)
    return xp.stack(points), xp.stack(cands)


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
    if multistart and t.shape[0] == 1 and bool((w > 0).all()):
        # One time axis and no missing points: every trace has the same candidates.
        # (A caller that screens many batches on one time axis keeps the `SharedScreen`
        # and calls `pick_shared` itself, as the solver does.)
        return pick_shared(xp, spec, shared_screen(xp, spec, t), y, keep)[0]
    return screen_each(xp, spec, t, y, w, multistart=multistart, keep=keep)


def screen_each(
    xp: ModuleType,
    spec: FitSpec,
    t: Any,
    y: Any,
    w: Any,
    *,
    multistart: bool = True,
    keep: int = 1,
    box: Box | None = None,
) -> Any:
    """`choose_starts` with each trace's own candidates, screened on its own points
    (what traces with their own time axes or missing points get), `(keep, n, P)`;
    `box` holds each trace's own start and bounds where they differ."""
    n = y.shape[0]
    points, costs_list, groups = _screen(xp, spec, t, y, w, multistart, box)
    stacked = xp.stack(points)  # (C, n, P)
    all_costs = xp.stack([xp.where(xp.isfinite(c), c, xp.inf) for c in costs_list])
    cols = xp.arange(n)
    picks = _rank(xp, all_costs, [groups[0], *groups], keep)  # the unprojected start too
    return xp.stack([stacked[pick, cols] for pick in picks])  # (keep, n, P)


def _screen(
    xp: ModuleType, spec: FitSpec, t: Any, y: Any, w: Any, multistart: bool, box: Box | None
) -> tuple[list[Any], list[Any], list[int]]:
    """Candidates per trace (times or missing points differ between traces): the
    request start unprojected, then each candidate projected; with their costs."""
    n = y.shape[0]
    if multistart:
        cands, groups = _candidates(xp, spec, t, w, n, y, box)
    else:
        cands, groups = [_request_start(xp, spec, n, box)], [-1]
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
    return points, costs, groups
