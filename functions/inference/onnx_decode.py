"""From an ONNX model's raw output for one tile to objects (tile pixel coordinates):
segmentation maps -> instances -> outlines, detections -> boxes, class probabilities
-> one polygon per tile (a heat map once all tiles are drawn)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from functions.inference.measure import KeepFn, label_stats, labels_to_objects
from functions.inference.objects import Objects, concat
from functions.inference.params import OnnxOutput


def segmentation_objects(
    probs: np.ndarray, keep: KeepFn, out: OnnxOutput, *, tile: int, mpp: float
) -> Objects:
    """Instances of each class of a (C, h, w) probability map: pixels where the class
    is the most probable and above `out.threshold`, split into connected components
    (or a watershed of their distance transform), small ones dropped. Confidence: the
    instance's mean probability."""
    scale = tile / probs.shape[-1]  # outputs may be smaller than the input (stride)
    best = probs.argmax(axis=0)
    parts = []
    for c in range(probs.shape[0]):
        mask = (best == c) & (probs[c] > out.threshold)
        labels = _instances(mask, out.split) if mask.any() else np.zeros(mask.shape, np.int32)
        sizes = np.bincount(labels.ravel())
        small = sizes < out.min_area
        small[0] = True
        relabel = np.cumsum(~small).astype(np.int32)
        relabel[small] = 0
        labels = relabel[labels]
        stats = label_stats(labels, {"probability": probs[c]})
        chosen = keep(stats.centroid * scale, stats.bbox * scale)
        objects, _ = labels_to_objects(labels, stats, chosen, mpp=mpp * scale, tolerance=0.5)
        mean_p = stats.means["probability"][chosen]
        objects.confidence = mean_p.astype(np.float32)
        objects.label = np.full(len(objects), c, np.int16)
        objects.polygons = [p * scale for p in objects.polygons]
        objects.centroid = objects.centroid * scale
        objects.measurements = {"area_um2": objects.area_um2, "mean_probability": mean_p}
        parts.append(objects)
    return concat(parts, ("area_um2", "mean_probability"))


def _instances(mask: np.ndarray, split: str) -> np.ndarray:
    from scipy import ndimage

    if split == "components":
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
        return labels.astype(np.int32)  # type: ignore[no-any-return]
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    distance = ndimage.distance_transform_edt(mask)
    components, _ = ndimage.label(mask)
    peaks = peak_local_max(distance, min_distance=3, labels=components, exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=mask).astype(np.int32)  # type: ignore[no-any-return]


def detection_objects(
    boxes: np.ndarray, keep: KeepFn, out: OnnxOutput, *, tile: int, mpp: float
) -> Objects:
    """Boxes of a (K, 4 + C) detection output (x0, y0, x1, y1 in tile pixels, then
    class scores): score = the best class score; boxes under `out.threshold` dropped;
    overlapping boxes of a class (IoU >= 0.5) reduced to the best (NMS)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4 + len(out.classes))
    scores = boxes[:, 4:]
    label = scores.argmax(axis=1)
    score = scores.max(axis=1)
    xyxy = np.clip(boxes[:, :4], 0, tile)
    ok = (score >= out.threshold) & (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    idx = _nms(xyxy[ok], score[ok], label[ok])
    idx = np.flatnonzero(ok)[idx]
    xyxy, score, label = xyxy[idx], score[idx], label[idx]
    centroid = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], 1)
    chosen = keep(centroid, xyxy)
    xyxy, score, label, centroid = xyxy[chosen], score[chosen], label[chosen], centroid[chosen]
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) * mpp * mpp
    polygons = [
        np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) for x0, y0, x1, y1 in xyxy.tolist()
    ]
    return Objects(
        polygons=polygons,
        centroid=centroid,
        confidence=score.astype(np.float32),
        label=label.astype(np.int16),
        area_um2=area,
        measurements={"area_um2": area, "score": score},
    )


def _nms(xyxy: np.ndarray, score: np.ndarray, label: np.ndarray, iou: float = 0.5) -> np.ndarray:
    order = np.argsort(-score, kind="stable")
    kept: list[int] = []
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    suppressed = np.zeros(len(score), bool)
    for i in order:
        if suppressed[i]:
            continue
        kept.append(int(i))
        ix0 = np.maximum(xyxy[i, 0], xyxy[:, 0])
        iy0 = np.maximum(xyxy[i, 1], xyxy[:, 1])
        ix1 = np.minimum(xyxy[i, 2], xyxy[:, 2])
        iy1 = np.minimum(xyxy[i, 3], xyxy[:, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        overlap = inter / np.maximum(area[i] + area - inter, 1e-12)
        suppressed |= (overlap >= iou) & (label == label[i])
    return np.array(kept, np.int64)


def classification_objects(
    probs: np.ndarray, core: tuple[float, float, float, float], out: OnnxOutput, *, mpp: float
) -> Objects:
    """One object for a tile's (C,) class probabilities: the square `core` (the engine
    cuts it to the tile's core, so neighbouring squares tile the slide), the best
    class, its probability as confidence and every class' probability as
    measurements."""
    x0, y0, x1, y1 = core
    probs = np.asarray(probs, np.float64).reshape(-1)
    best = int(probs.argmax())
    ring = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    area = np.array([(x1 - x0) * (y1 - y0) * mpp * mpp])
    return Objects(
        polygons=[ring],
        centroid=np.array([[(x0 + x1) / 2, (y0 + y1) / 2]]),
        confidence=np.array([probs[best]], np.float32),
        label=np.array([best], np.int16),
        area_um2=area,
        measurements={
            "area_um2": area,
            **{f"probability_{name}": probs[i : i + 1] for i, name in enumerate(out.classes)},
        },
    )


def measurement_names(out: OnnxOutput) -> Sequence[str]:
    if out.kind == "segmentation":
        return ("area_um2", "mean_probability")
    if out.kind == "detection":
        return ("area_um2", "score")
    return ("area_um2", *(f"probability_{name}" for name in out.classes))
