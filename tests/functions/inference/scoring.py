"""Scoring detections against ground truth, as the issue defines it: a detection
matches a true nucleus when their centroids are within half the nucleus' equivalent
radius, one to one (maximum bipartite matching)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Score:
    tp: int
    fp: int
    fn: int
    truth_index: np.ndarray  # matched truth rows
    detection_index: np.ndarray  # their detections

    @property
    def f1(self) -> float:
        return 2 * self.tp / max(1, 2 * self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        return self.tp / max(1, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return self.tp / max(1, self.tp + self.fn)


def match(truth: np.ndarray, radius: np.ndarray, detections: np.ndarray) -> Score:
    """One-to-one matching of (n, 2) true centroids to (m, 2) detected ones."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import maximum_bipartite_matching
    from scipy.spatial import cKDTree

    if len(truth) == 0 or len(detections) == 0:
        empty = np.empty(0, np.int64)
        return Score(0, len(detections), len(truth), empty, empty)
    pairs = cKDTree(truth).query_ball_point(detections, r=float(radius.max()) / 2)
    rows, cols = [], []
    for j, candidates in enumerate(pairs):
        for i in candidates:
            if np.hypot(*(truth[i] - detections[j])) <= radius[i] / 2:
                rows.append(i)
                cols.append(j)
    graph = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(truth), len(detections)))
    assignment = maximum_bipartite_matching(graph, perm_type="column")
    matched = np.flatnonzero(assignment >= 0)
    tp = len(matched)
    return Score(tp, len(detections) - tp, len(truth) - tp, matched, assignment[matched])
