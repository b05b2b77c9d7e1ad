"""Fit many traces: validation, time-axis bounds, the array backend, standard errors, R²."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

from common.arrays import Device, get_backend, gpu_available, to_host
from functions.fitting.host import one_blas_thread, tune_malloc
from functions.fitting.linalg import inverse_spd
from functions.fitting.solver import (
    CONVERGED,
    MAX_ITER,
    REASONS,
    Box,
    SolveOutput,
    SolverOptions,
    solve,
)
from functions.fitting.spec import FitSpec

GPU_WORKING_SET = (1 << 14, 1 << 20)  # traces iterated together on a GPU: at least, at most
GPU_ARRAYS_PER_TRACE = 32  # (T,) float64 arrays per trace the array path may hold at once


# A fitted parameter counts as on a bound within this fraction of the bound's magnitude
# (at least of 1; the solver clips steps onto bounds exactly) or within this fraction of
# its own standard error (a fit that creeps up to a bound stops a hair inside it).
AT_BOUND_RTOL = 1e-9
AT_BOUND_SE = 0.1


@dataclass(frozen=True)
class FitArrays:
    """Per-trace fit outputs as host arrays; parameters in the order of `names`.

    `lower` and `upper` are the bounds each trace was fitted within: time-like
    parameters take theirs from the trace's time axis (`spec.FitSpec.on_axes`).
    """

    names: tuple[str, ...]
    free: np.ndarray  # (P,) bool
    params: np.ndarray  # (N, P)
    stderr: np.ndarray  # (N, P); NaN for fixed parameters and unfitted traces
    ss_res: np.ndarray  # (N,)
    r_squared: np.ndarray  # (N,)
    n_points: np.ndarray  # (N,) valid points per trace
    iterations: np.ndarray  # (N,)
    status: np.ndarray  # (N,) solver status codes
    lower: np.ndarray  # (N, P) bounds used per trace
    upper: np.ndarray  # (N, P)
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> np.ndarray:
        return self.status == CONVERGED

    def at_bound(self) -> np.ndarray:
        """(N, P) int8: -1 where a fitted parameter ended on its lower bound, +1 on its
        upper bound, 0 elsewhere (fixed parameters and unfitted traces: 0). "On" allows
        for rounding and for a tenth of the parameter's standard error."""
        fitted = ((self.status == CONVERGED) | (self.status == MAX_ITER))[:, None] & self.free
        p, lo, hi = self.params, self.lower, self.upper
        se = AT_BOUND_SE * np.nan_to_num(self.stderr, nan=0.0, posinf=0.0)
        with np.errstate(invalid="ignore"):
            on_lo = p <= lo + np.maximum(AT_BOUND_RTOL * np.maximum(np.abs(lo), 1.0), se)
            on_hi = p >= hi - np.maximum(AT_BOUND_RTOL * np.maximum(np.abs(hi), 1.0), se)
        out = np.where(on_lo & fitted, -1, np.where(on_hi & fitted, 1, 0))
        return out.astype(np.int8)

    @property
    def reasons(self) -> list[str]:
        return [REASONS[int(c)] for c in self.status]

    def __len__(self) -> int:
        return int(self.params.shape[0])


