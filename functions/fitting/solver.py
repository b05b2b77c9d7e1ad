"""Batched, bounded Levenberg-Marquardt over many traces at once.

A working set of traces advances together with array operations: parameters are
`(n, P)`, data `(n, T)` with a 0/1 weight for missing points, Jacobian columns
`(k, n, T)` for the k free parameters, normal equations solved as a batch of `(k, k)`
systems. The same code runs on numpy and on cupy (`common.arrays` backend switch).

The parts, one job each:

- `solver` (here): `solve` splits the traces over streams (threads on the CPU) and,
  with several starts per trace, keeps each trace's best run;
- `stream`: one working set fed from a queue of traces (entering, refilling, storing
  finished traces and compacting them out);
- `working_set`: the per-trace arrays of a working set and their bookkeeping;
- `lm_step`: one bounded Levenberg-Marquardt step (damping, bounds, convergence tests);
- `normal_equations`: cost, JᵀJ and Jᵀr at given parameters (fused kernel or columns);
- `solver_types`: options, outputs and status codes.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np

from common.arrays import to_host
from functions.fitting.solver_types import (
    CONVERGED,
    MAX_ITER,
    NOT_FINITE,
    REASONS,
    TOO_FEW_POINTS,
    Box,
    SolveOutput,
    SolverOptions,
)
from functions.fitting.spec import FitSpec
from functions.fitting.starts import SharedScreen, shared_screen
from functions.fitting.stream import Stream
from functions.fitting.working_set import WorkingSet

__all__ = [
    "CONVERGED",
    "MAX_ITER",
    "NOT_FINITE",
    "REASONS",
    "TOO_FEW_POINTS",
    "Box",
    "SolveOutput",
    "SolverOptions",
    "solve",
]

# The tests reach the stream's evaluation and its working set by these names.
_State = WorkingSet
_Stream = Stream


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
    shared_axis: bool | None = None,
    box: Box | None = None,
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
    shared_axis : bool, optional
        Whether `t` is one time axis for every trace (default: when it has one row).
        Only then do traces share a start screen; a trace with an axis of its own is
        screened alone even when it is fitted alone, so its fit never depends on it.
    box : Box, optional
        Each trace's start and bounds, where they differ between traces (time-like
        parameters on traces' own time axes); default: the spec's for every trace.

    Returns
    -------
    SolveOutput
    """
    n = y.shape[0]
    multi = options.multistart and starts is None
    m = max(options.lm_starts or spec.model.lm_starts, 1) if multi else 1
    # With m > 1 every trace is fitted from its m best start candidates as m virtual
    # rows (trace i -> rows i*m .. i*m+m-1), and the best converged run is kept.
    shared = t.shape[0] == 1 if shared_axis is None else shared_axis
    if shared and box is not None:
        raise ValueError("traces on one time axis have one start and one set of bounds")
    out = _unsolved(xp, spec, w, m, box)
    queue = np.flatnonzero(to_host(xp, out.status) == MAX_ITER)
    if rows is not None:
        queue = np.intersect1d(queue, rows)
    screen = _shared_screen(xp, spec, t, w, multi) if shared else None
    streams = [
        Stream(xp, spec, t, y, w, out, options, m, starts, screen, shared, box)
        for _ in range(max(workers, 1))
    ]
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


def _shared_screen(
    xp: ModuleType, spec: FitSpec, t: Any, w: Any, multistart: bool
) -> SharedScreen | None:
    """The start screen every trace without a missing point shares, decided and made
    once per solve (and shared by its streams): where the solve has one time axis and
    such traces."""
    if not multistart or not bool(w.all(axis=1).any()):
        return None
    return shared_screen(xp, spec, t)


def _unsolved(xp: ModuleType, spec: FitSpec, w: Any, m: int, box: Box | None) -> SolveOutput:
    """The output before solving, `m` rows per trace: the start, NaN cost and JᵀJ, and
    status `MAX_ITER` (to be solved) or `TOO_FEW_POINTS` (fewer points than unknowns)."""
    rows, k = w.shape[0] * m, int(spec.free.sum())
    status = xp.full(rows, MAX_ITER, dtype=xp.int8)
    status[xp.repeat(w.sum(axis=1) < max(k, 1), m)] = TOO_FEW_POINTS
    start = (
        xp.tile(xp.asarray(spec.start)[None, :], (rows, 1))
        if box is None
        else xp.repeat(box.start, m, axis=0)
    )
    return SolveOutput(
        params=start,
        cost=xp.full(rows, xp.nan),
        hess=xp.full((rows, k, k), xp.nan),
        iterations=xp.zeros(rows, dtype=xp.int32),
        status=status,
    )


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
