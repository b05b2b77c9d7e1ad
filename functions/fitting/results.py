"""Per-trace fit results as a table (CSV, Parquet, JSON pages) and a summary.

Every result format says which fitted parameters ended on a bound (`at_bound`): a list
of names per trace (in CSV the names joined by ";"), and counts per parameter and side
in the summary. The quality label accounts for it: a parameter whose bound is only a
search limit (an onset, an amplitude) that ends on it means the best fit lies outside
the window and its other parameters are distorted, so the trace is at best "fair". A
rate at its floor (`Parameter.bound_ok`, e.g. no measurable degradation) is reported
and may still be "good".
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from functions.fitting.fit import FitArrays
from functions.fitting.models import get_model
from functions.fitting.solver_types import REASONS

GOOD_R2, FAIR_R2 = 0.9, 0.7
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
LIST_SEPARATOR = ";"  # joins the names of a list column in CSV
BANDS = ("good", "fair", "poor", "failed")


def quality_band(
    r_squared: np.ndarray, success: np.ndarray, not_good: np.ndarray | None = None
) -> np.ndarray:
    """ "good" (R² > 0.9), "fair" (0.7 < R² ≤ 0.9), "poor" (R² ≤ 0.7), "failed";
    traces marked `not_good` (a search limit reached, see `limited`) are at best
    "fair"."""
    return np.array(BANDS, dtype=object)[_band_codes(r_squared, success, not_good)]


def _band_codes(
    r_squared: np.ndarray, success: np.ndarray, not_good: np.ndarray | None = None
) -> np.ndarray:
    """`quality_band` as indices into `BANDS`."""
    r2 = np.nan_to_num(np.asarray(r_squared, dtype=np.float64), nan=0.0)
    code = np.where(r2 > GOOD_R2, 0, np.where(r2 > FAIR_R2, 1, 2)).astype(np.int8)
    if not_good is not None:
        code[np.asarray(not_good, dtype=bool) & (code == 0)] = 1
    code[~np.asarray(success, dtype=bool)] = 3
    return code


def search_limited(fit: FitArrays, model: str) -> np.ndarray:
    """(N,) bool: traces with a parameter on a bound that is not a legitimate answer
    for it (`Parameter.bound_ok`): the best fit lies beyond a search limit."""
    side = fit.at_bound()
    params = get_model(model).parameters
    ok_low = np.array([p.bound_ok == "lower" for p in params], dtype=bool)
    bad = (side == 1) | ((side == -1) & ~ok_low)
    return np.asarray(bad.any(axis=1))


def at_bound_names(fit: FitArrays) -> list[list[str]]:
    """Per trace, the fitted parameters that ended on a bound, in model order."""
    return at_bound_lists(fit).to_pylist()  # type: ignore[no-any-return]


def at_bound_lists(fit: FitArrays) -> Any:
    """`at_bound_names` as an Arrow list<string> array, built without a loop per trace."""
    import pyarrow as pa

    rows, cols = np.nonzero(fit.at_bound())  # row-major: each row's names in model order
    offsets = np.zeros(len(fit) + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=len(fit)), out=offsets[1:])
    names = pa.array(fit.names, type=pa.string()).take(pa.array(cols.astype(np.int32)))
    return pa.ListArray.from_arrays(pa.array(offsets), names)


def _names(codes: np.ndarray, names: Any) -> Any:
    """A string array of `names[codes]`, without a Python string per row."""
    import pyarrow as pa

    return pa.array(list(names), type=pa.string()).take(pa.array(codes.astype(np.int32)))


def results_table(fit: FitArrays, fov: np.ndarray, cell: np.ndarray, model: str) -> Any:
    """A pyarrow Table, one row per trace.

    Columns: fov, cell, model_type, success, r_squared, <parameters>, se_<parameter>
    (free parameters only), n_points, iterations, quality, reason, at_bound (a list of
    parameter names; see the module docstring).
    """
    import pyarrow as pa

    n = len(fit)
    if len(fov) != n or len(cell) != n:
        raise ValueError(f"fov {len(fov)} and cell {len(cell)} must match {n} fitted traces")
    cols: dict[str, Any] = {
        "fov": _column(fov),
        "cell": _column(cell),
        "model_type": _names(np.zeros(n, dtype=np.int32), [model]),
        "success": pa.array(fit.success),
        "r_squared": pa.array(fit.r_squared),
    }
    for i, name in enumerate(fit.names):
        cols[name] = pa.array(fit.params[:, i])
    for i, name in enumerate(fit.names):
        if fit.free[i]:
            cols[f"se_{name}"] = pa.array(fit.stderr[:, i])
    cols["n_points"] = pa.array(fit.n_points)
    cols["iterations"] = pa.array(fit.iterations)
    bands = _band_codes(fit.r_squared, fit.success, search_limited(fit, model))
    cols["quality"] = _names(bands, BANDS)
    codes = sorted(REASONS)
    cols["reason"] = _names(np.searchsorted(codes, fit.status), [REASONS[c] for c in codes])
    cols["at_bound"] = at_bound_lists(fit)
    return pa.table(cols)


def _column(values: np.ndarray) -> Any:
    import pyarrow as pa

    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        return pa.array(arr)
    return pa.array([str(v) for v in arr], type=pa.string())


def to_csv(table: Any) -> bytes:
    """CSV bytes with the table's column order; list columns (`at_bound`) as their
    items joined by ";" (empty when none)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type):
            joined = pc.fill_null(pc.binary_join(table.column(i), LIST_SEPARATOR), "")
            table = table.set_column(i, field.name, joined)
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, write_options=pacsv.WriteOptions(quoting_style="needed"))
    return buf.getvalue()


