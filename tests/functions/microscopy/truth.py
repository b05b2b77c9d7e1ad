"""Compare a FOV's traces with the synthetic ground truth (test helper, not a test)."""

from __future__ import annotations

from typing import Any

import numpy as np


def match_truth(table: Any, cells: list[dict[str, Any]], *, radius: float = 5.0) -> dict[str, Any]:
    """Match every ground-truth cell-frame to the trace row whose centroid is nearest.

    Returns the fraction of cells tracked over all their frames under one id used by no
    other cell, and the relative error of ``intensity_total`` (absolute and signed,
    measured minus truth) over matched cell-frames whose truth exceeds 10 % of the
    cell's maximum.
    """
    frame = table["frame"].to_numpy()
    cell = table["cell"].to_numpy()
    px, py = table["position_x"].to_numpy(), table["position_y"].to_numpy()
    total = table["intensity_total_ch_1"].to_numpy()
    by_frame = {f: np.flatnonzero(frame == f) for f in np.unique(frame)}
    owners: dict[int, set[int]] = {}
    outcome: dict[int, int | None] = {}
    truth_i, measured_i = [], []
    for c in cells:
        ids = set()
        complete = True
        peak = max(c["intensity"]) or 1.0
        for f, (x, y), ti in zip(c["frames"], c["positions"], c["intensity"], strict=True):
            rows = by_frame.get(f, np.zeros(0, dtype=np.int64))
            if not len(rows):
                complete = False
                continue
            d = np.hypot(px[rows] - x, py[rows] - y)
            k = int(np.argmin(d))
            if d[k] > radius:
                complete = False
                continue
            ids.add(int(cell[rows[k]]))
            if ti > 0.1 * peak:
                truth_i.append(ti)
                measured_i.append(total[rows[k]])
        track = next(iter(ids)) if complete and len(ids) == 1 else None
        outcome[c["id"]] = track
        if track is not None:
            owners.setdefault(track, set()).add(c["id"])
    shared = {tid for tid, o in owners.items() if len(o) > 1}
    ok = [v is not None and v not in shared for v in outcome.values()]
    t, m = np.asarray(truth_i), np.asarray(measured_i)
    return {
        "tracked_fraction": float(np.mean(ok)) if ok else 0.0,
        "n_cells": len(ok),
        "rel_error": np.abs(m - t) / t if len(t) else np.zeros(0),
        "signed_error": (m - t) / t if len(t) else np.zeros(0),
    }


def accuracy_figures(signed_error: np.ndarray) -> dict[str, float]:
    """The issue's acceptance figures (in %) from signed relative errors."""
    e = np.asarray(signed_error, dtype=np.float64)
    return {
        "median_abs_pct": float(np.median(np.abs(e)) * 100),
        "p90_abs_pct": float(np.percentile(np.abs(e), 90) * 100),
        "median_signed_pct": float(np.median(e) * 100),
    }
