"""Plots of a fit: made for any data (a plot never fails a fit), and labelled for a lab
meeting (units, the cells' own ids, bounds, integer counts, explained lines).

Assertions read the matplotlib figure objects (labels, titles, legend texts, lines),
not pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from functions.fitting.fit import fit_traces
from functions.fitting.plots import (
    examples_figure,
    fit_plots,
    parameter_figure,
    r_squared_figure,
)
from functions.fitting.spec import resolve_spec
from functions.fitting.synthetic import synthetic_traces
from functions.fitting.traces import read_traces

PNG = b"\x89PNG\r\n\x1a\n"


def _wide_two_cells() -> bytes:
    """`time,cell_1,cell_2`: two cells whose fits differ by rounding only (what made
    the parameter histogram raise "Too many bins for data range")."""
    t = np.arange(60) / 6
    model = resolve_spec("maturation").model
    y = model.eval(t, [0.5, 1e3, 0.05, 10.0, 1.28, 5.22e-3, 1.0])[0]
    rows = [f"{a:.10g},{b:.17g},{b * (1 + 1e-14):.17g}" for a, b in zip(t, y, strict=True)]
    return ("time,cell_1,cell_2\n" + "\n".join(rows) + "\n").encode()


@pytest.fixture(scope="module")
def fitted() -> Any:
    """Onsets over the first 85 % of a 30-hour time-lapse, t0 held to [-1, 20] h so
    later onsets end on the upper bound; times in minutes in the file."""
    s = synthetic_traces("maturation", n=60, noise=0.02, seed=8, onsets=(0.0, 0.85))
    fov, cell = s.fov + 3, s.cell + 100  # ids unlike row numbers
    fit = fit_traces(resolve_spec("maturation", bounds={"t0": (-1.0, 20.0)}), s.t, s.y)
    return s, fov, cell, fit


def test_two_near_identical_cells_from_a_wide_csv_plot() -> None:
    traces = read_traces(_wide_two_cells(), name="two.csv")
    fit = fit_traces(resolve_spec("maturation"), traces.t, traces.y)
    assert np.ptp(fit.params[:, 1]) < 1e-9 * fit.params[0, 1]  # a range of a few ulps
    plots = fit_plots(fit, traces.t, traces.y, "maturation", fov=traces.fov, cell=traces.cell)
    assert plots.errors == []
    assert set(plots.files) == {"parameters.png", "r_squared.png", "examples.png"}
    assert all(png.startswith(PNG) for png in plots.files.values())
    fig = examples_figure(fit, traces.t, traces.y, "maturation", fov=traces.fov, cell=traces.cell)
    titles = sorted(ax.get_title().split("\n")[0] for ax in fig.axes if ax.get_visible())
    assert titles == ["fov 0, cell_1", "fov 0, cell_2"]  # the columns' own names


def test_a_plot_that_fails_is_reported_and_the_others_are_made(fitted) -> None:
    s, fov, cell, fit = fitted
    # data whose rows do not match the fit: the example panels cannot be drawn
    plots = fit_plots(fit, s.t, s.y[:, :10], "maturation", fov=fov, cell=cell)
    assert set(plots.files) == {"parameters.png", "r_squared.png"}
    assert len(plots.errors) == 1 and plots.errors[0].startswith("examples.png: ValueError")


def test_no_successful_fit_still_plots() -> None:
    y = np.full((3, 20), np.nan)
    y[:, :2] = 1.0  # two points: too few for four parameters
    fit = fit_traces(resolve_spec("maturation"), np.arange(20.0), y)
    assert not fit.success.any()
    plots = fit_plots(fit, np.arange(20.0), y, "maturation")
    assert plots.errors == [] and len(plots.files) == 3


def _integer_ticks(ax: Any) -> bool:
    ticks = [v for v in ax.get_yticks() if ax.get_ylim()[0] <= v <= ax.get_ylim()[1]]
    return len(ticks) >= 2 and all(float(v).is_integer() for v in ticks)


def test_parameter_histograms_have_units_bounds_and_integer_counts(fitted) -> None:
    _, _, _, fit = fitted
    fig = parameter_figure(fit, "maturation")
    axes = {ax.get_xlabel(): ax for ax in fig.axes if ax.get_visible()}
    assert set(axes) == {"t0 (h)", "ktl (a.u./h)", "delta (1/h)", "offset (a.u.)"}
    for ax in axes.values():
        assert ax.get_ylabel() == "traces" and _integer_ticks(ax)
    onset = axes["t0 (h)"]
    assert onset.get_title() == f"t0: onset of expression (n={int(fit.success.sum())})"
    pinned = int((fit.at_bound()[:, 0] == 1).sum())
    assert pinned >= 5
    legend = [text.get_text() for text in onset.get_legend().get_texts()]
    assert legend == [
        "lower bound -1 h: 0 fits on it",
        f"upper bound 20 h: {pinned} fits on it",
    ]
    drawn = sorted(float(line.get_xdata()[0]) for line in onset.get_lines())
    assert drawn == [-1.0, 20.0]  # both bounds lie near the onsets: drawn as lines
    # a bound far from the values is named, not drawn (it would squash the histogram)
    rate = [t.get_text() for t in axes["ktl (a.u./h)"].get_legend().get_texts()]
    assert rate[1] == "upper bound 5e+08 a.u./h, off the axis: 0 fits on it"
    assert axes["delta (1/h)"].get_xscale() == "log"  # rates spread over decades


def test_r_squared_lines_are_explained(fitted) -> None:
    _, _, _, fit = fitted
    ax = r_squared_figure(fit, "maturation").axes[0]
    assert ax.get_xlabel() == "R²" and ax.get_ylabel() == "traces" and _integer_ticks(ax)
    dashed = {float(line.get_xdata()[0]): line.get_label() for line in ax.get_lines()}
    assert dashed == {0.9: "good: R² > 0.9", 0.7: "fair: R² > 0.7; poor below"}
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(dashed.values())
    # the legend's title counts the quality bands, fits on a search limit included
    good = legend.get_title().get_text().split(",")[0]
    assert good.startswith("good ") and int(good.split()[1]) < int((fit.r_squared > 0.9).sum())


def test_example_panels_name_the_cells_and_use_the_files_time_unit(fitted) -> None:
    s, fov, cell, fit = fitted
    fig = examples_figure(fit, s.t, s.y, "maturation", fov=fov, cell=cell, time_unit="min")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 9
    best = int(np.argmax(np.where(fit.success, fit.r_squared, -1)))
    first = panels[0].get_title().split("\n")
    assert first[0] == f"fov {fov[best]}, cell {cell[best]}"
    assert first[1] == f"best R² = {fit.r_squared[best]:.3f}"
    for ax in panels:
        assert ax.get_xlabel() == "time (min)" and ax.get_ylabel() == "intensity (a.u.)"
        data = ax.get_lines()[0].get_xdata()
        assert data.max() == pytest.approx(s.t.max() * 60)  # minutes, not hours
    assert [t.get_text() for t in panels[0].get_legend().get_texts()] == ["data", "fit"]
    # a cell whose onset is on its bound says so in its title
    worst = [ax.get_title() for ax in panels[-3:]]
    assert any("on bound: t0" in title for title in worst)
