"""Patch labels: the objects of an inference task whose centroids fall in a patch
(class counts and centroids in patch pixels), or the GeoJSON polygons whose bounding
boxes touch it."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Objects:
    """Predicted objects sorted by level-0 y: centroids and class names."""

    x: np.ndarray
    y: np.ndarray
    classes: np.ndarray  # (n,) str

    @classmethod
    def from_parquet(cls, path: str | Path) -> Objects:
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["class", "centroid_x", "centroid_y"])
        x = table["centroid_x"].to_numpy().astype(np.float64)
        y = table["centroid_y"].to_numpy().astype(np.float64)
        names = np.asarray(table["class"].to_pylist(), dtype=str)
        order = np.argsort(y, kind="stable")
        return cls(x[order], y[order], names[order])

    def in_box(self, x0: float, y0: float, extent: float, scale: float) -> dict[str, Any]:
        """Counts per class and centroids (patch pixels, with class) of the objects
        whose centroids lie in [x0, x0 + extent) x [y0, y0 + extent)."""
        lo, hi = np.searchsorted(self.y, [y0, y0 + extent], side="left")
        xs, ys, names = self.x[lo:hi], self.y[lo:hi], self.classes[lo:hi]
        inside = (xs >= x0) & (xs < x0 + extent)
        xs, ys, names = xs[inside], ys[inside], names[inside]
        return {
            "counts": dict(Counter(names.tolist())),
            "objects": [
                [round((x - x0) / scale, 2), round((y - y0) / scale, 2), str(n)]
                for x, y, n in zip(xs, ys, names, strict=True)
            ],
        }


@dataclass(frozen=True)
class Polygons:
    """GeoJSON polygons (level-0 px; QuPath's export) with their classes and boxes."""

    rings: list[np.ndarray]
    classes: list[str]
    boxes: np.ndarray  # (n, 4) x0, y0, x1, y1

    @classmethod
    def from_geojson(cls, data: bytes) -> Polygons:
        """Polygons and multipolygons of a FeatureCollection (or one Feature); a class
        from `properties.classification.name`, else `properties.class`, else ""."""
        doc = json.loads(data)
        features = doc.get("features", [doc]) if isinstance(doc, dict) else []
        rings: list[np.ndarray] = []
        classes: list[str] = []
        for feature in features:
            geometry = (feature or {}).get("geometry") or {}
            props = (feature or {}).get("properties") or {}
            name = (props.get("classification") or {}).get("name") or props.get("class") or ""
            kind = geometry.get("type")
            polys = [geometry["coordinates"]] if kind == "Polygon" else []
            polys = geometry["coordinates"] if kind == "MultiPolygon" else polys
            for poly in polys:
                rings.append(np.asarray(poly[0], np.float64).reshape(-1, 2))
                classes.append(str(name))
        boxes = np.array(
            [[r[:, 0].min(), r[:, 1].min(), r[:, 0].max(), r[:, 1].max()] for r in rings]
        ).reshape(-1, 4)
        return cls(rings, classes, boxes)

    def in_box(self, x0: float, y0: float, extent: float, scale: float) -> dict[str, Any]:
        """Counts per class and rings (patch pixels) of the polygons whose bounding
        boxes overlap the patch."""
        b = self.boxes
        hit = np.flatnonzero(
            (b[:, 0] < x0 + extent) & (b[:, 2] >= x0) & (b[:, 1] < y0 + extent) & (b[:, 3] >= y0)
        )
        return {
            "counts": dict(Counter(self.classes[i] for i in hit)),
            "polygons": [
                {
                    "class": self.classes[i],
                    "points": np.round((self.rings[i] - (x0, y0)) / scale, 2).tolist(),
                }
                for i in hit
            ],
        }
