"""PNG plots of a fit: parameter histograms, R² histogram, example traces with fits.

Figures are built with `matplotlib.figure.Figure` on the Agg canvas (no pyplot, no
global state), so plotting is safe in worker threads and needs no display.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from functions.fitting.fit import FitArrays
from functions.fitting.models import get_model


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _figure(rows: int, cols: int, size: tuple[float, float]) -> tuple[Any, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    return fig, axes


def parameter_histograms(fit: FitArrays, *, bins: int = 40) -> bytes:
    """One histogram per fitted (free) parameter over the successful fits."""
    names = [n for n, f in zip(fit.names, fit.free, strict=True) if f]
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = _figure(rows, cols, (4.0 * cols, 3.0 * rows))
    for ax, name in zip(axes, names, strict=False):
        values = fit.params[fit.success, fit.names.index(name)]
        values = values[np.isfinite(values)]
        if values.size:
            ax.hist(values, bins=bins, color="#3b6ea8")
        ax.set_title(f"{name} (n={values.size})")
        ax.set_ylabel("traces")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return _png(fig)


def r_squared_histogram(fit: FitArrays, *, bins: int = 50) -> bytes:
    """Histogram of R² over all fitted traces, with the quality-band thresholds."""
    fig, axes = _figure(1, 1, (5.0, 3.5))
    ax = axes[0]
    r2 = fit.r_squared[np.isfinite(fit.r_squared)]
    ax.hist(r2, bins=bins, range=(0.0, 1.0), color="#3b6ea8")
    for x in (0.7, 0.9):
        ax.axvline(x, color="0.4", linestyle="--", linewidth=1)
    ax.set_xlabel("R²")
    ax.set_ylabel("traces")
    ax.set_title(f"R² (n={r2.size})")
    return _png(fig)


def example_fits(
    fit: FitArrays, t: np.ndarray, y: np.ndarray, model: str, *, per_group: int = 3
) -> bytes:
    """A grid of traces with their fitted curves: best, median and worst R² rows."""
    m = get_model(model)
    order = np.flatnonzero(fit.success & np.isfinite(fit.r_squared))
    order = order[np.argsort(fit.r_squared[order])[::-1]]
    mid = max(len(order) // 2 - per_group // 2, 0)
    groups = [
        ("best", order[:per_group]),
        ("median", order[mid : mid + per_group]),
        ("worst", order[::-1][:per_group][::-1]),
    ]
    fig, axes = _figure(3, per_group, (4.0 * per_group, 9.0))
    t2 = np.broadcast_to(np.atleast_2d(t), y.shape)
    for g, (label, rows) in enumerate(groups):
        for j in range(per_group):
            ax = axes[g * per_group + j]
            if j >= len(rows):
                ax.set_visible(False)
                continue
            i = rows[j]
            ok = np.isfinite(y[i]) & np.isfinite(t2[i])
            ti = t2[i][ok]
            ax.plot(ti, y[i][ok], ".", markersize=3, color="0.5")
            if ti.size:
                grid = np.linspace(ti.min(), ti.max(), 300)
                ax.plot(grid, m.eval(grid, fit.params[i])[0], color="#c0392b")
            ax.set_title(f"{label}: #{i} R²={fit.r_squared[i]:.3f}", fontsize=9)
    return _png(fig)


def fit_plots(fit: FitArrays, t: np.ndarray, y: np.ndarray, model: str) -> dict[str, bytes]:
    """All plot artefacts by file name."""
    return {
        "parameters.png": parameter_histograms(fit),
        "r_squared.png": r_squared_histogram(fit),
        "examples.png": example_fits(fit, t, y, model),
    }
