"""The `load-traces` answer: what a traces file holds, without fitting it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from functions.fitting.traces import Traces


def summarize_traces(traces: Traces, *, preview: int = 5) -> dict[str, Any]:
    """The `load-traces` answer: counts, points per cell, units, ranges, a preview."""
    valid = np.isfinite(traces.y)
    per_cell = valid.sum(axis=1)
    values = traces.y[valid]
    t_all = np.broadcast_to(traces.t, traces.y.shape)[valid]
    items = []
    for i in range(min(preview, len(traces))):
        row = valid[i]
        ti = np.broadcast_to(traces.t, traces.y.shape)[i][row]
        items.append(
            {
                "fov": _plain(traces.fov[i]),
                "cell": _plain(traces.cell[i]),
                "time_h": [float(v) for v in ti],
                "value": [float(v) for v in traces.y[i][row]],
            }
        )
    return {
        "cell_count": len(traces),
        "time_points": {
            "min": int(per_cell.min()),
            "median": float(np.median(per_cell)),
            "max": int(per_cell.max()),
        },
        "time_units": traces.time_unit,
        "time_range_h": [float(t_all.min()), float(t_all.max())] if t_all.size else None,
        "value_range": [float(values.min()), float(values.max())] if values.size else None,
        "nan_count": traces.nan_values,
        "missing_points": int((~valid).sum()),
        "empty_cells": int((per_cell == 0).sum()),
        "layout": traces.layout,
        "preview": items,
    }


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
