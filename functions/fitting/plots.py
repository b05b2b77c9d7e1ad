"""PNG plots of a fit: parameter histograms, R² histogram, example traces with fits.

Figures are built with `matplotlib.figure.Figure` on the Agg canvas (no pyplot, no
global state), so plotting is safe in worker threads and needs no display. Each plot is
made on its own by `fit_plots`: one that fails is logged and reported, and never fails
the fit whose results it shows.

The `*_figure` functions return the figures (tests read their labels, titles and
legends); the others render them to PNG bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from functions.fitting.example_plots import (
    Examples,
    draw_examples,
    examples_figure,
    pick_examples,
)
from functions.fitting.figures import BOUND_COLOR, DATA_COLOR, figure, integer_counts, png
from functions.fitting.fit import FitArrays
from functions.fitting.models import Model, get_model
from functions.fitting.results import quality_band, search_limited

log = logging.getLogger(__name__)

LOG_SPAN = 100.0  # positive values spanning more than this factor get a log axis


@dataclass(frozen=True)
class PlotSet:
    """The PNGs made, by file name, and one line per plot that could not be made."""

    files: dict[str, bytes] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def fit_plots(
    fit: FitArrays,
    t: np.ndarray,
    y: np.ndarray,
    model: str,
    *,
    fov: np.ndarray | None = None,
    cell: np.ndarray | None = None,
    time_unit: str = "h",
) -> PlotSet:
    """Every plot of a fit, each made independently of the others.

    Parameters
    ----------
    fit : FitArrays
    t : (T,) or (N, T) ndarray
        Times in hours (as fitted).
    y : (N, T) ndarray
    model : str
    fov, cell : (N,) ndarray, optional
        Each trace's own id, for panel titles (default: the row number as cell).
    time_unit : str
        The unit of the file's time column: times are shown in it.

    Returns
    -------
    PlotSet
        A plot that raised is missing from `files`, and its error is in `errors`.
    """
    return plot_set(
        fit, lambda: pick_examples(fit, t, y, fov=fov, cell=cell), model, time_unit=time_unit
    )


def plot_set(
    fit: FitArrays,
    examples: Callable[[], Examples],
    model: str,
    *,
    time_unit: str = "h",
) -> PlotSet:
    """`fit_plots` with the example traces given by `examples` (called once, by the
    example plot: an error picking them fails that plot alone)."""
    makers = {
        "parameters.png": lambda: png(parameter_figure(fit, model)),
        "r_squared.png": lambda: png(r_squared_figure(fit, model)),
        "examples.png": lambda: png(draw_examples(fit, examples(), model, time_unit=time_unit)),
    }
    out = PlotSet()
    for name, make in makers.items():
        try:
            out.files[name] = make()
        except Exception as exc:  # a plot must never fail the fit it shows
            log.warning("plot %s of a %s fit failed", name, model, exc_info=True)
            out.errors.append(f"{name}: {type(exc).__name__}: {exc}")
    return out


def parameter_histograms(fit: FitArrays, model: str) -> bytes:
    return png(parameter_figure(fit, model))


def r_squared_histogram(fit: FitArrays, model: str) -> bytes:
    return png(r_squared_figure(fit, model))


def example_fits(fit: FitArrays, t: np.ndarray, y: np.ndarray, model: str, **ids: Any) -> bytes:
    return png(examples_figure(fit, t, y, model, **ids))


def _unit(model: Model, unit: str) -> str:
    """A parameter's unit as fitted: times are in hours once read."""
    if model.name == "hill":
        return unit
    return unit.replace("time", "h")


def _label(name: str, unit: str) -> str:
    return f"{name} ({unit})" if unit else name


# --- parameter histograms -----------------------------------------------------------------


