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

from functions.fitting.models import Parameter
from functions.fitting.spec import FitSpec

SCREEN_POINTS = 60  # time points used to rank start candidates


def _grid(xp: ModuleType, p: Parameter, lo: float, hi: float, t: Any, w: Any) -> Any:
    """Candidate values of one parameter, (n, K) or (1, K), inside [lo, hi]."""
    k = p.n_starts
    # Interior points only: a start on a bound invites the solver to stop at a
    # constrained local minimum there.
    mid = ((xp.arange(k) + 0.5) / k)[None, :]
    if p.grid == "linear":
        values = lo + (hi - lo) * mid
    elif p.grid == "log" and lo > 0:
        values = xp.geomspace(lo, hi, k)[None, :]
    else:
        valid = w > 0
        t_full = xp.broadcast_to(t, w.shape)
        tmin = xp.where(valid, t_full, xp.inf).min(axis=1, keepdims=True)
        tmax = xp.where(valid, t_full, -xp.inf).max(axis=1, keepdims=True)
        span = xp.maximum(tmax - tmin, 1e-12)
        if p.grid == "time":
            values = tmin + span * mid
        elif p.grid == "rate":
            values = xp.geomspace(0.3, 30.0, k)[None, :] / span
        else:  # dose: log-spaced over the positive x range
            pos_min = xp.where(valid & (t_full > 0), t_full, xp.inf).min(axis=1, keepdims=True)
            pos_min = xp.where(xp.isfinite(pos_min), pos_min, 1.0)
            top = xp.maximum(tmax, pos_min * 10)
            frac = xp.linspace(0.0, 1.0, k)[None, :]
            values = xp.exp(xp.log(pos_min) + frac * (xp.log(top) - xp.log(pos_min)))
    return xp.clip(values, lo, hi)


def _candidates(xp: ModuleType, spec: FitSpec, t: Any, w: Any, n: int) -> list[Any]:
    """(n, P) parameter arrays: the request start first, then the grid product."""
    start = xp.tile(xp.asarray(spec.start)[None, :], (n, 1))
    gridded = [
        (i, _grid(xp, p, spec.lower[i], spec.upper[i], t, w))
        for i, p in enumerate(spec.model.parameters)
        if spec.free[i] and p.grid is not None and p.n_starts > 0
    ]
    out = [start]
    if not gridded:
        return out
    for combo in itertools.product(*(range(g.shape[1]) for _, g in gridded)):
        cand = start.copy()
        for (i, values), j in zip(gridded, combo, strict=True):
            cand[:, i] = values[:, j]
        out.append(cand)
    return out


def _project(
    xp: ModuleType, spec: FitSpec, t: Any, y: Any, w: Any, p: Any
) -> tuple[Any, Any, Any]:
    """Solve for the free linear parameters at `p`: (projected p, its cost, raw cost)."""
    lin = [
        i for i, q in enumerate(spec.model.parameters) if spec.free[i] and q.linear
    ]
    names = [spec.names[i] for i in lin]
    f, cols = spec.model.evaluate(xp, t, p, frozenset(names))
    r = (y - f) * w
    raw = 0.5 * xp.einsum("nt,nt->n", r, r)
    if not lin:
        return p, raw, raw
    J = xp.stack([xp.broadcast_to(cols[name], r.shape) * w for name in names])
    A = xp.einsum("int,jnt->nij", J, J)
    g = xp.einsum("int,nt->ni", J, r)
    ridge = 1e-12 * xp.diagonal(A, axis1=1, axis2=2).max(axis=1) + 1e-300
    A_r = A + ridge[:, None, None] * xp.eye(len(lin))
    delta = xp.linalg.solve(A_r, g[..., None])[..., 0]
    lo, hi = xp.asarray(spec.lower[lin]), xp.asarray(spec.upper[lin])
    new_lin = xp.clip(p[:, lin] + delta, lo, hi)
    d = new_lin - p[:, lin]
    d = xp.where(xp.isfinite(d), d, 0.0)
    cost = raw - xp.einsum("ni,ni->n", d, g) + 0.5 * xp.einsum("ni,nij,nj->n", d, A, d)
    q = p.copy()
    q[:, lin] = p[:, lin] + d
    return q, cost, raw


def choose_starts(
    xp: ModuleType, spec: FitSpec, t: Any, y: Any, w: Any, *, multistart: bool = True
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
    """
    n = y.shape[0]
    cands = _candidates(xp, spec, t, w, n) if multistart else _candidates_plain(xp, spec, n)
    if len(cands) > 1 and y.shape[1] > 2 * SCREEN_POINTS:
        # Ranking candidates needs the trace's shape, not every point: screen on a
        # strided subset, which makes the multi-start a fraction of one LM run.
        stride = -(-y.shape[1] // SCREEN_POINTS)
        t, y, w = t[:, ::stride], y[:, ::stride], w[:, ::stride]
    best_p = cands[0]
    best_cost = xp.full(n, xp.inf)
    for c, cand in enumerate(cands):
        q, cost, raw = _project(xp, spec, t, y, w, cand)
        if c == 0:
            raw = xp.where(xp.isfinite(raw), raw, xp.inf)
            best_cost = raw
        cost = xp.where(xp.isfinite(cost), cost, xp.inf)
        better = cost < best_cost
        best_p = xp.where(better[:, None], q, best_p)
        best_cost = xp.where(better, cost, best_cost)
    return best_p


def _candidates_plain(xp: ModuleType, spec: FitSpec, n: int) -> list[Any]:
    return [xp.tile(xp.asarray(spec.start)[None, :], (n, 1))]

