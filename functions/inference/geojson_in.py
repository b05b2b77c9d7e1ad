"""Predictions an external service sends (a GeoJSON FeatureCollection in level-0 pixel
coordinates, QuPath's shape) read into `Objects`, so they are stored in the same
Parquet and GeoJSON formats as the builtin models' and queried the same way.

Accepted per feature: a `Polygon` (exterior ring), a `MultiPolygon` (its largest
polygon's exterior) or a `Point` (a circle of `properties.radius` pixels, default
POINT_RADIUS); the class from `properties.classification.name`, `class` or `label`;
the confidence from `confidence` or `score` (default 1); numeric `measurements` as an
object or QuPath's list of `{name, value}`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from common.errors import InvalidInput
from functions.inference.objects import Objects

POINT_RADIUS = 4.0
#: Measurement columns kept from a service's features (the first seen, by name).
MAX_MEASUREMENTS = 32
#: Features a service may send for one task.
MAX_FEATURES = 5_000_000


def _ring(geometry: Any, where: str) -> np.ndarray:
    """The open (k, 2) exterior ring of a feature's geometry."""
    if not isinstance(geometry, dict):
        raise InvalidInput(f"{where}: geometry must be an object")
    kind = geometry.get("type")
    coords: Any = geometry.get("coordinates")
    try:
        if kind == "Polygon":
            ring = np.asarray(coords[0], np.float64)
        elif kind == "MultiPolygon":
            rings = [np.asarray(polygon[0], np.float64) for polygon in coords]
            ring = max(rings, key=lambda r: abs(_area(r)))
        elif kind == "Point":
            x, y = (float(v) for v in coords[:2])
            angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
            circle = np.stack([np.cos(angles), np.sin(angles)], 1) * POINT_RADIUS
            return circle + np.array([x, y])
        else:
            raise InvalidInput(f"{where}: geometry type {kind!r} (Polygon, MultiPolygon or Point)")
    except (TypeError, ValueError, IndexError):
        raise InvalidInput(f"{where}: malformed {kind} coordinates") from None
    if ring.ndim != 2 or ring.shape[1] < 2 or not np.isfinite(ring).all():
        raise InvalidInput(f"{where}: coordinates must be finite [x, y] pairs")
    ring = ring[:, :2]
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]
    if len(ring) < 3:
        raise InvalidInput(f"{where}: a polygon needs at least 3 distinct points")
    return ring


def _area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _centroid(ring: np.ndarray) -> tuple[float, float, float]:
    """Centroid x, y and absolute area of a simple polygon (mean of its points if flat)."""
    x, y = ring[:, 0], ring[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    if abs(area) < 1e-9:
        return float(x.mean()), float(y.mean()), 0.0
    cx = ((x + np.roll(x, -1)) * cross).sum() / (6 * area)
    cy = ((y + np.roll(y, -1)) * cross).sum() / (6 * area)
    return float(cx), float(cy), abs(float(area))


def _class_name(props: dict[str, Any], default: str) -> str:
    classification = props.get("classification")
    if isinstance(classification, dict) and isinstance(classification.get("name"), str):
        return str(classification["name"])
    for key in ("class", "label"):
        if isinstance(props.get(key), str):
            return str(props[key])
    return default


def _confidence(props: dict[str, Any], where: str) -> float:
    value = props.get("confidence", props.get("score", 1.0))
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidInput(f"{where}: confidence must be a number in [0, 1], got {value!r}")
    return float(value)


def _measurements(props: dict[str, Any]) -> dict[str, float]:
    raw = props.get("measurements")
    pairs: list[tuple[Any, Any]] = []
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list):  # QuPath: [{"name": ..., "value": ...}]
        pairs = [(m.get("name"), m.get("value")) for m in raw if isinstance(m, dict)]
    return {
        str(name)[:64]: float(value)
        for name, value in pairs
        if isinstance(name, str)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and name not in ("centroid_x", "centroid_y")
    }


def read_features(
    collection: Any, *, classes: Sequence[str], mpp: float
) -> tuple[Objects, list[str], list[str]]:
    """A FeatureCollection as Objects (level-0 pixels), the class names (`classes`
    first, then any others in order of appearance) and the measurement names.

    Raises
    ------
    InvalidInput
        Not a FeatureCollection, too many features, or a feature that cannot be read
        (the message names it by index).
    """
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        raise InvalidInput("predictions must be a GeoJSON FeatureCollection")
    features = collection.get("features")
    if not isinstance(features, list):
        raise InvalidInput("predictions: 'features' must be a list")
    if len(features) > MAX_FEATURES:
        raise InvalidInput(f"predictions hold {len(features)} features; at most {MAX_FEATURES}")
    names = list(dict.fromkeys(classes)) or ["object"]
    index = {name: i for i, name in enumerate(names)}
    polygons, centroids, confidence, labels, areas = [], [], [], [], []
    rows: list[dict[str, float]] = []
    for i, feature in enumerate(features):
        where = f"feature {i}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise InvalidInput(f"{where}: not a GeoJSON Feature")
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise InvalidInput(f"{where}: properties must be an object")
        ring = _ring(feature.get("geometry"), where)
        cx, cy, area = _centroid(ring)
        name = _class_name(props, names[0])
        labels.append(index.setdefault(name, len(index)))
        polygons.append(ring)
        centroids.append((cx, cy))
        confidence.append(_confidence(props, where))
        areas.append(area * mpp * mpp)
        rows.append(_measurements(props))
    measured = list(dict.fromkeys(k for row in rows for k in row))[:MAX_MEASUREMENTS]
    centre = np.asarray(centroids, np.float64).reshape(-1, 2)
    columns = {
        "centroid_x": centre[:, 0],
        "centroid_y": centre[:, 1],
        **{m: np.array([row.get(m, np.nan) for row in rows], np.float64) for m in measured},
    }
    objects = Objects(
        polygons=polygons,
        centroid=centre,
        confidence=np.asarray(confidence, np.float32),
        label=np.asarray(labels, np.int16),
        area_um2=np.asarray(areas, np.float64),
        measurements=columns,
        tile=np.full((len(polygons), 2), -1, np.int32),
    )
    return objects, list(index), measured


def keep_inside(
    objects: Objects, *, confidence_threshold: float, region: list[tuple[float, float]] | None
) -> Objects:
    """The objects at or above the threshold whose centroid lies in `region` (if any)."""
    keep = objects.confidence >= np.float32(confidence_threshold)
    if region is not None and len(objects):
        from skimage.measure import points_in_poly

        keep &= points_in_poly(objects.centroid, np.asarray(region, np.float64))
    return objects.select(keep)
