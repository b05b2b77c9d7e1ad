"""IoU tracking: identity, late appearance, gap closing, optimal assignment."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from functions.microscopy.tracking import IoUTracker, match_pairs, overlap_iou


def frame_with(boxes: list[tuple[int, int]], size: int = 64, half: int = 4) -> np.ndarray:
    f = np.zeros((size, size), np.int32)
    for k, (y, x) in enumerate(boxes, start=1):
        f[y - half : y + half, x - half : x + half] = k
    return f


def test_identity_follows_moving_cells_in_any_label_order() -> None:
    tr = IoUTracker()
    a = tr.update(frame_with([(10, 10), (40, 40)]))
    b = tr.update(frame_with([(41, 41), (11, 10)]))  # labels swapped, cells moved 1 px
    assert (b[1], b[2]) == (a[2], a[1])


def test_late_cells_get_new_ids() -> None:
    tr = IoUTracker()
    tr.update(frame_with([(10, 10)]))
    ids = tr.update(frame_with([(10, 10), (40, 40)]))
    assert ids[2] == 2 and ids[1] == 1


@pytest.mark.parametrize(
    ("gap", "max_gap", "same"), [(1, 2, True), (2, 2, True), (3, 2, False), (1, 0, False)]
)
def test_gap_closing(gap: int, max_gap: int, same: bool) -> None:
    tr = IoUTracker(max_gap=max_gap)
    first = tr.update(frame_with([(10, 10), (40, 40)]))
    for _ in range(gap):
        tr.update(frame_with([(40, 40)]))
    back = tr.update(frame_with([(40, 40), (10, 11)]))
    assert bool(back[2] == first[1]) is same
    assert back[1] == first[2]


def test_ids_are_not_capped_at_uint16() -> None:
    tr = IoUTracker()
    tr.next_id = 65_535
    ids = tr.update(frame_with([(10, 10), (40, 40)]))
    assert ids.dtype == np.int64 and ids[1:].tolist() == [65_535, 65_536]


def test_min_iou_threshold() -> None:
    tr = IoUTracker(min_iou=0.5)
    a = tr.update(frame_with([(20, 20)]))
    b = tr.update(frame_with([(20, 25)]))  # IoU 3·8 / (2·64 - 24) = 0.23
    assert b[1] != a[1]


def test_iou_values() -> None:
    a, b, iou = overlap_iou(frame_with([(20, 20)]), frame_with([(20, 24)]))
    assert a.tolist() == [1] and b.tolist() == [1]
    assert iou[0] == pytest.approx(32 / 96)


@pytest.mark.parametrize("seed", range(5))
def test_match_pairs_is_optimal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 5, 12)
    b = rng.integers(1, 5, 12)
    pairs = {(int(x), int(y)): float(s) for x, y, s in zip(a, b, rng.random(12), strict=True)}
    ka = np.array([p[0] for p in pairs])
    kb = np.array([p[1] for p in pairs])
    ma, mb = match_pairs(ka, kb, np.array(list(pairs.values())))
    assert len(set(ma)) == len(ma) and len(set(mb)) == len(mb)
    got = sum(pairs[(int(x), int(y))] for x, y in zip(ma, mb, strict=True))
    best = 0.0
    items = list(pairs.items())
    for r in range(1, 5):
        for combo in itertools.combinations(items, r):
            la = [p[0][0] for p in combo]
            lb = [p[0][1] for p in combo]
            if len(set(la)) == r and len(set(lb)) == r:
                best = max(best, sum(p[1] for p in combo))
    assert got == pytest.approx(best)


def test_validation() -> None:
    with pytest.raises(ValueError, match="min_iou"):
        IoUTracker(min_iou=0)
    with pytest.raises(ValueError, match="shape"):
        IoUTracker().update(np.zeros((2, 3, 3), np.int32))
