"""Per-label maximum and median: both ways (a sort per label, one packed sort) agree
exactly with numpy on touching labels, missing labels, negatives, even and odd counts."""

from __future__ import annotations

import numpy as np
import pytest

from functions.microscopy import rank_stats
from functions.microscopy.foreground import Foreground


def labelled_values() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12)
    labels = np.zeros((3, 40, 50), np.int32)
    labels[0, 2:20, 3:30] = 1
    labels[0, 10:25, 30:45] = 2  # touches label 1 along a column
    labels[1, 5:6, 5:9] = 4  # label 3 is missing; 4 pixels (even)
    labels[1, 20:39, 1:49] = 5
    labels[2, 0:40:2, 7] = 6  # one pixel per run
    labels[2, 30, 40:47] = 7  # 7 pixels (odd)
    values = rng.normal(0, 50, labels.shape).astype(np.float32)
    values[0, 3, 4] = values[0, 3, 5] = -0.0  # signed zeros and ties
    return labels, values


@pytest.mark.parametrize("pixels_per_label", [0, 10**9], ids=["by_label", "packed_sort"])
def test_both_ways_equal_numpy(monkeypatch: pytest.MonkeyPatch, pixels_per_label: int) -> None:
    monkeypatch.setattr(rank_stats, "LOOP_MIN_PIXELS_PER_LABEL", pixels_per_label)
    labels, values = labelled_values()
    fg = Foreground.from_labels(labels)
    at = fg.values(values)
    counts = np.bincount(fg.label, minlength=fg.n + 1).astype(np.int64)
    mx, med = rank_stats.max_median(fg, at, counts)
    for k in range(fg.n + 1):
        v = values[labels == k].astype(np.float64) if k else np.zeros(0)
        if k == 0 or k == 3:
            assert np.isnan(mx[k]) and np.isnan(med[k])
            continue
        assert mx[k] == v.max() and med[k] == np.median(v), k
