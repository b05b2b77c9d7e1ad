"""Runs and flat indices of labelled pixels describe exactly the label image."""

from __future__ import annotations

import numpy as np
import pytest

from functions.microscopy.foreground import Foreground, runs_of
from functions.microscopy.tracking import overlap_iou, run_overlaps
from tests.functions.microscopy.test_extraction import blobs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_runs_rebuild_the_labels(seed: int) -> None:
    labels = blobs(seed, (3, 41, 57))
    labels[1, :, -1] = labels[1, :, 0] = 7  # runs touching both edges of a row
    fg = Foreground.from_labels(labels)
    r = fg.runs
    rebuilt = np.zeros_like(labels)
    for f, y, a, b, lab in zip(r.frame, r.row, r.start, r.stop, r.label, strict=True):
        rebuilt[f, y, a:b] = lab
    np.testing.assert_array_equal(rebuilt, labels)
    # maximal: two runs of one label in one row never touch
    same = (r.frame[1:] == r.frame[:-1]) & (r.row[1:] == r.row[:-1])
    assert not (same & (r.start[1:] == r.stop[:-1]) & (r.label[1:] == r.label[:-1])).any()
    t, y, x = fg.coords()
    np.testing.assert_array_equal(np.stack([t, y, x]), np.stack(np.nonzero(labels)))
    values = np.random.default_rng(seed).random(labels.shape)
    np.testing.assert_array_equal(fg.values(values), values[labels > 0])
    with pytest.raises(ValueError, match="match"):
        fg.values(values[:, :-1])


def test_run_overlaps_equal_pixel_counts() -> None:
    a, b = blobs(3, (1, 60, 70))[0], blobs(4, (1, 60, 70))[0]
    la, lb, inter = run_overlaps(runs_of(a), runs_of(b))
    for x, y, n in zip(la, lb, inter, strict=True):
        assert n == np.count_nonzero((a == x) & (b == y))
    both = (a > 0) & (b > 0)
    expected = set(zip(a[both].tolist(), b[both].tolist(), strict=True))
    assert set(zip(la.tolist(), lb.tolist(), strict=True)) == expected
    pa, _, iou = overlap_iou(a, b)
    assert np.all((iou > 0) & (iou <= 1)) and len(pa) == len(expected)


def test_empty_frames() -> None:
    fg = Foreground.from_labels(np.zeros((2, 5, 6), np.int32))
    assert len(fg.runs) == 0 and fg.n == 0 and len(fg.unpadded_index) == 0
    assert len(run_overlaps(fg.runs, fg.runs)[0]) == 0
