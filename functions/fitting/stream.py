"""One stream of the batched solver: a working set fed from a queue of trace rows.

Traces enter with their starting points and first evaluation, iterate together
(`lm_step`), and leave when they stop: their results are stored in the output, and their
slots are refilled with waiting traces, or, once the queue is empty, compacted away.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from common.errors import JobCancelled
from functions.fitting.fused import fused_normal_equations
from functions.fitting.lm_step import Proposal, bound, propose, settled, stopped, update
from functions.fitting.normal_equations import evaluate, evaluate_live
from functions.fitting.solver_types import (
    CONVERGED,
    MAX_ITER,
    NOT_FINITE,
    SolveOutput,
    SolverOptions,
)
from functions.fitting.spec import FitSpec
from functions.fitting.starts import SharedScreen, choose_starts, pick_shared, shared_screen
from functions.fitting.working_set import WorkingSet

COMPACT_BELOW = 0.8  # compact the working set when fewer than this share still iterate
REFILL_BELOW = 0.75  # refill the working set once fewer than this share still iterate


class Stream:
    """One Levenberg-Marquardt working set fed from a queue of (virtual) trace rows.

    With `m` > 1 every trace is fitted from its m best start candidates as m virtual
    rows (trace i -> rows i*m .. i*m+m-1); `solve` keeps the best run.
    """

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
        """Iterate until every row of `queue` has stopped; refill while rows wait."""
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

    # -- entering ---------------------------------------------------------------------

    def _enter(self, rows_host: np.ndarray) -> WorkingSet:
        """Starting points and first evaluation of new (virtual) rows."""
        xp, m = self.xp, self.m
        if m == 1:  # rows arrive unique and sorted (a share of a sorted queue)
            uniq, inverse = rows_host, np.arange(rows_host.size)
        else:
            uniq, inverse = np.unique(rows_host // m, return_inverse=True)
        real = xp.asarray(uniq)
        t = self.t if self.t.shape[0] == 1 else self.t[real]
        y, w = self.y[real], self.w[real]
        starts, screen, cand = self._starts(t, y, w, real)
        inv = xp.asarray(inverse)
        which = xp.asarray(rows_host % m)
        p = starts[which, inv]
        if m > 1:  # a trace's m runs are m rows
            t = t if t.shape[0] == 1 else t[inv]
            y, w = y[inv], w[inv]
        s = self._new_set(t, y, w, p, xp.asarray(rows_host))
        if screen is not None and self.fused is None:
            # the model's values and Jacobian at the starts follow from the candidates'
            s.cost, s.A, s.g = screen.normals.normal_equations(xp, y, cand[which, inv], p)
        else:
            s.cost, s.A, s.g = self._evaluate(s, p)
        bad = ~xp.isfinite(s.cost)
        if bool(bad.any()):
            self._finish(s, bad, NOT_FINITE, hess=False)
            s.take(xp, ~bad)
        return s

    def _starts(self, t: Any, y: Any, w: Any, real: Any) -> tuple[Any, SharedScreen | None, Any]:
        """(m, n, P) starting points of the traces `real`; with the shared screen that
        chose them and each start's candidate in it (m, n), when one did."""
        xp, spec, m = self.xp, self.spec, self.m
        if self.starts is not None:
            return self.starts[real][None], None, None
        if self.opt.multistart and t.shape[0] == 1 and bool(w.all()):
            # One time axis and no missing points: every trace has the same candidates.
            if self.screen is None:
                self.screen = shared_screen(xp, spec, t)
            starts, cand = pick_shared(xp, spec, self.screen, y, keep=m)
            return starts, self.screen, cand
        starts = choose_starts(xp, spec, t, y, w, multistart=self.opt.multistart, keep=m)
        return starts, None, None

    def _new_set(self, t: Any, y: Any, w: Any, p: Any, rows: Any) -> WorkingSet:
        """Rows at their starting points `p`, before their first evaluation."""
        xp = self.xp
        n = rows.shape[0]
        lo, hi = self._piece_bounds(t, w, p)
        return WorkingSet(
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
            done=xp.zeros(n, dtype=bool),
            live=xp.ones(n, dtype=bool),
            dense=bool(w.all()),
        )

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

    # -- iterating --------------------------------------------------------------------

    def _evaluate(self, s: WorkingSet, p: Any) -> tuple[Any, Any, Any]:
        """Cost, JᵀJ and Jᵀr of the rows of `s` at `p` (`normal_equations.evaluate`)."""
        return evaluate(self.xp, self.spec, self.fused, s, p)

    def _iterate(self, s: WorkingSet) -> None:
        """One Levenberg-Marquardt step of every live row; rows that stop leave twice:
        before the step is bounded, and before it is evaluated."""
        xp, opt = self.xp, self.opt
        first = propose(xp, s, self.free)
        converged, hit_max = stopped(xp, s, first, opt)
        proposal = self._retire(s, first, (converged, CONVERGED), (hit_max, MAX_ITER))
        if proposal is None:
            return
        bound(xp, s, self.free, proposal)
        proposal = self._retire(s, proposal, (settled(s, proposal, opt), CONVERGED))
        if proposal is None:
            return
        evaluated = evaluate_live(xp, self.spec, self.fused, s, proposal.trial)
        update(xp, s, proposal, evaluated, opt)

    def _retire(
        self, s: WorkingSet, proposal: Proposal, *stops: tuple[Any, int]
    ) -> Proposal | None:
        """Store the rows each `(mask, status code)` of `stops` names and stop iterating
        them; returns the proposal for the rows that go on (None when no row does)."""
        stop = stops[0][0]
        for mask, _ in stops[1:]:
            stop = stop | mask
        if not bool(stop.any()):
            return proposal
        for mask, code in stops:
            self._finish(s, mask, code)
        s.live &= ~stop
        if s.live_count == 0:
            return None
        # Finished rows ride along (their results are stored) until they are a sizeable
        # share: compacting copies every working array.
        keep = s.compact(self.xp, below=COMPACT_BELOW) if self.draining else None
        return proposal if keep is None else proposal.take(keep)

    def _finish(self, s: WorkingSet, which: Any, code: int, *, hess: bool = True) -> None:
        """Store the results of rows `which` with status `code` (JᵀJ too, if `hess`)."""
        out = self.out
        rows = s.idx[which]
        out.params[rows] = s.p[which]
        out.cost[rows] = s.cost[which]
        out.iterations[rows] = s.it[which]
        out.status[rows] = code
        if hess:
            out.hess[rows] = s.A[which]
        self.finished += int(rows.shape[0])
