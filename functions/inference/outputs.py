"""Output formats: the objects' Parquet table (one row per object, polygon as WKB) and
QuPath-compatible GeoJSON features, both written as streams.

The task's Parquet is ordered along a Hilbert curve over a grid of CELL x CELL level-0
cells and cut into row groups at cell boundaries (about ROW_GROUP_ROWS rows each), so
every row group covers a compact patch of the slide and its min/max statistics of
x_min, y_min, x_max, y_max let a viewport query skip the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import numpy as np

from functions.inference.objects import Objects
from functions.inference.wkb import decode_polygon, encode_polygons

CELL = 512
ROW_GROUP_ROWS = 2048
HILBERT_ORDER = 16  # 2**16 cells a side: slides up to 33 million pixels wide
PARQUET = "application/vnd.apache.parquet"
GEOJSON = "application/geo+json"
LIGHT_COLUMNS = [
    "centroid_x",
    "centroid_y",
    "x_min",
    "y_min",
    "x_max",
    "y_max",
    "confidence",
    "tile_col",
    "tile_row",
]


def objects_table(objects: Objects, classes: Sequence[str], measurements: Sequence[str]) -> Any:
    """A pyarrow Table of `objects` (level-0 pixels), without ids (the merge adds them)."""
    import pyarrow as pa

    bboxes = objects.bboxes()
    tiles = objects.tile if objects.tile is not None else np.full((len(objects), 2), -1)
    struct = (
        pa.StructArray.from_arrays(
            [pa.array(np.asarray(objects.measurements[m], np.float64)) for m in measurements],
            names=list(measurements),
        )
        if measurements
        else pa.array([{}] * len(objects), pa.struct([]))
    )
    return pa.table(
        {
            "class": pa.array([classes[i] for i in objects.label], pa.string()),
            "confidence": pa.array(objects.confidence.astype(np.float32)),
            "centroid_x": pa.array(objects.centroid[:, 0]),
            "centroid_y": pa.array(objects.centroid[:, 1]),
            "x_min": pa.array(bboxes[:, 0]),
            "y_min": pa.array(bboxes[:, 1]),
            "x_max": pa.array(bboxes[:, 2]),
            "y_max": pa.array(bboxes[:, 3]),
            "area_um2": pa.array(objects.area_um2.astype(np.float64)),
            "measurements": struct,
            "polygon": pa.array(encode_polygons(objects.polygons), pa.binary()),
            "tile_col": pa.array(tiles[:, 0].astype(np.int32)),
            "tile_row": pa.array(tiles[:, 1].astype(np.int32)),
        }
    )


def hilbert_index(x: np.ndarray, y: np.ndarray, order: int = HILBERT_ORDER) -> np.ndarray:
    """Position of integer cells (x, y) along a Hilbert curve of 2**order a side."""
    x, y = np.asarray(x, np.int64).copy(), np.asarray(y, np.int64).copy()
    d = np.zeros(x.shape, np.int64)
    s = 1 << (order - 1)
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += s * s * ((3 * rx) ^ ry)
        flip = ~ry  # rotate the quadrant so the curve stays continuous
        swap_x = np.where(flip & rx, s - 1 - x, x)
        swap_y = np.where(flip & rx, s - 1 - y, y)
        x, y = np.where(flip, swap_y, swap_x), np.where(flip, swap_x, swap_y)
        s >>= 1
    return d


def spatial_groups(table: Any) -> Iterator[Any]:
    """`table` sorted along the Hilbert curve of its centroids' cells, cut at cell
    boundaries into groups of about ROW_GROUP_ROWS rows."""
    if table.num_rows == 0:
        return
    cx = np.floor(table["centroid_x"].to_numpy() / CELL).clip(0, (1 << HILBERT_ORDER) - 1)
    cy = np.floor(table["centroid_y"].to_numpy() / CELL).clip(0, (1 << HILBERT_ORDER) - 1)
    key = hilbert_index(cx, cy)
    order = np.argsort(key, kind="stable")
    table, key = table.take(order), key[order]
    start = 0
    while start < table.num_rows:
        stop = min(start + ROW_GROUP_ROWS, table.num_rows)
        while stop < table.num_rows and key[stop] == key[stop - 1]:
            stop += 1  # never split a cell
        yield table.slice(start, stop - start)
        start = stop


def _rgb(color: str) -> list[int]:
    return [int(color[i : i + 2], 16) for i in (1, 3, 5)]


def _coords(ring: np.ndarray) -> str:
    return "[" + ",".join(f"[{x:.2f},{y:.2f}]" for x, y in ring.tolist()) + "]"


def feature_bytes(
    object_id: int,
    cls: str,
    color: str,
    confidence: float,
    measurements: dict[str, float],
    wkb: bytes,
) -> bytes:
    """One QuPath detection as a GeoJSON Feature (level-0 pixel coordinates)."""
    ring = decode_polygon(wkb)
    props = json.dumps(
        {
            "objectType": "detection",
            "object_id": object_id,
            "classification": {"name": cls, "color": _rgb(color)},
            "confidence": round(float(confidence), 4),
            "measurements": {
                k: (None if v is None or v != v else v) for k, v in measurements.items()
            },
        },
        allow_nan=False,
    )
    return (
        b'{"type":"Feature","geometry":{"type":"Polygon","coordinates":['
        + _coords(ring).encode()
        + b']},"properties":'
        + props.encode()
        + b"}"
    )


def table_features(table: Any, colors: dict[str, str]) -> Iterator[bytes]:
    """GeoJSON Features of the rows of an objects table that has ids."""
    ids = table["id"].to_pylist()
    classes = table["class"].to_pylist()
    confidence = table["confidence"].to_pylist()
    measurements = table["measurements"].to_pylist()
    polygons = table["polygon"].to_pylist()
    for i, object_id in enumerate(ids):
        cls = classes[i]
        yield feature_bytes(
            object_id, cls, colors.get(cls, "#808080"), confidence[i], measurements[i], polygons[i]
        )


class GeoJSONWriter:
    """A FeatureCollection written feature by feature to a binary stream."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.count = 0
        out.write(b'{"type":"FeatureCollection","features":[')

    def __repr__(self) -> str:
        return f"GeoJSONWriter({self.count} features)"

    def write(self, features: Iterable[bytes]) -> None:
        for feature in features:
            self.out.write(b",\n" if self.count else b"\n")
            self.out.write(feature)
            self.count += 1

    def close(self) -> None:
        self.out.write(b"\n]}\n")
