"""The final pass over all objects: duplicates that neighbouring tiles both reported
(their polygons overlap with IoU >= 0.5) are reduced to the most confident one."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

IOU = 0.5


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two polygons, rasterised at 4 samples per pixel."""
    from skimage.draw import polygon as fill

    both = np.vstack([a, b])
    x0, y0 = np.floor(both.min(0)) - 1
    x1, y1 = np.ceil(both.max(0)) + 1
    shape = (int((y1 - y0) * 2) + 1, int((x1 - x0) * 2) + 1)
    masks = []
    for ring in (a, b):
        mask = np.zeros(shape, bool)
        rr, cc = fill((ring[:, 1] - y0) * 2, (ring[:, 0] - x0) * 2, shape)
        mask[rr, cc] = True
        masks.append(mask)
    union = np.logical_or(*masks).sum()
    return float(np.logical_and(*masks).sum() / union) if union else 0.0


def duplicates(
    centroids: np.ndarray,
    bboxes: np.ndarray,
    confidence: np.ndarray,
    tiles: np.ndarray,
    polygon: Callable[[int], np.ndarray],
    *,
    iou: float = IOU,
) -> np.ndarray:
    """Indices of objects to drop: of each pair from different tiles whose boxes
    overlap and whose polygons have IoU >= `iou`, the less confident (ties: the later).

    Parameters
    ----------
    centroids : (n, 2) ndarray
    bboxes : (n, 4) ndarray
        x0, y0, x1, y1.
    confidence : (n,) ndarray
    tiles : (n, 2) ndarray
        The tile each object was kept from.
    polygon : callable
        ``polygon(i)`` is object i's (k, 2) outline; called for candidate pairs only.
    """
    from scipy.spatial import cKDTree

    if len(centroids) < 2:
        return np.empty(0, np.int64)
    reach = float(np.hypot(bboxes[:, 2] - bboxes[:, 0], bboxes[:, 3] - bboxes[:, 1]).max())
    pairs = cKDTree(centroids).query_pairs(max(reach, 1.0), output_type="ndarray")
    if len(pairs) == 0:
        return np.empty(0, np.int64)
    i, j = pairs[:, 0], pairs[:, 1]
    apart = (tiles[i] != tiles[j]).any(axis=1)
    boxes_meet = (bboxes[i, 0] < bboxes[j, 2]) & (bboxes[j, 0] < bboxes[i, 2])
    boxes_meet &= (bboxes[i, 1] < bboxes[j, 3]) & (bboxes[j, 1] < bboxes[i, 3])
    pairs = pairs[apart & boxes_meet]
    order = np.argsort(-np.maximum(confidence[pairs[:, 0]], confidence[pairs[:, 1]]), kind="stable")
    dropped: set[int] = set()
    for a, b in pairs[order]:
        if a in dropped or b in dropped:
            continue
        if polygon_iou(polygon(int(a)), polygon(int(b))) >= iou:
            worse = (
                b
                if confidence[b] < confidence[a] or (confidence[b] == confidence[a] and b > a)
                else a
            )
            dropped.add(int(worse))
    return np.array(sorted(dropped), np.int64)
