"""The example panels of a fit's plots: traces with the best, median and worst R², with
their fitted curves. Picking them needs the traces; drawing them needs only the picked
ones (`Examples`), so a plotting job gets a few traces instead of the whole file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from functions.fitting.figures import FIT_COLOR, figure
from functions.fitting.fit import FitArrays
from functions.fitting.models import get_model
from functions.fitting.traces import UNIT_HOURS


@dataclass(frozen=True)
class Examples:
    """The traces the example panels show: `groups` of rows of the fit (a label, such as
    "best ", and the rows), and the data and ids of the `rows` shown, in that order.
    Picked where the traces are (`pick_examples`), drawn where the plots are made."""

    groups: list[tuple[str, np.ndarray]]
    rows: np.ndarray  # (k,) rows of the fit
    t: np.ndarray  # (k, T) times in hours
    y: np.ndarray  # (k, T)
    fov: np.ndarray  # (k,)
    cell: np.ndarray  # (k,)

    def arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (no pickled objects: ids become text) for an npz file."""
        return {
            "ex_labels": np.array([label for label, _ in self.groups], dtype=str),
            "ex_sizes": np.array([len(r) for _, r in self.groups], dtype=np.int64),
            "ex_rows": self.rows,
            "ex_t": self.t,
            "ex_y": self.y,
            "ex_fov": np.array([str(_plain(v)) for v in self.fov], dtype=str),
            "ex_cell": np.array([str(_plain(v)) for v in self.cell], dtype=str),
        }

    @classmethod
    def from_arrays(cls, z: Any) -> Examples:
        """The examples `arrays` wrote (from a loaded npz)."""
        rows = np.asarray(z["ex_rows"], dtype=np.int64)
        cuts = np.cumsum(z["ex_sizes"])[:-1]
        groups = list(zip((str(v) for v in z["ex_labels"]), np.split(rows, cuts), strict=True))
        return cls(groups, rows, z["ex_t"], z["ex_y"], z["ex_fov"], z["ex_cell"])


def pick_examples(
    fit: FitArrays,
    t: np.ndarray,
    y: np.ndarray,
    *,
    fov: np.ndarray | None = None,
    cell: np.ndarray | None = None,
    per_group: int = 3,
) -> Examples:
    """The traces with the best, median and worst R² (`per_group` of each; with few
    traces each once, best first), and their data."""
    n = len(fit)
    fov = np.zeros(n, dtype=np.int64) if fov is None else np.asarray(fov)
    cell = np.arange(n) if cell is None else np.asarray(cell)
    order = np.flatnonzero(fit.success & np.isfinite(fit.r_squared))
    order = order[np.argsort(fit.r_squared[order], kind="stable")[::-1]]
    if len(order) <= 3 * per_group:  # few traces: each once, best first
        groups = [("", order[k : k + per_group]) for k in range(0, max(len(order), 1), per_group)]
    else:
        mid = len(order) // 2 - per_group // 2
        groups = [
            ("best ", order[:per_group]),
            ("median ", order[mid : mid + per_group]),
            ("worst ", order[::-1][:per_group][::-1]),
        ]
    rows = np.concatenate([r for _, r in groups]).astype(np.int64)
    t2 = np.broadcast_to(np.atleast_2d(t), y.shape)
    return Examples(groups, rows, t2[rows], y[rows], fov[rows], cell[rows])


def examples_figure(
    fit: FitArrays,
    t: np.ndarray,
    y: np.ndarray,
    model: str,
    *,
    fov: np.ndarray | None = None,
    cell: np.ndarray | None = None,
    time_unit: str = "h",
    per_group: int = 3,
) -> Any:
    """A grid of traces with their fitted curves: best, median and worst R², each
    panel titled with the cell's own id (fov, cell)."""
    examples = pick_examples(fit, t, y, fov=fov, cell=cell, per_group=per_group)
    return draw_examples(fit, examples, model, time_unit=time_unit, per_group=per_group)


def draw_examples(
    fit: FitArrays, examples: Examples, model: str, *, time_unit: str = "h", per_group: int = 3
) -> Any:
    """The figure of `examples_figure` for examples already picked."""
    m = get_model(model)
    groups = examples.groups
    fig, axes = figure(len(groups), per_group, (4.2 * per_group, 3.2 * len(groups)))
    per_unit = UNIT_HOURS.get(time_unit, 1.0)
    x_label = "dose" if m.name == "hill" else f"time ({time_unit})"
    side = fit.at_bound()
    drawn = shown = 0
    for g, (label, rows) in enumerate(groups):
        for j in range(per_group):
            ax = axes[g * per_group + j]
            if j >= len(rows):
                ax.set_visible(False)
                continue
            i, k = int(rows[j]), shown
            shown += 1
            ok = np.isfinite(examples.y[k]) & np.isfinite(examples.t[k])
            ti = examples.t[k][ok]
            scale = 1.0 if m.name == "hill" else per_unit
            ax.plot(ti / scale, examples.y[k][ok], ".", markersize=3, color="0.45", label="data")
            if ti.size:
                grid = np.linspace(ti.min(), ti.max(), 300)
                ax.plot(grid / scale, m.eval(grid, fit.params[i])[0], color=FIT_COLOR, label="fit")
            if m.name == "hill" and ti.size and ti.min() > 0:
                ax.set_xscale("log")
            pinned = [fit.names[c] for c in np.flatnonzero(side[i])]
            note = f"; on bound: {', '.join(pinned)}" if pinned else ""
            ax.set_title(
                f"{_cell_id(examples.fov[k], examples.cell[k])}\n"
                f"{label}R² = {fit.r_squared[i]:.3f}{note}",
                fontsize=9,
            )
            ax.set_xlabel(x_label)
            ax.set_ylabel("intensity (a.u.)")
            if drawn == 0:
                ax.legend(fontsize=8, frameon=False, loc="best")
            drawn += 1
    if drawn == 0:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no successful fit", ha="center", va="center")
        axes[0].set_axis_off()
    return fig


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _cell_id(fov: Any, cell: Any) -> str:
    """ "fov 2, cell 17"; a cell named by its column ("cell_1") keeps its own name."""
    fov, cell = (v.item() if isinstance(v, np.generic) else v for v in (fov, cell))
    # ids are shown as written: a "$" would otherwise start matplotlib's math text
    fov, name = str(fov).replace("$", r"\$"), str(cell).replace("$", r"\$")
    return f"fov {fov}, {name}" if name.lower().startswith("cell") else f"fov {fov}, cell {name}"
