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
    Box,
    SolveOutput,
    SolverOptions,
)
from functions.fitting.spec import FitSpec
from functions.fitting.starts import SharedScreen, pick_shared, screen_each
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
        screen: SharedScreen | None = None,
        shared_t: bool = True,
        box: Box | None = None,
    ) -> None:
        self.xp, self.spec, self.t, self.y, self.w, self.out, self.opt = xp, spec, t, y, w, out, opt
        self.m, self.starts, self.box = m, starts, box
        self.free = np.flatnonzero(spec.free)
        self.fused = fused_normal_equations(xp, spec)
        self.shared_t = shared_t  # `t` (1, T) is every trace's axis (decided by the solve)
        self.screen = screen  # the solve's shared start screen, if it has one
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
        t = self.t if self.shared_t else self.t[real]
        y, w = self.y[real], self.w[real]
        box = None if self.box is None else self.box.rows(real)
        starts, cand = self._starts(t, y, w, real, box)
        inv = xp.asarray(inverse)
        which = xp.asarray(rows_host % m)
        p = starts[which, inv]
        cand = None if cand is None else cand[which, inv]
        if m > 1:  # a trace's m runs are m rows
            t = t if self.shared_t else t[inv]
            y, w = y[inv], w[inv]
            box = None if box is None else box.rows(inv)
        s = self._new_set(t, y, w, p, xp.asarray(rows_host), box)
        s.cost, s.A, s.g = self._first_evaluation(s, p, cand)
        bad = ~xp.isfinite(s.cost)
        if bool(bad.any()):
            self._finish(s, bad, NOT_FINITE, hess=False)
            s.take(xp, ~bad)
        return s

    def _starts(self, t: Any, y: Any, w: Any, real: Any, box: Box | None) -> tuple[Any, Any]:
        """(m, n, P) starting points of the traces `real`, and for each the candidate of
        the shared screen it comes from (m, n), -1 where the trace screened its own
        (None when no trace used the shared screen).

        Which screen a trace gets depends on it alone, never on its batch: the shared
        one when the solve has one time axis and the trace misses no point, else its
        own (`screen_each`)."""
        xp, spec, m = self.xp, self.spec, self.m
        if self.starts is not None:
            return self.starts[real][None], None
        if self.screen is None:
            starts = screen_each(xp, spec, t, y, w, multistart=self.opt.multistart, keep=m, box=box)
            return starts, None
        complete = w.all(axis=1)
        if bool(complete.all()):
            return pick_shared(xp, spec, self.screen, y, keep=m)
        starts = xp.empty((m, y.shape[0], len(spec.names)))
        cand = xp.full((m, y.shape[0]), -1, dtype=xp.int64)
        own = ~complete
        starts[:, own] = screen_each(
            xp, spec, t, y[own], w[own], multistart=self.opt.multistart, keep=m
        )
        if bool(complete.any()):
            starts[:, complete], cand[:, complete] = pick_shared(
                xp, spec, self.screen, y[complete], keep=m
            )
        return starts, cand

    def _first_evaluation(self, s: WorkingSet, p: Any, cand: Any) -> tuple[Any, Any, Any]:
        """Cost, JᵀJ and Jᵀr at the starts: for rows started from a shared candidate
        they follow from the candidate's values and Jacobian (`CandidateNormals`)."""
        xp = self.xp
        if cand is None or self.screen is None or self.fused is not None:
            return self._evaluate(s, p)
        normals = self.screen.normals
        shared = cand >= 0
        if bool(shared.all()):
            return normals.normal_equations(xp, s.y, cand, p)
        cost, A, g = self._evaluate(s, p)
        if bool(shared.any()):
            rows = xp.flatnonzero(shared)
            cost[rows], A[rows], g[rows] = normals.normal_equations(
                xp, s.y[rows], cand[rows], p[rows]
            )
        return cost, A, g

    def _new_set(self, t: Any, y: Any, w: Any, p: Any, rows: Any, box: Box | None) -> WorkingSet:
        """Rows at their starting points `p`, before their first evaluation."""
        xp = self.xp
        n = rows.shape[0]
        lo, hi = self._piece_bounds(t, w, p, box)
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
            shared_t=self.shared_t,
        )

    def _piece_bounds(self, t: Any, w: Any, p: Any, box: Box | None) -> tuple[Any, Any]:
        """Per-row bounds (n, k): the box's, or the spec's. A parameter with a "frames"
        start grid places a step in the model (an onset); the cost jumps whenever it
        crosses a sample time, so each run keeps it between the samples around its
        start, where the cost is smooth (the multi-start visits the other intervals)."""
        xp, n = self.xp, p.shape[0]
        if box is None:
            lo = xp.tile(self.lo[None, :], (n, 1))
            hi = xp.tile(self.hi[None, :], (n, 1))
        else:
            lo, hi = box.lower[:, self.free], box.upper[:, self.free]
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
