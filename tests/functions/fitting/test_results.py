"""Per-trace results table, CSV/Parquet outputs, summary, quality bands, at_bound."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyarrow.csv as pacsv
import pytest

from functions.fitting.fit import fit_traces
from functions.fitting.results import (
    load_results,
    quality_band,
    results_page,
    results_table,
    summarize_fit,
    to_csv,
    to_parquet,
)
from functions.fitting.spec import resolve_spec
from functions.fitting.synthetic import synthetic_traces


@pytest.fixture(scope="module")
def fitted():
    s = synthetic_traces("maturation", n=25, noise=0.03, seed=8)
    y = s.y.copy()
    y[2] = np.nan
    fit = fit_traces(resolve_spec("maturation"), s.t, y)
    return s, y, fit


def test_quality_bands() -> None:
    r2 = np.array([0.95, 0.9, 0.8, 0.7, 0.2, np.nan, 0.99])
    ok = np.array([True, True, True, True, True, False, False])
    assert list(quality_band(r2, ok)) == [
        "good",
        "fair",
        "fair",
        "poor",
        "poor",
        "failed",
        "failed",
    ]
    # a fit that reached a search limit is at best fair
    limited = np.array([True, False, True, True, False, False, True])
    assert list(quality_band(r2, ok, limited)) == [
        "fair",
        "fair",
        "fair",
        "poor",
        "poor",
        "failed",
        "failed",
    ]


@pytest.fixture(scope="module")
def bounded():
    """Onsets over 0-1.9 h fitted with t0 held to [-1, 1] h: the later onsets end on
    the upper bound."""
    s = synthetic_traces("maturation", n=12, n_times=60, noise=0.005, seed=2, onsets=(0.0, 0.19))
    spec = resolve_spec("maturation", bounds={"t0": (-1.0, 1.0)})
    return s, fit_traces(spec, s.t, s.y)


def test_at_bound_in_every_format(bounded) -> None:
    s, fit = bounded
    pinned = s.params[:, 0] > 1.05
    assert 3 <= pinned.sum() < 12
    table = results_table(fit, s.fov, s.cell, "maturation")
    names = table.column_names
    assert names[-3:] == ["quality", "reason", "at_bound"]
    lists = table.column("at_bound").to_pylist()
    assert [("t0" in v) for v in lists] == pinned.tolist()
    # Parquet: a list of names; the per-cell JSON rows: the same list
    assert load_results(to_parquet(table)).column("at_bound").to_pylist() == lists
    rows = results_page(table, offset=0, limit=100)
    assert [r["at_bound"] for r in rows] == lists
    # CSV: the names joined by ";" ("" for none)
    back = list(csv.DictReader(io.StringIO(to_csv(table).decode())))
    assert [r["at_bound"] for r in back] == [";".join(v) for v in lists]
    assert all(r["quality"] != "good" for r, p in zip(back, pinned, strict=True) if p)
    # summary: counts per parameter and side, the traces graded down, the bounds used
    summary = summarize_fit(fit, "maturation")
    assert summary["at_bound"]["t0"] == {"lower": 0, "upper": int(pinned.sum())}
    assert summary["search_limited"] == int(pinned.sum())
    assert summary["quality"]["good"] <= 12 - pinned.sum()
    assert summary["bounds"]["t0"] == [-1.0, 1.0]
    assert summary["bounds"]["delta"] == [1e-5, 11.0]
    json.dumps(summary)


def test_summary_lists_bounds_from_each_time_axis() -> None:
    s = synthetic_traces("maturation", n=4, n_times=60, noise=0.01, seed=1)
    t = np.stack([s.t, s.t, s.t + 20, s.t + 20])
    fit = fit_traces(resolve_spec("maturation"), t, s.y)
    summary = summarize_fit(fit, "maturation")
    assert summary["bounds"]["t0"] == {"lower": [-1.0, 19.0], "upper": [10.0, 30.0]}
    assert "at_bound" in summary and summary["search_limited"] == 0


def test_table_columns_and_files(fitted) -> None:
    s, _, fit = fitted
    table = results_table(fit, s.fov, s.cell, "maturation")
    names = table.column_names
    assert names[:12] == [
        "fov",
        "cell",
        "model_type",
        "success",
        "r_squared",
        "t0",
        "ktl",
        "delta",
        "offset",
        "km",
        "beta",
        "scale",
    ]
    assert {"se_t0", "se_delta", "n_points", "iterations", "quality", "reason", "at_bound"} <= set(
        names
    )
    assert "se_km" not in names  # fixed parameters have no standard error
    back = pacsv.read_csv(io.BytesIO(to_csv(table)))
    assert back.column_names == names and back.num_rows == 25
    np.testing.assert_allclose(back.column("ktl").to_numpy(), fit.params[:, 1], rtol=1e-12)
    pq_back = load_results(to_parquet(table))
    assert pq_back.column_names == names
    np.testing.assert_array_equal(pq_back.column("r_squared").to_numpy(), fit.r_squared)
    row = results_page(table, offset=2, limit=1)[0]
    assert row["success"] is False and row["reason"] == "too_few_points"
    assert row["r_squared"] is None and row["quality"] == "failed"
    json.dumps(results_page(table, offset=0, limit=100))  # JSON-safe (no NaN)


def test_summary(fitted) -> None:
    _, _, fit = fitted
    summary = summarize_fit(fit, "maturation")
    assert summary["total"] == 25 and summary["succeeded"] == 24 and summary["failed"] == 1
    assert summary["failures_by_reason"] == {"too_few_points": 1}
    ok = fit.success
    assert summary["r_squared"]["median"] == pytest.approx(np.median(fit.r_squared[ok]))
    assert set(summary["parameters"]) == {"t0", "ktl", "delta", "offset"}
    q = summary["parameters"]["delta"]
    assert q["q05"] <= q["q25"] <= q["q50"] <= q["q75"] <= q["q95"]
    assert q["q50"] == pytest.approx(np.median(fit.params[ok, 2]))
    assert summary["fixed"] == {"km": 1.28, "beta": 5.22e-3, "scale": 1.0}
    assert sum(summary["quality"].values()) == 25
    json.dumps(summary)
