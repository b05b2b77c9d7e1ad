"""Trace filters flag (never drop) short and border traces, with reasons."""

from __future__ import annotations

import numpy as np
import pytest

from functions.microscopy.filters import flag_traces, summarise


def boxes(
    rows: list[tuple[int, int, int, int]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    a = np.array(rows)
    return a[:, 0], a[:, 1], a[:, 2], a[:, 3]


@pytest.mark.parametrize(
    ("min_length", "margin", "reasons"),
    [
        (3, 10, ["", "", "", "short", "short,border"]),
        (1, 10, ["", "", "", "", "border"]),
        (1, 0, ["", "", "", "", ""]),
        (4, 0, ["short"] * 5),
    ],
)
def test_flags(min_length: int, margin: int, reasons: list[str]) -> None:
    cell = np.array([1, 1, 1, 2, 3])
    b = boxes([(20, 20, 30, 30)] * 4 + [(5, 20, 15, 30)])
    good, why = flag_traces(
        cell, b, height=100, width=100, min_length=min_length, border_margin=margin
    )
    assert why.tolist() == reasons
    assert good.tolist() == [r == "" for r in reasons]


def test_border_on_every_side() -> None:
    b = boxes([(20, 20, 30, 30), (20, 20, 95, 30), (20, 20, 30, 95), (20, 2, 30, 30)])
    _, why = flag_traces(np.arange(4), b, height=100, width=100, min_length=0, border_margin=10)
    assert why.tolist() == ["", "border", "border", "border"]


def test_summary() -> None:
    cell = np.array([1, 1, 2, 3, 3])
    good, why = flag_traces(
        cell,
        boxes([(20, 20, 30, 30)] * 4 + [(0, 0, 5, 5)]),
        height=100,
        width=100,
        min_length=2,
        border_margin=5,
    )
    s = summarise(cell, good, why)
    assert s == {
        "cells_found": 3,
        "cells_tracked": 2,
        "cells_kept": 1,
        "filtered": {"short": 1, "border": 1},
    }


def test_validation() -> None:
    with pytest.raises(ValueError, match="rows"):
        flag_traces(np.arange(3), boxes([(0, 0, 1, 1)] * 2), height=9, width=9)