def parameter_figure(fit: FitArrays, model: str) -> Any:
    """One histogram per fitted parameter over the successful fits, with the bounds
    the parameter was fitted within and how many fits ended on each."""
    m = get_model(model)
    free = [i for i, f in enumerate(fit.free) if f]
    cols = max(min(3, len(free)), 1)
    rows = max(-(-len(free) // cols), 1)
    fig, axes = figure(rows, cols, (4.2 * cols, 3.4 * rows))
    side = fit.at_bound()
    for ax, i in zip(axes, free, strict=False):
        p = m.parameters[i]
        ok = fit.success & np.isfinite(fit.params[:, i])
        values = fit.params[ok, i]
        unit = _unit(m, p.unit)
        title = f"{p.name}: {p.description}" if p.description else p.name
        ax.set_title(f"{title} (n={values.size})", fontsize=10)
        ax.set_xlabel(_label(p.name, unit))
        ax.set_ylabel("traces")
        integer_counts(ax)
        if values.size == 0:
            ax.text(0.5, 0.5, "no successful fit", ha="center", va="center", transform=ax.transAxes)
            continue
        # rates and amounts bounded away from 0 spread over decades: a log axis
        log_axis = _histogram(ax, values, positive=p.lower > 0 and p.window is None)
        _mark_bounds(ax, values, fit.lower[ok, i], fit.upper[ok, i], side[ok, i], unit, log_axis)
    for ax in axes[len(free) :]:
        ax.set_visible(False)
    return fig


def _histogram(ax: Any, values: np.ndarray, *, positive: bool, bins: int = 40) -> bool:
    """Histogram that any values can be drawn as (one value, values a few ulps apart,
    values of a `positive` parameter spanning decades); returns whether the axis is
    logarithmic."""
    lo, hi = float(values.min()), float(values.max())
    scale = max(abs(lo), abs(hi), 1e-300)
    if hi - lo <= 1e-9 * scale or not np.isfinite(hi - lo):
        # one value (to rounding): one bar around it
        half = max(1e-3 * scale, 1e-12)
        ax.hist(values, bins=1, range=(lo - half, hi + half), color=DATA_COLOR)
        ax.set_xlim(lo - 10 * half, hi + 10 * half)
        return False
    n_bins = int(min(bins, max(np.unique(values).size, 1)))
    if positive and lo > 0 and hi / lo > LOG_SPAN:
        edges = np.geomspace(lo, hi, n_bins + 1)
        ax.hist(values, bins=edges, color=DATA_COLOR)
        ax.set_xscale("log")
        return True
    ax.hist(values, bins=np.linspace(lo, hi, n_bins + 1), color=DATA_COLOR)
    return False


def _mark_bounds(
    ax: Any,
    values: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    side: np.ndarray,
    unit: str,
    log_axis: bool,
) -> None:
    """Dashed lines at the bounds near the values (far ones, which would squash the
    histogram, are named in the legend only), with the count of fits on each."""
    from matplotlib.lines import Line2D

    vmin, vmax = float(values.min()), float(values.max())
    handles = []
    sides: tuple[tuple[str, np.ndarray, int, Literal["--", ":"]], ...] = (
        ("lower", lower, -1, "--"),
        ("upper", upper, 1, ":"),
    )
    for label, bounds, code, style in sides:
        distinct = np.unique(bounds)
        shown = distinct if distinct.size <= 3 else distinct[[0, -1]]
        text = ", ".join(f"{b:.4g}" for b in shown) + (" …" if distinct.size > 3 else "")
        on = int((side == code).sum())
        visible = [b for b in shown if _near(float(b), vmin, vmax, log_axis)]
        for b in visible:
            ax.axvline(b, color=BOUND_COLOR, linestyle=style, linewidth=1.2)
        where = "" if visible else ", off the axis"
        handles.append(
            Line2D(
                [],
                [],
                color=BOUND_COLOR,
                linestyle=style,
                label=f"{label} bound {text}{' ' + unit if unit else ''}{where}: "
                f"{on} fit{'' if on == 1 else 's'} on it",
            )
        )
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.85)


def _near(bound: float, vmin: float, vmax: float, log_axis: bool) -> bool:
    """Whether a bound lies close enough to the values to draw without squashing them:
    within a decade on a log axis, within half the values' range otherwise."""
    if log_axis:
        return bound > 0 and bound >= vmin / 10 and bound <= vmax * 10
    pad = 0.5 * max(vmax - vmin, 0.1 * max(abs(vmin), abs(vmax)), 1e-12)
    return vmin - pad <= bound <= vmax + pad


# --- R² -----------------------------------------------------------------------------------


def r_squared_figure(fit: FitArrays, model: str, *, bins: int = 50) -> Any:
    """Histogram of R² over all fitted traces, with the quality-band thresholds."""
    from functions.fitting.results import FAIR_R2, GOOD_R2

    fig, axes = figure(1, 1, (5.5, 3.8))
    ax = axes[0]
    r2 = fit.r_squared[np.isfinite(fit.r_squared)]
    left = min(0.6, float(np.floor(r2.min() * 10) / 10)) if r2.size else 0.0
    ax.hist(r2, bins=bins, range=(left, 1.0), color=DATA_COLOR)
    ax.axvline(GOOD_R2, color="0.25", linestyle="--", linewidth=1, label=f"good: R² > {GOOD_R2}")
    ax.axvline(
        FAIR_R2,
        color="0.55",
        linestyle="--",
        linewidth=1,
        label=f"fair: R² > {FAIR_R2}; poor below",
    )
    bands = quality_band(fit.r_squared, fit.success, search_limited(fit, model))
    counts = ", ".join(f"{b} {int((bands == b).sum())}" for b in ("good", "fair", "poor", "failed"))
    ax.legend(title=counts, fontsize=8, title_fontsize=8, loc="upper left", frameon=False)
    ax.set_xlim(left, 1.0)
    ax.set_xlabel("R²")
    ax.set_ylabel("traces")
    integer_counts(ax)
    ax.set_title(f"Goodness of fit, {model} (n={r2.size})", fontsize=10)
    return fig