def to_parquet(table: Any) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def load_results(data: bytes) -> Any:
    """The results table back from the Parquet artefact (for paginated `results`)."""
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data))


def results_page(table: Any, *, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """Rows `offset .. offset + limit` as JSON-ready dicts (NaN becomes None)."""
    if offset < 0 or limit < 0:
        raise ValueError(f"offset and limit must be >= 0, got {offset}, {limit}")
    rows = table.slice(offset, limit).to_pylist()
    return [{k: _json(v) for k, v in row.items()} for row in rows]


def _json(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def summarize_fit(fit: FitArrays, model: str) -> dict[str, Any]:
    """Totals, failures by reason, mean/median R², quality counts and quantiles of each
    fitted parameter over the successful fits."""
    ok = fit.success
    codes, first, counts = np.unique(fit.status[~ok], return_index=True, return_counts=True)
    # reasons in the order they first occur among the traces
    reasons = {REASONS[int(codes[i])]: int(counts[i]) for i in np.argsort(first)}
    r2 = fit.r_squared[ok & np.isfinite(fit.r_squared)]
    bands = np.bincount(_band_codes(fit.r_squared, ok, search_limited(fit, model)), minlength=4)
    params: dict[str, Any] = {}
    for i, name in enumerate(fit.names):
        if not fit.free[i]:
            continue
        values = fit.params[ok, i]
        values = values[np.isfinite(values)]
        params[name] = (
            {
                "mean": float(values.mean()),
                "std": float(values.std()),
                **{
                    f"q{int(q * 100):02d}": float(v)
                    for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
                },
            }
            if values.size
            else None
        )
    return {
        "model_type": model,
        "total": len(fit),
        "succeeded": int(ok.sum()),
        "failed": int((~ok).sum()),
        "failures_by_reason": reasons,
        "r_squared": {
            "mean": float(r2.mean()) if r2.size else None,
            "median": float(np.median(r2)) if r2.size else None,
        },
        "quality": {b: int(k) for b, k in zip(BANDS, bands, strict=True)},
        "at_bound": _at_bound_counts(fit),
        "search_limited": int(search_limited(fit, model).sum()),
        "bounds": _bounds_used(fit),
        "parameters": params,
        "fixed": {
            n: float(fit.params[0, i])
            for i, n in enumerate(fit.names)
            if not fit.free[i] and len(fit)
        },
        "device": fit.device,
    }


def _at_bound_counts(fit: FitArrays) -> dict[str, dict[str, int]]:
    """Traces per parameter that ended on its lower or upper bound (only parameters
    with any)."""
    side = fit.at_bound()
    out = {}
    for i, name in enumerate(fit.names):
        lower, upper = int((side[:, i] == -1).sum()), int((side[:, i] == 1).sum())
        if lower or upper:
            out[name] = {"lower": lower, "upper": upper}
    return out


def _bounds_used(fit: FitArrays) -> dict[str, Any]:
    """The bounds each free parameter was fitted within: [lower, upper] when every
    trace had the same, else the range of each over the traces (bounds from the
    traces' own time axes)."""
    out: dict[str, Any] = {}
    for i, name in enumerate(fit.names):
        if not fit.free[i] or not len(fit):
            continue
        lo, hi = fit.lower[:, i], fit.upper[:, i]
        if (lo == lo[0]).all() and (hi == hi[0]).all():
            out[name] = [float(lo[0]), float(hi[0])]
        else:
            out[name] = {
                "lower": [float(lo.min()), float(lo.max())],
                "upper": [float(hi.min()), float(hi.max())],
            }
    return out
