"""Cell tracking by mask overlap (IoU) with optimal assignment and gap closing.

Frames are fed in order to an :class:`IoUTracker`; each call maps the frame's connected
components to track ids. Differences from PyAMA: cells that appear after the first
frame get new ids, a cell missing for up to ``max_gap`` frames keeps its id when it
reappears, and ids are int64 (never capped at 65,535).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from functions.microscopy.foreground import Runs, runs_of


def overlap_iou(
    prev: np.ndarray,
    cur: np.ndarray,
    *,
    prev_area: np.ndarray | None = None,
    cur_area: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection over union of every overlapping pair of labels of two frames.

    Parameters
    ----------
    prev, cur : (Y, X) integer ndarray
        Label images (0 = background).
    prev_area, cur_area : ndarray, optional
        ``bincount`` of each image when already known.

    Returns
    -------
    a, b : (K,) int64 ndarray
        Label pairs that overlap (``a`` from `prev`, ``b`` from `cur`).
    iou : (K,) float64 ndarray
    """
    if prev.shape != cur.shape:
        raise ValueError(f"label images differ in shape: {prev.shape} and {cur.shape}")
    ra, rb = runs_of(prev), runs_of(cur)
    if prev_area is None:
        prev_area = np.bincount(ra.label, weights=ra.length, minlength=1)
    if cur_area is None:
        cur_area = np.bincount(rb.label, weights=rb.length, minlength=1)
    return run_overlap_iou(ra, rb, prev_area, cur_area)


