"""Per-trace results table, CSV/Parquet outputs, summary, quality bands and plots."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.csv as pacsv
import pytest

from functions.fitting.fit import fit_traces
from functions.fitting.plots import fit_plots
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
    assert {"se_t0", "se_delta", "n_points", "iterations", "quality", "reason"} <= set(names)
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


def test_plots_are_pngs(fitted) -> None:
    s, y, fit = fitted
    plots = fit_plots(fit, s.t, y, "maturation")
    assert set(plots) == {"parameters.png", "r_squared.png", "examples.png"}
    for png in plots.values():
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
