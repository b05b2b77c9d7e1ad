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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_from_mask_labels_as_scipy(seed: int) -> None:
    """8-connected components from the mask's runs: scipy's labels, numbering included."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    mask = ndimage.uniform_filter(rng.random((3, 50, 67)), size=(1, 3, 3)) > 0.55
    mask[1, :, 0] = mask[1, :, -1] = True  # runs on both edges of every row
    mask[2, ::2, ::2] = True  # diagonal-only contacts
    mask[0] = False  # an empty frame
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = True
    expected, _ = ndimage.label(np.pad(mask, ((0, 0), (1, 1), (1, 1))), in_plane)
    fg = Foreground.from_mask(mask)
    np.testing.assert_array_equal(fg.padded, expected)
    ref = Foreground.from_padded(expected)
    np.testing.assert_array_equal(fg.index, ref.index)
    np.testing.assert_array_equal(fg.label, ref.label)
    assert fg.n == ref.n
    np.testing.assert_array_equal(fg._run_starts, ref._run_starts)
    assert Foreground.from_mask(np.zeros((2, 5, 6), bool)).n == 0
