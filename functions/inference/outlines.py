"""Object outlines as star-convex polygons (StarDist's representation: the boundary
along `RAYS` rays from the object's centre), computed for all objects of a tile at
once as dense (n, RAYS) arrays, and the polygon arithmetic on them (areas, convex
hulls, simplification) without a per-object Python loop.

A ray's boundary is where it first leaves the object, found to a quarter pixel by
sampling the label image every half pixel. Objects whose centroid lies outside them
(crescents) are cast from their innermost pixel instead.

References
----------
U. Schmidt et al., "Cell detection with star-convex polygons", MICCAI 2018,
doi:10.1007/978-3-030-00934-2_30.
"""

from __future__ import annotations

import numpy as np

RAYS = 32
STEP = 0.5
#: Rays x samples per chunk of objects (bounds the temporaries to ~40 MB).
CHUNK_SAMPLES = 4_000_000


def _directions(rays: int) -> np.ndarray:
    theta = 2 * np.pi * np.arange(rays) / rays
    return np.stack([np.cos(theta), np.sin(theta)], axis=1)


def _cast(
    labels: np.ndarray, ids: np.ndarray, centres: np.ndarray, reach: np.ndarray, rays: int
) -> np.ndarray:
    """(n, rays) distance from each centre to where its ray leaves label `ids`, each
    ray sampled every STEP up to the object's `reach`."""
    u = _directions(rays)
    pad = int(np.ceil(reach.max())) + 2
    # A background border as wide as the longest ray: samples never leave the array,
    # so no index clipping (the costliest step otherwise).
    padded = np.pad(labels, pad)
    out = np.empty((len(ids), rays))
    order = np.argsort(reach, kind="stable")  # chunks of similar reach: few wasted samples
    start = 0
    while start < len(order):
        longest = reach[order[min(len(order) - 1, start + 255)]]
        t = np.arange(int(np.ceil(longest / STEP)) + 2) * STEP
        chunk = order[start : start + max(1, min(256, CHUNK_SAMPLES // (rays * len(t))))]
        c = centres[chunk] + pad
        x = (c[:, 0, None, None] + u[None, :, 0, None] * t).astype(np.int32)
        y = (c[:, 1, None, None] + u[None, :, 1, None] * t).astype(np.int32)
        inside = padded[y, x] == ids[chunk, None, None]
        out[chunk] = np.maximum(np.argmin(inside, axis=2) - 0.5, 0.5) * STEP
        start += len(chunk)
    return out


def star_outlines(
    labels: np.ndarray, ids: np.ndarray, centroids: np.ndarray, bboxes: np.ndarray, rays: int = RAYS
) -> np.ndarray:
    """(n, rays, 2) x, y outline vertices of labels `ids` (continuous pixel
    coordinates), cast from their centroids (or innermost pixel where the centroid
    falls outside the object)."""
    if len(ids) == 0:
        return np.empty((0, rays, 2))
    centres = np.asarray(centroids, float).copy()
    h, w = labels.shape
    col = np.clip(np.floor(centres[:, 0]).astype(int), 0, w - 1)
    row = np.clip(np.floor(centres[:, 1]).astype(int), 0, h - 1)
    for i in np.flatnonzero(labels[row, col] != ids):
        centres[i] = _innermost(labels, int(ids[i]), bboxes[i])
    corners = np.abs(bboxes[:, [0, 2]] - centres[:, :1]).max(1) ** 2
    corners += np.abs(bboxes[:, [1, 3]] - centres[:, 1:]).max(1) ** 2
    dist = _cast(labels, ids, centres, np.sqrt(corners) + 1, rays)
    return centres[:, None, :] + dist[..., None] * _directions(rays)[None]  # type: ignore[no-any-return]


def _innermost(labels: np.ndarray, label: int, bbox: np.ndarray) -> np.ndarray:
    """Centre of the object's pixel farthest from its background."""
    from scipy import ndimage

    x0, y0, x1, y1 = (int(v) for v in bbox)
    crop = np.pad(labels[y0:y1, x0:x1] == label, 1)
    r, c = np.unravel_index(np.argmax(ndimage.distance_transform_edt(crop)), crop.shape)
    return np.array([x0 + c - 1 + 0.5, y0 + r - 1 + 0.5])


def polygon_areas(rings: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Shoelace areas of (n, k, 2) rings (only the `valid` vertices, in order)."""
    if valid is not None:
        rings = _compact(rings, valid)
    x, y = rings[..., 0], rings[..., 1]
    return np.abs((x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(1)) / 2  # type: ignore[no-any-return]


def _compact(rings: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each dropped vertex replaced by the previous kept one (degenerate edges add no
    area), so dense arithmetic sees only the kept vertices."""
    k = rings.shape[1]
    index = np.where(valid, np.arange(k), -1)
    first_valid = np.argmax(valid, axis=1)
    index[:, 0] = np.where(valid[:, 0], 0, first_valid)  # ring start: the first kept
    index = np.maximum.accumulate(index, axis=1)
    return np.take_along_axis(rings, index[..., None], axis=1)


def _neighbours(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each vertex, the index of the previous and next kept vertex (circular)."""
    k = valid.shape[1]
    ar = np.arange(2 * k)
    doubled = np.concatenate([valid, valid], axis=1)
    prev = np.maximum.accumulate(np.where(doubled, ar, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(doubled, ar, 2 * k)[:, ::-1], axis=1)[:, ::-1]
    before = prev[:, k - 1 : 2 * k - 1] % k  # previous kept, strictly before i
    after = nxt[:, 1 : k + 1] % k  # next kept, strictly after i
    return before, after


def convex_areas(rings: np.ndarray) -> np.ndarray:
    """Areas of the convex hulls of star polygons (n, k, 2): reflex vertices are
    dropped, all at once, until none is left (a reflex vertex is never on the hull)."""
    valid = np.ones(rings.shape[:2], bool)
    rows = np.arange(len(rings))[:, None]
    for _ in range(rings.shape[1]):
        before, after = _neighbours(valid)
        a, b = rings[rows, before], rings[rows, after]
        cross = (rings[..., 0] - a[..., 0]) * (b[..., 1] - a[..., 1]) - (
            rings[..., 1] - a[..., 1]
        ) * (b[..., 0] - a[..., 0])
        # Rays turn with increasing angle, so a convex vertex has cross > 0; collinear
        # ones (0) go too.
        reflex = valid & (cross <= 0) & (valid.sum(1, keepdims=True) > 3)
        if not reflex.any():
            break
        valid &= ~reflex
    return polygon_areas(rings, valid)


def simplify(rings: np.ndarray, tolerance: float) -> list[np.ndarray]:
    """Drop vertices within `tolerance` of the chord between their kept neighbours
    (alternate vertices per pass, so errors do not add up); at least 3 are kept."""
    valid = np.ones(rings.shape[:2], bool)
    rows = np.arange(len(rings))[:, None]
    if tolerance > 0:
        parity = np.arange(rings.shape[1]) % 2
        for p in range(4):
            before, after = _neighbours(valid)
            a, b = rings[rows, before], rings[rows, after]
            chord = b - a
            length = np.maximum(np.hypot(chord[..., 0], chord[..., 1]), 1e-12)
            off = rings - a
            dist = np.abs(off[..., 0] * chord[..., 1] - off[..., 1] * chord[..., 0]) / length
            drop = valid & (dist < tolerance) & (parity == p % 2)
            drop &= (valid.sum(1) - drop.sum(1) >= 3)[:, None]
            valid &= ~drop
    return [ring[keep] for ring, keep in zip(rings, valid, strict=True)]
