"""Trace quality filters: flag, never drop, with the reason."""

from __future__ import annotations

import numpy as np


def flag_traces(
    cell: np.ndarray,
    bbox: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    height: int,
    width: int,
    min_length: int = 30,
    border_margin: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Flag traces that are too short or come near the frame border.

    Parameters
    ----------
    cell : (N,) int ndarray
        Track id of every observation (one row per cell and frame).
    bbox : tuple of four (N,) ndarray
        ``(y0, x0, y1, x1)`` of every observation, upper bounds exclusive.
    height, width : int
        Frame size.
    min_length : int, optional
        Fewest frames a trace must cover.
    border_margin : int, optional
        A trace whose box comes within this many pixels of an edge in any frame is
        flagged.

    Returns
    -------
    good : (N,) bool ndarray
    reason : (N,) object ndarray of str
        ``""``, ``"short"``, ``"border"`` or ``"short,border"``.

    Examples
    --------
    >>> import numpy as np
    >>> c = np.array([1, 1, 2])
    >>> b = tuple(np.array(v) for v in ([60, 60, 0], [60, 60, 60], [70, 70, 9], [70, 70, 70]))
    >>> flag_traces(c, b, height=200, width=200, min_length=2)[1].tolist()
    ['', '', 'short,border']
    """
    if min_length < 0 or border_margin < 0:
        raise ValueError(
            f"min_length and border_margin must be >= 0, got {min_length}, {border_margin}"
        )
    if any(len(b) != len(cell) for b in bbox):
        raise ValueError(f"cell has {len(cell)} rows but bbox has {[len(b) for b in bbox]}")
    if len(cell) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=object)
    ids, inv, length = np.unique(cell, return_inverse=True, return_counts=True)
    y0, x0, y1, x1 = bbox
    near = (
        (y0 < border_margin)
        | (x0 < border_margin)
        | (y1 > height - border_margin)
        | (x1 > width - border_margin)
    )
    near_cell = np.bincount(inv, weights=near, minlength=len(ids)) > 0
    short_cell = length < min_length
    reasons = np.array(["", "short", "border", "short,border"], dtype=object)
    code = short_cell.astype(np.int64) + 2 * near_cell.astype(np.int64)
    return (code == 0)[inv], reasons[code][inv]


def summarise(cell: np.ndarray, good: np.ndarray, reason: np.ndarray) -> dict[str, object]:
    """Cells found, tracked over more than one frame, kept, and filtered by reason."""
    ids, first, counts = np.unique(cell, return_index=True, return_counts=True)
    per_reason = reason[first] if len(cell) else np.zeros(0, dtype=object)
    return {
        "cells_found": len(ids),
        "cells_tracked": int((counts > 1).sum()),
        "cells_kept": int(good[first].sum()) if len(cell) else 0,
        "filtered": {
            r: int(sum(r in str(x).split(",") for x in per_reason)) for r in ("short", "border")
        },
    }