def fit_traces(
    spec: FitSpec,
    t: np.ndarray,
    y: np.ndarray,
    *,
    device: Device = "cpu",
    options: SolverOptions | None = None,
    workers: int = 1,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> FitArrays:
    """Fit `spec.model` to every row of `y`.

    Parameters
    ----------
    spec : FitSpec
        Model, start values, bounds and free mask (see `resolve_spec`). Time-like
        parameters whose bounds the request left open take them from the time axis:
        the shared one when `t` is (T,), each trace's own when `t` is (N, T). A trace's
        result depends only on its own data and time axis, never on the other traces.
    t : (T,) or (N, T) ndarray
        Sample times in the model's units (hours for the expression models): one axis
        for every trace, or one per trace (also when N is 1).
    y : (N, T) ndarray
        Traces; NaN marks missing points (ragged traces are NaN-padded).
    device : {"cpu", "gpu", "auto"}, optional
    options : SolverOptions, optional
    workers : int, optional
        CPU threads, each iterating its own working set (numpy releases the GIL).
    progress : callable, optional
        Called with the fraction of traces done, once per solver iteration.
    cancelled : callable, optional
        Checked once per solver iteration; when it returns True, `JobCancelled` is raised.

    Returns
    -------
    FitArrays

    Raises
    ------
    ValueError
        If `t` and `y` have incompatible shapes.
    """
    t2, y2 = _validate(t, y)
    opt = options or SolverOptions()
    be = _backend(device)
    if be.name == "cpu":
        tune_malloc()
    if be.name == "gpu":
        opt = replace(opt, working_set=max(opt.working_set, _gpu_working_set(y2.shape[1])))
    threads = workers if be.name == "cpu" else 1
    with one_blas_thread(be.name == "cpu"):
        out = _fit_on_axes(be, spec, t2, y2, np.ndim(t) == 1, opt, threads, progress, cancelled)
    if progress is not None:
        progress(1.0)
    return FitArrays(names=spec.names, free=spec.free.copy(), device=be.name, **out)


# The solver needs arrays only: on the CPU numpy, without the scipy.ndimage that
# `get_backend("cpu")` imports, which cost a worker's first fit 0.3-0.5 s.
_NUMPY = SimpleNamespace(name="cpu", xp=np, asarray=np.asarray, to_numpy=np.asarray)


def _backend(device: Device) -> Any:
    """The array backend of `device` (numpy alone for "cpu")."""
    on_cpu = device == "cpu" or (device == "auto" and not gpu_available())
    return _NUMPY if on_cpu else get_backend(device)


def _fit_on_axes(
    be: Any,
    spec: FitSpec,
    t2: np.ndarray,
    y2: np.ndarray,
    shared_axis: bool,
    opt: SolverOptions,
    threads: int,
    progress: Callable[[float], None] | None,
    cancelled: Callable[[], bool] | None,
) -> dict[str, Any]:
    """Resolve the spec's time windows on the traces' time axes and solve: on a shared
    axis with its one start and bounds; on the traces' own axes in one solve, each
    trace with its own (`Box`). Only a fixed parameter whose value comes from the time
    axis (a constant of the model) splits them into a solve per value."""
    n, P = y2.shape[0], len(spec.names)
    start, lower, upper = spec.box_on_axes(*time_extent(t2))
    report = None if progress is None else _fraction(progress, 0, n)
    if shared_axis or not spec.needs_axis:
        sub = spec.resolved(start[0], lower[0], upper[0]) if spec.needs_axis else spec
        part = _fit_group(be, sub, t2, y2, None, shared_axis, opt, threads, report, cancelled)
        part["lower"] = np.broadcast_to(sub.lower, (n, P)).copy()
        part["upper"] = np.broadcast_to(sub.upper, (n, P)).copy()
        return part
    constants = start[:, spec.windowed & ~spec.free]
    _, group = np.unique(constants, axis=0, return_inverse=True)
    group = group.reshape(-1)
    out: dict[str, Any] = {}
    done = 0
    for g in range(int(group.max()) + 1):
        rows = np.flatnonzero(group == g)
        first = rows[0]
        sub = spec.resolved(start[first], lower[first], upper[first])
        box = Box(start[rows], lower[rows], upper[rows])
        report = None if progress is None else _fraction(progress, done, n)
        part = _fit_group(be, sub, t2[rows], y2[rows], box, False, opt, threads, report, cancelled)
        part["lower"], part["upper"] = lower[rows], upper[rows]
        if rows.size == n:
            return part
        for k, v in part.items():
            if k not in out:
                out[k] = np.empty((n, *v.shape[1:]), dtype=v.dtype)
            out[k][rows] = v
        done += rows.size
    return out


def _fraction(progress: Callable[[float], None], before: int, n: int) -> Callable[[int], None]:
    """The solver's count of finished traces, after `before` others, as a fraction of `n`."""

    def report(finished: int) -> None:
        progress((before + finished) / n)

    return report


def time_extent(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last finite time of each row of `t` (N|1, T); NaN for a row without."""
    finite = np.isfinite(t)
    with np.errstate(invalid="ignore"):
        first = np.where(finite, t, np.inf).min(axis=1)
        last = np.where(finite, t, -np.inf).max(axis=1)
    empty = ~finite.any(axis=1)
    first[empty] = last[empty] = np.nan
    return first, last


def _fit_group(
    be: Any,
    spec: FitSpec,
    t2: np.ndarray,
    y2: np.ndarray,
    box: Box | None,
    shared_axis: bool,
    opt: SolverOptions,
    threads: int,
    report: Callable[[int], None] | None,
    cancelled: Callable[[], bool] | None,
) -> dict[str, np.ndarray]:
    """Solve the traces `y2` of one resolved spec (each with its own start and bounds in
    `box`, if given); per-trace host arrays by field."""
    xp = be.xp
    # Masks are made where the arrays live: on a GPU only the raw data crosses the bus.
    td, yd = be.asarray(t2), be.asarray(y2)
    t_ok = xp.isfinite(td)
    valid = xp.isfinite(yd) & t_ok
    w = valid.astype(xp.float64)
    yd = xp.where(valid, yd, 0.0)
    td = xp.where(t_ok, td, 0.0)
    if box is not None:
        box = Box(be.asarray(box.start), be.asarray(box.lower), be.asarray(box.upper))
    out = solve(
        xp,
        spec,
        td,
        yd,
        w,
        opt,
        progress=report,
        cancelled=cancelled,
        workers=threads,
        shared_axis=shared_axis,
        box=box,
    )
    kinks = [i for i, p in enumerate(spec.model.parameters) if p.kink and spec.free[i]]
    if kinks and opt.multistart:
        _cross_kink(xp, spec, td, yd, w, out, opt, kinks[0], threads, shared_axis, box)
    npts = w.sum(axis=1)
    ss_res = 2.0 * out.cost
    with np.errstate(all="ignore"):
        stderr = _stderr(xp, spec, out.hess, ss_res, npts)
        mean = (yd * w).sum(axis=1) / xp.maximum(npts, 1.0)
        ss_tot = (((yd - mean[:, None]) * w) ** 2).sum(axis=1)
        r2 = xp.where(ss_tot > 0, 1.0 - ss_res / ss_tot, xp.where(ss_res <= 0, 1.0, 0.0))
        r2 = xp.where(xp.isfinite(ss_res), xp.clip(r2, 0.0, 1.0), xp.nan)
    return {
        "params": be.to_numpy(out.params),
        "stderr": be.to_numpy(stderr),
        "ss_res": be.to_numpy(ss_res),
        "r_squared": be.to_numpy(r2),
        "n_points": be.to_numpy(npts).astype(np.int64),
        "iterations": be.to_numpy(out.iterations).astype(np.int64),
        "status": be.to_numpy(out.status).astype(np.int64),
    }


def _gpu_working_set(n_times: int) -> int:
    """As many traces as half the GPU's memory holds for the array path's temporaries
    (the fused kernels need far less): big batches keep the GPU busy between the
    per-iteration launches, which cost the same whatever the batch size."""
    import cupy

    total = cupy.cuda.Device().mem_info[1]
    fits = total // 2 // (GPU_ARRAYS_PER_TRACE * 8 * max(n_times, 1))
    return int(min(max(fits, GPU_WORKING_SET[0]), GPU_WORKING_SET[1]))


def _cross_kink(
    xp: ModuleType,
    spec: FitSpec,
    t: Any,
    y: Any,
    w: Any,
    out: SolveOutput,
    opt: SolverOptions,
    col: int,
    workers: int,
    shared_axis: bool,
    box: Box | None,
) -> None:
    """Retry fits whose onset ended within a quarter sample interval of a sample time,
    from the mirror point on that sample's other side; keep the better fit.

    The model's slope jumps at the onset, so the cost has a kink wherever the onset
    crosses a sample time and can have a local minimum on each side of it.
    """
    t_full = xp.broadcast_to(t, y.shape)
    onset = out.params[:, col : col + 1]
    dist = xp.where(w > 0, xp.abs(t_full - onset), xp.inf)
    nearest = xp.argmin(dist, axis=1)
    rows = xp.arange(y.shape[0])
    sample = t_full[rows, nearest]
    step = xp.diff(xp.where(w > 0, t_full, xp.nan), axis=1)
    spacing = xp.nanmedian(xp.where(step > 0, step, xp.nan), axis=1)
    gap = xp.abs(out.params[:, col] - sample)
    mirror = 2.0 * sample - out.params[:, col]
    retry = (out.status == CONVERGED) & (gap > 0) & (gap < 0.25 * spacing)
    if box is None:
        retry &= (mirror >= spec.lower[col]) & (mirror <= spec.upper[col])
    else:
        retry &= (mirror >= box.lower[:, col]) & (mirror <= box.upper[:, col])
    retry_rows = np.flatnonzero(to_host(xp, retry))
    if retry_rows.size == 0:
        return
    starts = out.params.copy()
    starts[:, col] = mirror
    again = solve(
        xp,
        spec,
        t,
        y,
        w,
        replace(opt, multistart=False),
        workers=workers,
        starts=starts,
        rows=retry_rows,
        shared_axis=shared_axis,
        box=box,
    )
    better = xp.zeros(y.shape[0], dtype=bool)
    better[xp.asarray(retry_rows)] = True
    better &= (again.status == CONVERGED) & (again.cost < out.cost)
    for name in ("params", "cost", "hess", "status"):
        getattr(out, name)[better] = getattr(again, name)[better]
    out.iterations[xp.asarray(retry_rows)] += again.iterations[xp.asarray(retry_rows)]


def _validate(t: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    y2 = np.asarray(y, dtype=np.float64)
    t2 = np.asarray(t, dtype=np.float64)
    if y2.ndim != 2 or y2.shape[0] == 0 or y2.shape[1] == 0:
        raise ValueError(f"y must be a non-empty (N, T) array, got shape {y2.shape}")
    if t2.ndim == 1:
        t2 = t2[None, :]
    if t2.ndim != 2 or t2.shape[1] != y2.shape[1] or t2.shape[0] not in (1, y2.shape[0]):
        raise ValueError(f"t must be (T,) or (N, T) matching y {y2.shape}, got shape {np.shape(t)}")
    return t2, y2


def _stderr(xp: ModuleType, spec: FitSpec, hess: Any, ss_res: Any, npts: Any) -> Any:
    """sqrt(diag(s²·(JᵀJ)⁺)) with s² = SS_res/(n - k); NaN where undefined."""
    n, k = hess.shape[0], hess.shape[1]
    ok = xp.isfinite(hess).all(axis=(1, 2)) & (npts > k)
    safe = xp.where(ok[:, None, None], hess, xp.eye(k))
    # Invert in correlation form: parameters differ in scale by many orders of
    # magnitude, and a cutoff on the raw eigenvalues would drop well-determined ones.
    d = xp.sqrt(xp.diagonal(safe, axis1=1, axis2=2))
    d = xp.where(d > 0, d, 1.0)
    corr = safe / (d[:, :, None] * d[:, None, :])
    # Cholesky inverse first. Where its trace (Σ 1/λ) stays below 1e12, every
    # eigenvalue exceeds 1e-12 > 1e-13·λmax (λmax ≤ k ≤ 10), so the pseudo-inverse
    # below would be the same inverse; only the other traces need the eigenvalues.
    inv = inverse_spd(xp, corr)
    var = xp.diagonal(inv, axis1=1, axis2=2).copy()
    shaky = ~(xp.isfinite(var).all(axis=1) & (var.sum(axis=1) < 1e12) & (var > 0).all(axis=1))
    if bool(shaky.any()):
        rows = xp.flatnonzero(shaky)
        vals, vecs = xp.linalg.eigh(corr[rows])
        cutoff = 1e-13 * xp.abs(vals).max(axis=1, keepdims=True)
        pinv = xp.where(vals > cutoff, 1.0 / xp.where(vals > cutoff, vals, 1.0), 0.0)
        var[rows] = xp.einsum("nij,nj->ni", vecs * vecs, pinv)
    var = var / (d * d)
    s2 = ss_res / xp.maximum(npts - k, 1.0)
    se_free = xp.where(ok[:, None], xp.sqrt(var * s2[:, None]), xp.nan)
    out = xp.full((n, len(spec.names)), xp.nan)
    out[:, np.flatnonzero(spec.free)] = se_free
    return out