def run_overlaps(a: Runs, b: Runs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlapping label pairs of two frames' runs and their intersections (px).

    Runs of one frame are disjoint and in raster order, so the runs of `a` that meet a
    run of `b` are a contiguous range found by two binary searches.

    Returns
    -------
    la, lb, inter : (K,) int64 ndarray
    """
    if not len(a) or not len(b):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    ar, br = a.row.astype(np.int64) << 32, b.row.astype(np.int64) << 32
    lo = np.searchsorted(ar | a.stop, br | b.start, side="right")  # a.stop > b.start
    hi = np.searchsorted(ar | a.start, br | b.stop, side="left")  # a.start < b.stop
    count = np.maximum(hi - lo, 0)
    ib = np.repeat(np.arange(len(b)), count)
    ia = lo[ib] + np.arange(len(ib)) - np.repeat(np.cumsum(count) - count, count)
    inter = np.minimum(a.stop[ia], b.stop[ib]) - np.maximum(a.start[ia], b.start[ib])
    la, lb = a.label[ia].astype(np.int64), b.label[ib].astype(np.int64)
    nb = int(lb.max()) + 1 if len(lb) else 1
    pairs, where = np.unique(la * nb + lb, return_inverse=True)
    total = np.bincount(where, weights=inter).astype(np.int64)
    return pairs // nb, pairs % nb, total


def run_overlap_iou(
    a: Runs, b: Runs, area_a: np.ndarray, area_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`overlap_iou`, from runs and each label's area."""
    la, lb, inter = run_overlaps(a, b)
    return la, lb, inter / (area_a[la] + area_b[lb] - inter)


def match_pairs(a: np.ndarray, b: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of candidate pairs maximising the total score.

    Unambiguous pairs (each side appears once) are taken directly; each connected group
    of competing pairs is solved with ``scipy.optimize.linear_sum_assignment``.

    Returns
    -------
    a, b : (M,) int64 ndarray
        Matched pairs.
    """
    if a.size == 0:
        return a, b
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    single = (np.bincount(ia)[ia] == 1) & (np.bincount(ib)[ib] == 1)
    out_a, out_b = [a[single]], [b[single]]
    if not single.all():
        from scipy.optimize import linear_sum_assignment
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        ia, ib, s = ia[~single], ib[~single], score[~single]
        na = len(ua)
        graph = coo_matrix((np.ones(len(ia)), (ia, na + ib)), shape=(na + len(ub),) * 2)
        _, comp = connected_components(graph, directed=False)
        group = comp[ia]
        for g in np.unique(group):
            sel = group == g
            ra, rinv_a = np.unique(ia[sel], return_inverse=True)
            rb, rinv_b = np.unique(ib[sel], return_inverse=True)
            cost = np.zeros((len(ra), len(rb)))
            cost[rinv_a, rinv_b] = -s[sel]
            r, c = linear_sum_assignment(cost)
            keep = cost[r, c] < 0
            out_a.append(ua[ra[r[keep]]])
            out_b.append(ub[rb[c[keep]]])
    return np.concatenate(out_a), np.concatenate(out_b)


class IoUTracker:
    """Assign track ids to the labelled cells of consecutive frames.

    Parameters
    ----------
    min_iou : float, optional
        Smallest IoU that links two masks.
    max_gap : int, optional
        Frames a cell may be missing and still keep its id.

    Examples
    --------
    >>> import numpy as np
    >>> tr = IoUTracker()
    >>> f = np.zeros((8, 8), np.int32); f[2:5, 2:5] = 1
    >>> tr.update(f).tolist(), tr.update(f).tolist()
    ([0, 1], [0, 1])
    """

    def __init__(self, *, min_iou: float = 0.1, max_gap: int = 2) -> None:
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {max_gap}")
        self.min_iou = min_iou
        self.max_gap = max_gap
        self.next_id = 1
        # (runs labelled with track ids, pixel count per track id) of the last
        # max_gap + 1 frames: runs, not images, so a frame costs its cells, not its pixels
        self._history: deque[tuple[Runs, np.ndarray]] = deque(maxlen=max_gap + 1)
        self._last_seen: dict[int, int] = {}
        self._frame = -1

    def __repr__(self) -> str:
        return f"IoUTracker(min_iou={self.min_iou}, max_gap={self.max_gap})"

    def update(self, labels: np.ndarray) -> np.ndarray:
        """Track ids for one frame.

        Parameters
        ----------
        labels : (Y, X) integer ndarray
            Connected components of the frame, 1..n (0 = background).

        Returns
        -------
        ids : (n + 1,) int64 ndarray
            ``ids[label]`` is the track id of component ``label``; ``ids[0] = 0``.
        """
        if labels.ndim != 2:
            raise ValueError(f"labels must be (Y, X), got shape {labels.shape}")
        n = int(labels.max()) if labels.size else 0
        return self.update_runs(runs_of(labels), n)

    def update_runs(self, runs: Runs, n: int) -> np.ndarray:
        """Track ids for one frame given as runs with labels 1..n (see :meth:`update`)."""
        self._frame += 1
        ids = np.zeros(n + 1, dtype=np.int64)
        unmatched = np.ones(n + 1, dtype=bool)
        unmatched[0] = False
        used: set[int] = set()
        area = np.bincount(runs.label, weights=runs.length, minlength=n + 1)
        for age, (track_runs, track_area) in enumerate(self._history, start=1):
            if not unmatched.any():
                break
            cur = runs if age == 1 else runs.select(unmatched[runs.label])
            a, b, iou = run_overlap_iou(track_runs, cur, track_area, area)
            # only tracks last seen exactly `age` frames ago and not yet taken
            ok = iou >= self.min_iou
            if age > 1:
                last = np.array([self._last_seen.get(int(t), -1) for t in a])
                ok &= last == self._frame - age
            if used:
                ok &= ~np.isin(a, np.fromiter(used, dtype=np.int64))
            ma, mb = match_pairs(a[ok], b[ok], iou[ok])
            ids[mb] = ma
            unmatched[mb] = False
            used.update(ma.tolist())
        new = np.flatnonzero(unmatched)
        ids[new] = np.arange(self.next_id, self.next_id + len(new))
        self.next_id += len(new)
        for t in ids[1:].tolist():
            self._last_seen[t] = self._frame
        track_runs = Runs(runs.frame, runs.row, runs.start, runs.stop, ids[runs.label])
        track_area = np.zeros(self.next_id, dtype=np.float64)
        track_area[ids[1:]] = area[1:]
        self._history.appendleft((track_runs, track_area))
        return ids
