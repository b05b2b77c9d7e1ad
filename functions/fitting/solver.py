"""Batched, bounded Levenberg-Marquardt over many traces at once.

All traces of a chunk advance together with array operations: parameters are `(n, P)`,
data `(n, T)` with a 0/1 weight for missing points, Jacobian columns `(k, n, T)` for the
k free parameters. Each trace has its own damping λ, its own convergence test and its
own active bound set (projected LM: a parameter on a bound whose gradient points
outwards is held there for the step; trial points are clipped into the box). Finished
traces stop being updated and are compacted out of the working arrays.

The same code runs on numpy and on cupy (`common.arrays` backend switch).

References
----------
.. [1] J. J. Moré, "The Levenberg-Marquardt algorithm: implementation and theory",
   Numerical Analysis, Lecture Notes in Mathematics 630 (1978), doi:10.1007/BFb0067700
.. [2] H. B. Nielsen, "Damping parameter in Marquardt's method", IMM-REP-1999-05 (1999).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from common.errors import JobCancelled
from functions.fitting.spec import FitSpec
from functions.fitting.starts import choose_starts

# Status codes per trace; `REASONS` names them in results.
CONVERGED, MAX_ITER, TOO_FEW_POINTS, NOT_FINITE = 0, 1, 2, 3
REASONS = {
    CONVERGED: "converged",
    MAX_ITER: "max_iterations",
    TOO_FEW_POINTS: "too_few_points",
    NOT_FINITE: "model_not_finite",
}


@dataclass(frozen=True)
class SolverOptions:
    """Stopping rules (as in MINPACK/scipy: relative cost decrease `ftol`, relative step
    `xtol`, cosine between residual and Jacobian columns `gtol`) and batching.

    `working_set` is how many traces iterate together; finished traces are replaced by
    waiting ones, so a few slow traces never leave the arrays nearly empty. On the CPU a
    few hundred traces keep every temporary in cache.
    """

    max_iter: int = 200
    ftol: float = 1e-8
    xtol: float = 1e-8
    gtol: float = 1e-8
    multistart: bool = True
    working_set: int = 256


@dataclass
class SolveOutput:
    """Per-trace outputs (backend arrays): params (N, P), cost ½·SS_res (N,), JᵀJ over
    the free parameters at the optimum (N, k, k), iterations (N,), status (N,)."""

    params: Any
    cost: Any
    hess: Any
    iterations: Any
    status: Any


def solve(
    xp: ModuleType,
    spec: FitSpec,
    t: Any,
    y: Any,
    w: Any,
    options: SolverOptions,
    *,
    progress: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    workers: int = 1,
) -> SolveOutput:
    """Fit every row of `y`.

    Parameters
    ----------
    xp : module
        numpy or cupy.
    spec : FitSpec
    t : (N, T) or (1, T) array
        Times (finite everywhere; masked points carry weight 0).
    y : (N, T) array
        Data with missing points set to 0.
    w : (N, T) array
        1.0 for valid points, 0.0 for missing ones.
    options : SolverOptions
    progress : callable, optional
        Called with the number of traces finished so far, once per iteration.
    cancelled : callable, optional
        Checked once per iteration; when True, `JobCancelled` is raised.
    workers : int, optional
        Threads, each iterating its own working set over a share of the traces (CPU;
        numpy releases the GIL inside its kernels).

    Returns
    -------
    SolveOutput
    """
    n = y.shape[0]
    k = int(spec.free.sum())
    npts = w.sum(axis=1)
    status = xp.full(n, MAX_ITER, dtype=xp.int8)
    status[npts < max(k, 1)] = TOO_FEW_POINTS
    out = SolveOutput(
        params=xp.tile(xp.asarray(spec.start)[None, :], (n, 1)), cost=xp.full(n, xp.nan),
        hess=xp.full((n, k, k), xp.nan), iterations=xp.zeros(n, dtype=xp.int32),
        status=status,
    )
    queue = np.flatnonzero(_host(xp, status) == MAX_ITER)
    streams = [_Stream(xp, spec, t, y, w, out, options) for _ in range(max(workers, 1))]
    parts = np.array_split(queue, len(streams))
    report = None
    if progress is not None:

        def report(_: int) -> None:
            progress(sum(st.finished for st in streams))

    def run(i: int) -> None:
        with np.errstate(all="ignore"):  # thread-local: set in each worker thread
            streams[i].run(parts[i], report, cancelled)

    if len(streams) == 1:
        run(0)
    else:
        with ThreadPoolExecutor(max_workers=len(streams)) as pool:
            list(pool.map(run, range(len(streams))))
    return out


def _host(xp: ModuleType, a: Any) -> np.ndarray:
    return a.get() if xp is not np else a  # type: ignore[no-any-return]


class _State:
    """Working arrays of the traces being iterated (their rows of the input in `idx`)."""

    FIELDS = ("t", "y", "w", "p", "idx", "lam", "nu", "it", "D", "done", "r", "cost", "J")

    def __init__(self, **arrays: Any) -> None:
        self.__dict__.update(arrays)

    @property
    def size(self) -> int:
        return int(self.idx.shape[0])

    def take(self, xp: ModuleType, keep: Any) -> None:
        for name in self.FIELDS:
            value = getattr(self, name)
            if name == "J":
                setattr(self, name, value[:, keep])
            elif not (name == "t" and value.shape[0] == 1):
                setattr(self, name, value[keep])

    def extend(self, xp: ModuleType, other: _State) -> None:
        for name in self.FIELDS:
            a, b = getattr(self, name), getattr(other, name)
            if name == "J":
                setattr(self, name, xp.concatenate([a, b], axis=1))
            elif not (name == "t" and a.shape[0] == 1):
                setattr(self, name, xp.concatenate([a, b]))


class _Stream:
    """One Levenberg-Marquardt working set fed from a queue of trace rows."""

    def __init__(
        self, xp: ModuleType, spec: FitSpec, t: Any, y: Any, w: Any, out: SolveOutput,
        opt: SolverOptions,
    ) -> None:
        self.xp, self.spec, self.t, self.y, self.w, self.out, self.opt = xp, spec, t, y, w, out, opt
        self.free = np.flatnonzero(spec.free)
        self.lo = xp.asarray(spec.lower[self.free])
        self.hi = xp.asarray(spec.upper[self.free])
        self.finished = 0

    def run(
        self, queue: np.ndarray, progress: Callable[[int], None] | None,
        cancelled: Callable[[], bool] | None,
    ) -> None:
        size = max(self.opt.working_set, 1)
        pos, s = 0, None
        while True:
            current = 0 if s is None else s.size
            if pos < queue.size and current <= 0.75 * size:
                rows = queue[pos : pos + size - current]
                pos += rows.size
                new = self._enter(rows)
                if s is None:
                    s = new
                else:
                    s.extend(self.xp, new)
            if s is None or s.size == 0:
                if pos >= queue.size:
                    return
                continue
            if cancelled is not None and cancelled():
                raise JobCancelled()
            self._iterate(s)
            if progress is not None:
                progress(self.finished)

    def _enter(self, rows_host: np.ndarray) -> _State:
        """Starting points and first evaluation of new traces."""
        xp = self.xp
        rows = xp.asarray(rows_host)
        t = self.t if self.t.shape[0] == 1 else self.t[rows]
        y, w = self.y[rows], self.w[rows]
        p = choose_starts(xp, self.spec, t, y, w, multistart=self.opt.multistart)
        n, k = rows.shape[0], self.free.size
        s = _State(t=t, y=y, w=w, p=p, idx=rows, lam=xp.full(n, 1e-3), nu=xp.full(n, 2.0),
                   it=xp.ones(n, dtype=xp.int32), D=xp.zeros((n, k)),
                   done=xp.zeros(n, dtype=bool))
        s.r, s.cost, s.J = self._evaluate(s, p)
        bad = ~xp.isfinite(s.cost)
        if bool(bad.any()):
            self._finish(s, bad, None, NOT_FINITE)
            s.take(xp, ~bad)
        return s

    def _evaluate(self, s: _State, p: Any) -> tuple[Any, Any, Any]:
        """Weighted residuals, cost and weighted Jacobian columns (k, n, T) at `p`."""
        xp, names = self.xp, self.spec.free_names
        f, cols = self.spec.model.evaluate(xp, s.t, p, frozenset(names))
        r = (s.y - f) * s.w
        cost = 0.5 * xp.einsum("nt,nt->n", r, r)
        J = xp.empty((len(names), *r.shape))
        for i, name in enumerate(names):
            xp.multiply(cols[name], s.w, out=J[i])
        return r, cost, J

    def _normal(self, J: Any, r: Any) -> tuple[Any, Any]:
        """JᵀJ (n, k, k) and Jᵀr (n, k), using the symmetry."""
        xp = self.xp
        k, n = J.shape[0], J.shape[1]
        A = xp.empty((n, k, k))
        for i in range(k):
            for j in range(i, k):
                A[:, i, j] = xp.einsum("nt,nt->n", J[i], J[j])
                if j != i:
                    A[:, j, i] = A[:, i, j]
        g = xp.einsum("knt,nt->nk", J, r)
        return A, g

    def _iterate(self, s: _State) -> None:
        xp, opt, lo, hi, free = self.xp, self.opt, self.lo, self.hi, self.free
        A, g = self._normal(s.J, s.r)
        diag = xp.diagonal(A, axis1=1, axis2=2)
        pf = s.p[:, free]
        # A parameter on a bound whose gradient points outwards is held for this step.
        blocked = ((pf <= lo) & (g < 0)) | ((pf >= hi) & (g > 0))
        g_eff = xp.where(blocked, 0.0, g)
        # Cosine between the residual and each Jacobian column (MINPACK's gtol test).
        cosine = xp.abs(g_eff) / (xp.sqrt(diag) * xp.sqrt(2.0 * s.cost)[:, None] + 1e-300)
        converged = s.done | (cosine.max(axis=1) <= opt.gtol) | (s.cost == 0) | (s.lam > 1e16)
        hit_max = ~converged & (s.it >= opt.max_iter)
        stop = converged | hit_max
        if bool(stop.any()):
            self._finish(s, converged, A, CONVERGED)
            self._finish(s, hit_max, A, MAX_ITER)
            keep = ~stop
            s.take(xp, keep)
            A, g_eff, blocked, diag, pf = A[keep], g_eff[keep], blocked[keep], diag[keep], pf[keep]
            if s.size == 0:
                return
        # Damped step; Moré's scaling keeps the largest diagonal seen per parameter.
        s.D = xp.maximum(s.D, xp.where(diag > 0, diag, 1.0))
        off = blocked[:, :, None] | blocked[:, None, :]
        eye = xp.eye(free.size, dtype=bool)
        M = xp.where(off, 0.0, A) + eye * (s.lam[:, None] * s.D + blocked)[:, :, None]
        step = xp.linalg.solve(M, g_eff[..., None])[..., 0]
        trial_f = xp.clip(pf + step, lo, hi)
        step = trial_f - pf
        trial = s.p.copy()
        trial[:, free] = trial_f
        pred = xp.einsum("nk,nk->n", step, g_eff) - 0.5 * xp.einsum(
            "nk,nkj,nj->n", step, A, step
        )
        r_new, cost_new, J_new = self._evaluate(s, trial)
        actual = s.cost - cost_new
        rho = actual / xp.where(pred > 0, pred, 1.0)
        # A clipped step can leave the model's descent cone (pred <= 0): it is rejected
        # like any other, and a larger λ turns the next one towards the gradient.
        accept = xp.isfinite(cost_new) & (pred > 0) & (rho > 1e-4)
        # Small changes only mean convergence when the step was a trusted, lightly
        # damped Gauss-Newton step; a heavily damped step is short for other reasons.
        trusted = accept & (rho > 0.25) & (s.lam <= 1.0)
        small_f = trusted & (actual <= opt.ftol * s.cost)
        small_x = trusted & (xp.abs(step) <= opt.xtol * (opt.xtol + xp.abs(pf))).all(axis=1)
        s.done = small_f | small_x
        s.p = xp.where(accept[:, None], trial, s.p)
        s.r = xp.where(accept[:, None], r_new, s.r)
        s.cost = xp.where(accept, cost_new, s.cost)
        s.J = xp.where(accept[None, :, None], J_new, s.J)
        shrink = xp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
        s.lam = xp.where(accept, s.lam * shrink, s.lam * s.nu)
        s.nu = xp.where(accept, 2.0, 2.0 * s.nu)
        s.it = s.it + 1

    def _finish(self, s: _State, which: Any, A: Any, code: int) -> None:
        out = self.out
        rows = s.idx[which]
        out.params[rows] = s.p[which]
        out.cost[rows] = s.cost[which]
        out.iterations[rows] = s.it[which]
        out.status[rows] = code
        if A is not None:
            out.hess[rows] = A[which]
        self.finished += int(rows.shape[0])
