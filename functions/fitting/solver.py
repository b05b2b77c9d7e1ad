"""Batched, bounded Levenberg-Marquardt over many traces at once.

A working set of traces advances together with array operations: parameters are
`(n, P)`, data `(n, T)` with a 0/1 weight for missing points, Jacobian columns
`(k, n, T)` for the k free parameters, normal equations solved as a batch of `(k, k)`
systems. Each trace has its own damping λ (Nielsen's update, Marquardt scaling), its own
convergence test and its own active bound set: a parameter on a bound is held there
when the damped Gauss-Newton step pushes it outwards, and components that would leave
the box stop on it while the others are re-solved. Finished traces are stored, then
compacted out and replaced by waiting ones.

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

from common.arrays import to_host
from common.errors import JobCancelled
from functions.fitting.fused import fused_normal_equations
from functions.fitting.kernels import as_terms
from functions.fitting.linalg import solve_spd
from functions.fitting.spec import FitSpec
from functions.fitting.starts import SharedScreen, choose_starts, pick_shared, shared_screen

COMPACT_BELOW = 0.8  # compact the working set when fewer than this share still iterate
REFILL_BELOW = 0.75  # refill the working set once fewer than this share still iterate
LIVE_GATHER = 0.9  # evaluate only the live rows when fewer than this share still iterate

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

    `lm_starts` is how many of the best start candidates each trace is solved from
    (None: the model's `lm_starts`); the best converged run is kept.
    `working_set` is how many traces iterate together; finished traces are replaced by
    waiting ones, so a few slow traces never leave the arrays nearly empty. On the CPU a
    thousand traces keep Python overhead small per array operation.
    """

    max_iter: int = 200
    ftol: float = 1e-8
    xtol: float = 1e-8
    gtol: float = 1e-8
    multistart: bool = True
    lm_starts: int | None = None
    working_set: int = 1024


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
    starts: Any | None = None,
    rows: np.ndarray | None = None,
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
    starts : (N, P) array, optional
        Given starting points (no multi-start).
    rows : (M,) int ndarray, optional
        Fit only these rows; the others keep the start and status `MAX_ITER`.

    Returns
    -------
    SolveOutput
    """
    n = y.shape[0]
    k = int(spec.free.sum())
    multi = options.multistart and starts is None
    m = max(options.lm_starts or spec.model.lm_starts, 1) if multi else 1
    npts = w.sum(axis=1)
    status = xp.full(n * m, MAX_ITER, dtype=xp.int8)
    status[xp.repeat(npts < max(k, 1), m)] = TOO_FEW_POINTS
    out = SolveOutput(
        params=xp.tile(xp.asarray(spec.start)[None, :], (n * m, 1)),
        cost=xp.full(n * m, xp.nan),
        hess=xp.full((n * m, k, k), xp.nan),
        iterations=xp.zeros(n * m, dtype=xp.int32),
        status=status,
    )
    # With m > 1 every trace is fitted from its m best start candidates as m virtual
    # rows (trace i -> rows i*m .. i*m+m-1), and the best converged run is kept.
    queue = np.flatnonzero(to_host(xp, status) == MAX_ITER)
    if rows is not None:
        queue = np.intersect1d(queue, rows)
    streams = [_Stream(xp, spec, t, y, w, out, options, m, starts) for _ in range(max(workers, 1))]
    parts = np.array_split(queue, len(streams))
    report = None
    if progress is not None:

        def report(_: int) -> None:
            progress(sum(st.finished for st in streams) // m)

    def run(i: int) -> None:
        with np.errstate(all="ignore"):  # thread-local: set in each worker thread
            streams[i].run(parts[i], report, cancelled)

    if len(streams) == 1:
        run(0)
    else:
        with ThreadPoolExecutor(max_workers=len(streams)) as pool:
            list(pool.map(run, range(len(streams))))
    return out if m == 1 else _best_of(xp, out, n, m)


def _best_of(xp: ModuleType, out: SolveOutput, n: int, m: int) -> SolveOutput:
    """Per trace, the converged run with the lowest cost (else the lowest cost)."""
    cost = out.cost.reshape(n, m)
    ok = out.status.reshape(n, m) == CONVERGED
    rank = xp.where(ok, cost, xp.inf)
    rank = xp.where(ok.any(axis=1, keepdims=True), rank, xp.where(xp.isnan(cost), xp.inf, cost))
    pick = xp.arange(n) * m + xp.argmin(rank, axis=1)
    return SolveOutput(
        params=out.params[pick],
        cost=out.cost[pick],
        hess=out.hess[pick],
        iterations=out.iterations.reshape(n, m).sum(axis=1),
        status=out.status[pick],
    )


class _State:
    """Working arrays of the traces being iterated (their rows of the input in `idx`).

    Rows are slots: a finished row stays (not `live`) until the slot is refilled with a
    waiting trace or the set is compacted at the end, so a refill copies only new rows.
    """

    FIELDS = (
        "t",
        "y",
        "w",
        "npts",
        "p",
        "idx",
        "lo",
        "hi",
        "lam",
        "nu",
        "it",
        "D",
        "done",
        "live",
        "cost",
        "A",
        "g",
    )
    t: Any  # (n, T) or (1, T) times
    y: Any  # (n, T) data, 0 where missing
    w: Any  # (n, T) weights
    npts: Any  # (n,) valid points (Σw)
    p: Any  # (n, P) parameters
    idx: Any  # (n,) rows of the output
    lo: Any  # (n, k) bounds of the free parameters
    hi: Any
    lam: Any  # (n,) damping
    nu: Any  # (n,) damping growth
    it: Any  # (n,) evaluations so far
    D: Any  # (n, k) scaling
    done: Any  # (n,) converged at the last step
    live: Any  # (n,) still iterating (finished rows stay until refilled or compacted)
    cost: Any  # (n,) ½·SS_res
    A: Any  # (n, k, k) JᵀJ at p (weighted Jacobian of the free parameters)
    g: Any  # (n, k) Jᵀr
    dense: bool  # no missing points in any row: weights need not be applied

    def __init__(self, **arrays: Any) -> None:
        self.__dict__.update(arrays)

    @property
    def size(self) -> int:
        return int(self.idx.shape[0])

    @property
    def live_count(self) -> int:
        return int(self.live.sum())

    def _per_row(self) -> list[str]:
        """The fields with a row per trace (all but a time axis shared by every row)."""
        return [n for n in self.FIELDS if not (n == "t" and self.t.shape[0] == 1)]

    def compact(self, xp: ModuleType, *, below: float = 1.0) -> Any:
        """Drop finished rows when the live fraction is below `below`; returns the kept
        mask (for the caller's own per-row arrays) or None when nothing was dropped."""
        live = self.live
        count = self.live_count
        if count == self.size or count > below * self.size:
            return None
        self.take(xp, live)
        return live

    def take(self, xp: ModuleType, keep: Any) -> None:
        for name in self._per_row():
            setattr(self, name, getattr(self, name)[keep])

    def refill(self, xp: ModuleType, new: _State) -> None:
        """Put the rows of `new` into finished slots (appending those that do not fit)."""
        slots = xp.flatnonzero(~self.live)[: new.size]
        fit = int(slots.shape[0])

        def put(mine: Any, theirs: Any) -> Any:
            mine[slots] = theirs[:fit]
            return mine if fit == new.size else xp.concatenate([mine, theirs[fit:]])

        for name in self._per_row():
            setattr(self, name, put(getattr(self, name), getattr(new, name)))
        self.dense = self.dense and new.dense


class _Stream:
    """One Levenberg-Marquardt working set fed from a queue of trace rows."""

    def __init__(
        self,
        xp: ModuleType,
        spec: FitSpec,
        t: Any,
        y: Any,
        w: Any,
        out: SolveOutput,
        opt: SolverOptions,
        m: int = 1,
        starts: Any | None = None,
    ) -> None:
        self.xp, self.spec, self.t, self.y, self.w, self.out, self.opt = xp, spec, t, y, w, out, opt
        self.m, self.starts = m, starts
        self.free = np.flatnonzero(spec.free)
        self.constants = spec.constants
        self.fused = fused_normal_equations(xp, spec)
        self.screen: SharedScreen | None = None  # made at the first batch on a shared time axis
        self.lo = xp.asarray(spec.lower[self.free])
        self.hi = xp.asarray(spec.upper[self.free])
        self.finished = 0
        self.draining = False  # no traces left to enter: compact instead of refilling

    def run(
        self,
        queue: np.ndarray,
        progress: Callable[[int], None] | None,
        cancelled: Callable[[], bool] | None,
    ) -> None:
        size = max(self.opt.working_set, 1)
        pos, s = 0, None
        while True:
            current = 0 if s is None else s.live_count
            if pos < queue.size and current <= REFILL_BELOW * size:
                rows = queue[pos : pos + size - current]
                pos += rows.size
                self.draining = pos >= queue.size
                new = self._enter(rows)
                if s is None:
                    s = new
                elif new.size:
                    s.refill(self.xp, new)
            if s is None or s.live_count == 0:
                if pos >= queue.size:
                    return
                continue
            if cancelled is not None and cancelled():
                raise JobCancelled()
            self._iterate(s)
            if progress is not None:
                progress(self.finished)

    def _enter(self, rows_host: np.ndarray) -> _State:
        """Starting points and first evaluation of new (virtual) rows."""
        xp, m = self.xp, self.m
        if m == 1:  # rows arrive unique and sorted (a share of a sorted queue)
            uniq, inverse = rows_host, np.arange(rows_host.size)
        else:
            uniq, inverse = np.unique(rows_host // m, return_inverse=True)
        real = xp.asarray(uniq)
        t = self.t if self.t.shape[0] == 1 else self.t[real]
        y, w = self.y[real], self.w[real]
        screen: SharedScreen | None = None  # the shared screen, when it chose the starts
        cand: Any = None  # (m, n) each start's candidate in it
        if self.starts is not None:
            starts = self.starts[real][None]
        elif self.opt.multistart and t.shape[0] == 1 and bool(w.all()):
            # One time axis and no missing points: every trace has the same candidates.
            if self.screen is None:
                self.screen = shared_screen(xp, self.spec, t)
            screen = self.screen
            starts, cand = pick_shared(xp, self.spec, screen, y, keep=m)
        else:
            starts = choose_starts(xp, self.spec, t, y, w, multistart=self.opt.multistart, keep=m)
        inv = xp.asarray(inverse)
        which = xp.asarray(rows_host % m)
        p = starts[which, inv]
        if m > 1:  # a trace's m runs are m rows
            t = t if t.shape[0] == 1 else t[inv]
            y, w = y[inv], w[inv]
        rows = xp.asarray(rows_host)
        n, k = rows.shape[0], self.free.size
        lo, hi = self._piece_bounds(t, w, p)
        s = _State(
            t=t,
            y=y,
            w=w,
            npts=w.sum(axis=1),
            p=p,
            idx=rows,
            lo=lo,
            hi=hi,
            lam=xp.full(n, 1e-3),
            nu=xp.full(n, 2.0),
            it=xp.ones(n, dtype=xp.int32),
            D=xp.zeros((n, k)),
            done=xp.zeros(n, dtype=bool),
            live=xp.ones(n, dtype=bool),
            dense=bool(w.all()),
        )
        if screen is not None and self.fused is None:
            # the model's values and Jacobian at the starts follow from the candidates'
            s.cost, s.A, s.g = screen.normals.normal_equations(xp, y, cand[which, inv], p)
        else:
            s.cost, s.A, s.g = self._evaluate(s, p)
        bad = ~xp.isfinite(s.cost)
        if bool(bad.any()):
            self._finish(s, bad, None, NOT_FINITE)
            s.take(xp, ~bad)
        return s

    def _piece_bounds(self, t: Any, w: Any, p: Any) -> tuple[Any, Any]:
        """Per-row bounds (n, k). A parameter with a "frames" start grid places a step
        in the model (an onset); the cost jumps whenever it crosses a sample time, so
        each run keeps it between the samples around its start, where the cost is
        smooth (the multi-start visits the other intervals)."""
        xp, n = self.xp, p.shape[0]
        lo = xp.tile(self.lo[None, :], (n, 1))
        hi = xp.tile(self.hi[None, :], (n, 1))
        params = self.spec.model.parameters
        t_full = xp.broadcast_to(t, w.shape)
        valid = w > 0
        for j, col in enumerate(self.free):
            if params[col].grid != "frames":
                continue
            start = p[:, col : col + 1]
            below = xp.where(valid & (t_full <= start), t_full, -xp.inf).max(axis=1)
            above = xp.where(valid & (t_full > start), t_full, xp.inf).min(axis=1)
            # [below, above): at `above` itself the next sample switches off
            lo[:, j] = xp.maximum(lo[:, j], below)
            hi[:, j] = xp.minimum(hi[:, j], above - 1e-9 * (above - below))
        return lo, hi

    def _evaluate(self, s: _State, p: Any) -> tuple[Any, Any, Any]:
        """Cost ½·SS_res (n,), JᵀJ (n, k, k) and Jᵀr (n, k) of the weighted residuals at
        `p`: everything an iteration needs, so no (n, T) array outlives the evaluation.

        A model with a fused kernel for this backend (`fused.fused_normal_equations`)
        computes them in one pass over the data; otherwise they come from the kernel's
        columns.
        """
        if self.fused is not None:
            return self.fused(s.t, s.y, None if s.dense else s.w, p)  # type: ignore[no-any-return]
        xp, names = self.xp, self.spec.free_names
        f, cols = self.spec.model.evaluate_terms(xp, s.t, p, frozenset(names), self.constants)
        r = s.y - f
        if not s.dense:
            r *= s.w
        cost = 0.5 * xp.einsum("nt,nt->n", r, r)
        return (cost, *self._normal(s, r, cols))

    def _evaluate_live(self, s: _State, p: Any) -> tuple[Any, Any, Any]:
        """`_evaluate` at `p` for the live rows; finished rows riding along in the
        working set get a NaN cost (a rejected step) and keep their JᵀJ and Jᵀr.

        Up to a quarter of the rows wait there for a refill; skipping them saves more
        than gathering the live rows' data costs once they are a tenth of the set.
        """
        xp = self.xp
        live = s.live_count
        if live >= LIVE_GATHER * s.size:
            return self._evaluate(s, p)
        rows = xp.flatnonzero(s.live)
        sub = _State(
            t=s.t if s.t.shape[0] == 1 else s.t[rows],
            y=s.y[rows],
            w=s.w if s.dense else s.w[rows],
            npts=s.npts[rows],
            dense=s.dense,
        )
        cost_sub, A_sub, g_sub = self._evaluate(sub, p[rows])
        cost, A, g = xp.full(s.size, xp.nan), s.A.copy(), s.g.copy()
        cost[rows], A[rows], g[rows] = cost_sub, A_sub, g_sub
        return cost, A, g

    def _normal(self, s: _State, r: Any, cols: dict[str, Any]) -> tuple[Any, Any]:
        """JᵀJ (n, k, k) and Jᵀr (n, k) from the Jacobian columns as the kernel gives
        them: a column given as c1·X + c2·Y (`kernels.Terms`: per-trace coefficients
        times shared arrays) is never formed; the products of X and Y are combined.

        A basis array of shape `(n, 1)` (an offset's column: constant in t) stays that
        size and is reduced with sums: with 0/1 weights a constant array c·w contributes
        c·Σ(array) to a product with a weighted array, and c_i·c_j·Σw to a product of
        two constant ones. Without missing points no weights apply.
        """
        xp, names, n = self.xp, self.spec.free_names, r.shape[0]
        B: list[Any] = []
        seen: dict[int, int] = {}
        entries = []
        for i, name in enumerate(names):
            for coef, array in as_terms(cols[name]):
                if id(array) not in seen:
                    seen[id(array)] = len(B)
                    B.append(self._weighted(s, array, r.shape))
                entries.append((i, seen[id(array)], coef))
        C = xp.zeros((n, len(names), len(B)))  # column i = Σ_a C[:, i, a]·B[a]
        for i, a, coef in entries:
            C[:, i, a] += xp.broadcast_to(xp.asarray(coef, dtype=float), (n, 1))[:, 0]
        m = len(B)
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
        A = (C @ G) @ C.transpose(0, 2, 1)  # C G Cᵀ per trace (a 3-operand einsum is 5x slower)
        g = xp.einsum("nia,na->ni", C, Gr)
        return A, g

    def _weighted(self, s: _State, array: Any, shape: tuple[int, int]) -> Any:
        xp = self.xp
        if array.shape == shape:
            return array if s.dense else array * s.w
        if array.shape[1] == 1:
            return xp.broadcast_to(array, (shape[0], 1)).copy()
        return xp.broadcast_to(array, shape) * s.w

    def _iterate(self, s: _State) -> None:
        xp, opt, lo, hi, free = self.xp, self.opt, s.lo, s.hi, self.free
        A, g = s.A, s.g
        diag = xp.diagonal(A, axis1=1, axis2=2)
        pf = s.p[:, free]
        # Marquardt scaling by the current diagonal, floored for empty columns.
        top = diag.max(axis=1, keepdims=True)
        s.D = xp.maximum(diag, xp.where(top > 0, 1e-12 * top, 1.0))
        damped = A + xp.eye(free.size) * (s.lam[:, None] * s.D)[:, :, None]
        step = solve_spd(xp, damped, g)
        # A parameter on a bound is held there only when the damped Gauss-Newton step
        # pushes it outwards. (Holding it whenever the gradient points outwards stalls
        # at saddles such as an amplitude at 0 whose rate then has no gradient.)
        blocked = ((pf <= lo) & (step < 0)) | ((pf >= hi) & (step > 0))
        g_eff = xp.where(blocked, 0.0, g)
        # Cosine between the residual and each Jacobian column (MINPACK's gtol test).
        cosine = xp.abs(g_eff) / (xp.sqrt(diag) * xp.sqrt(2.0 * s.cost)[:, None] + 1e-300)
        converged = s.done | (cosine.max(axis=1) <= opt.gtol) | (s.cost == 0) | (s.lam > 1e16)
        converged &= s.live
        hit_max = ~converged & (s.it >= opt.max_iter) & s.live
        stop = converged | hit_max
        if bool(stop.any()):
            self._finish(s, converged, A, CONVERGED)
            self._finish(s, hit_max, A, MAX_ITER)
            s.live &= ~stop
            if s.live_count == 0:
                return
            # Finished rows ride along (their results are stored) until they are a
            # sizeable share: compacting copies every working array.
            keep = s.compact(xp, below=COMPACT_BELOW) if self.draining else None
            if keep is not None:
                A, g, g_eff, blocked, damped = (
                    A[keep],
                    g[keep],
                    g_eff[keep],
                    blocked[keep],
                    damped[keep],
                )
                pf, step = pf[keep], step[keep]
                lo, hi = s.lo, s.hi
        if bool(blocked.any()):
            step = self._held_step(damped, g, step, blocked, xp.zeros_like(step))
        # Components that would leave the box stop on it; the others are re-solved with
        # them held there, so the step stays a descent step of the damped model.
        leaving = ((pf + step < lo) | (pf + step > hi)) & ~blocked
        if bool(leaving.any()):
            to_bound = xp.where(leaving, xp.clip(pf + step, lo, hi) - pf, 0.0)
            step = self._held_step(damped, g, step, blocked | leaving, to_bound)
        trial_f = xp.clip(pf + step, lo, hi)
        step = trial_f - pf
        trial = s.p.copy()
        trial[:, free] = trial_f
        pred = xp.einsum("nk,nk->n", step, g_eff) - 0.5 * xp.einsum("nk,nkj,nj->n", step, A, step)
        # A lightly damped step that promises less than ftol of the cost: the point is
        # converged (MINPACK's predicted-reduction test); skip evaluating the step.
        settled = (s.lam <= 1e-2) & (pred >= 0) & (pred <= opt.ftol * s.cost) & s.live
        if bool(settled.any()):
            self._finish(s, settled, A, CONVERGED)
            s.live &= ~settled
            if s.live_count == 0:
                return
            keep = s.compact(xp, below=COMPACT_BELOW) if self.draining else None
            if keep is not None:
                A, g_eff, pf, step, trial, pred = (
                    A[keep],
                    g_eff[keep],
                    pf[keep],
                    step[keep],
                    trial[keep],
                    pred[keep],
                )
                lo, hi = s.lo, s.hi
        cost_new, A_new, g_new = self._evaluate_live(s, trial)
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
        s.cost = xp.where(accept, cost_new, s.cost)
        s.A = xp.where(accept[:, None, None], A_new, s.A)
        s.g = xp.where(accept[:, None], g_new, s.g)
        shrink = xp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
        s.lam = xp.maximum(xp.where(accept, s.lam * shrink, s.lam * s.nu), 1e-15)
        s.nu = xp.where(accept, 2.0, 2.0 * s.nu)
        s.it = s.it + 1

    def _held_step(self, M: Any, g: Any, step: Any, held: Any, fixed: Any) -> Any:
        """Re-solve `M s = g` with the `held` components of s fixed to `fixed` (rows
        without held components keep `step`). Only the rows with held components are
        solved again: usually a few of the working set."""
        xp = self.xp
        rows = xp.flatnonzero(held.any(axis=1))
        M, g, held, fixed = M[rows], g[rows], held[rows], fixed[rows]
        eye = xp.eye(M.shape[1], dtype=bool)
        rhs = xp.where(held, fixed, g - xp.einsum("nij,nj->ni", M, fixed))
        off = held[:, :, None] | held[:, None, :]
        reduced = xp.where(off, 0.0, M) + eye * held[:, :, None]
        out = step.copy()
        out[rows] = solve_spd(xp, reduced, rhs)
        return out

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
