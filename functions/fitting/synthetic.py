"""Synthetic traces with known parameters, for tests and benchmarks.

Parameters are drawn per trace from ranges typical of single-cell expression data;
Gaussian noise with a standard deviation proportional to each clean trace's range is
added. Optional missing points (NaN) and ragged ends mimic tracked cells.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from functions.fitting.models import get_model

# Per model: name -> ("uniform" | "log", low, high); unlisted parameters keep defaults.
RANGES: dict[str, dict[str, tuple[str, float, float]]] = {
    "maturation": {
        "t0": ("uniform", -0.8, 0.8),
        "ktl": ("log", 3e2, 1e4),
        "delta": ("log", 1e-2, 0.3),
        "offset": ("uniform", 0.0, 200.0),
    },
    "maturation_blocked": {
        "t0": ("uniform", 0.1, 0.9),
        "G0": ("uniform", 100.0, 1000.0),
        "Gu0": ("uniform", 100.0, 1000.0),
        "km": ("log", 0.3, 3.0),
        "beta": ("log", 0.02, 0.2),
        "offset": ("uniform", 0.0, 100.0),
    },
    "trivial": {
        "t0": ("uniform", 1.0, 6.0),
        "ktl": ("log", 10.0, 300.0),
        "delta": ("log", 0.15, 0.4),
        "beta": ("log", 0.02, 0.08),
        "offset": ("uniform", 0.0, 50.0),
    },
    "exponential_decay": {
        "amplitude": ("uniform", 50.0, 500.0),
        "rate": ("log", 0.03, 0.3),
        "offset": ("uniform", 0.0, 50.0),
    },
    "logistic_growth": {
        "capacity": ("uniform", 100.0, 1000.0),
        "rate": ("log", 0.3, 2.0),
        "t_mid": ("uniform", 8.0, 22.0),
        "offset": ("uniform", 0.0, 50.0),
    },
    "hill": {
        "bottom": ("uniform", 0.0, 50.0),
        "top": ("uniform", 200.0, 1000.0),
        "ec50": ("log", 0.1, 10.0),
        "n": ("uniform", 0.7, 3.0),
    },
}


@dataclass(frozen=True)
class SyntheticTraces:
    """Traces `y` (N, T) sampled at `t` (T,) from `model` with true `params` (N, P)."""

    model: str
    names: tuple[str, ...]
    t: np.ndarray
    y: np.ndarray
    params: np.ndarray
    fov: np.ndarray
    cell: np.ndarray

    def __repr__(self) -> str:
        return f"SyntheticTraces({self.model!r}, n={self.y.shape[0]}, T={self.y.shape[1]})"


def synthetic_traces(
    model: str = "maturation",
    *,
    n: int = 1000,
    n_times: int = 180,
    dt: float = 1 / 6,
    noise: float = 0.02,
    missing: float = 0.0,
    ragged: bool = False,
    seed: int = 0,
    fixed: dict[str, float] | None = None,
    onsets: tuple[float, float] | None = None,
) -> SyntheticTraces:
    """Draw `n` traces of `model` with known parameters.

    Parameters
    ----------
    model : str
        Registered model name.
    n, n_times : int
        Number of traces and of time points (times 0, dt, 2·dt, ... in hours; for
        `hill` the x values are log-spaced doses from 0.01 to 100).
    dt : float
        Sampling interval in hours.
    noise : float
        Noise standard deviation as a fraction of each clean trace's range.
    missing : float
        Fraction of points replaced by NaN at random.
    ragged : bool
        Truncate each trace at a random length between half and all of `n_times`.
    seed : int
    fixed : dict, optional
        Parameter values to use for every trace instead of drawing them.
    onsets : (float, float), optional
        Draw the time-like parameters (onsets, mid-points: those whose default bounds
        come from the time axis) uniformly over this part of the time axis, as fractions
        of its span: (0, 0.8) spreads onsets over the first 80 % of the time-lapse.
        Default: the model's typical range (`RANGES`).

    Returns
    -------
    SyntheticTraces

    Examples
    --------
    >>> s = synthetic_traces("maturation", n=4, n_times=20, seed=1)
    >>> s.y.shape, s.params.shape
    ((4, 20), (4, 7))
    """
    if n < 1 or n_times < 2:
        raise ValueError(f"need n >= 1 and n_times >= 2, got n={n}, n_times={n_times}")
    if not 0.0 <= missing < 1.0 or noise < 0:
        raise ValueError(f"need 0 <= missing < 1 and noise >= 0, got {missing}, {noise}")
    m = get_model(model)
    rng = np.random.default_rng(seed)
    t = np.geomspace(0.01, 100.0, n_times) if model == "hill" else np.arange(n_times) * dt
    ranges = dict(RANGES.get(model, {}))
    if onsets is not None:
        span = float(t[-1] - t[0])
        for p in m.parameters:
            if p.window is not None:
                ranges[p.name] = ("uniform", t[0] + onsets[0] * span, t[0] + onsets[1] * span)
    params = np.tile([p.default for p in m.parameters], (n, 1)).astype(np.float64)
    for i, name in enumerate(m.names):
        if fixed and name in fixed:
            params[:, i] = fixed[name]
        elif name in ranges:
            kind, lo, hi = ranges[name]
            draw = rng.uniform(np.log(lo), np.log(hi), n) if kind == "log" else None
            params[:, i] = np.exp(draw) if draw is not None else rng.uniform(lo, hi, n)
    clean = m.eval(t, params)
    spread = np.ptp(clean, axis=1, keepdims=True)
    y = clean + rng.normal(size=clean.shape) * noise * np.maximum(spread, 1e-12)
    if missing > 0:
        y[rng.random(y.shape) < missing] = np.nan
    if ragged:
        lengths = rng.integers(n_times // 2, n_times + 1, n)
        y[np.arange(n_times)[None, :] >= lengths[:, None]] = np.nan
    fov = np.arange(n) // 100
    cell = np.arange(n) % 100
    return SyntheticTraces(model, m.names, t, y, params, fov, cell)


def to_long_csv(traces: SyntheticTraces, *, time_unit: str = "h") -> bytes:
    """Long-format CSV (`time,fov,cell,value`) as the merge step writes it, with the
    `# Time units:` first line; times converted from hours to `time_unit`. Rows by
    cell, then time; missing points have no row."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    factor = {"h": 1.0, "min": 60.0, "s": 3600.0}[time_unit]
    rows, cols = np.nonzero(np.isfinite(traces.y))
    times = traces.t * factor
    near = np.round(times, 6)  # 49.99999999999999 min is written 50
    times = np.where(np.abs(near - times) <= 1e-12 * np.abs(times), near, times)
    table = pa.table(
        {
            "time": times[cols],
            "fov": traces.fov[rows],
            "cell": traces.cell[rows],
            "value": traces.y[rows, cols],
        }
    )
    buf = io.BytesIO()
    buf.write(f"# Time units: {time_unit}\ntime,fov,cell,value\n".encode())
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
    return buf.getvalue()


def to_wide_csv(traces: SyntheticTraces) -> bytes:
    """Wide CSV: a `time` column (hours) and one column per cell named `fov_cell`."""
    header = "time," + ",".join(f"{f}_{c}" for f, c in zip(traces.fov, traces.cell, strict=True))
    lines = [header]
    for j, tj in enumerate(traces.t):
        vals = ",".join("" if not np.isfinite(v) else f"{v:.10g}" for v in traces.y[:, j])
        lines.append(f"{tj:.10g},{vals}")
    return ("\n".join(lines) + "\n").encode()
