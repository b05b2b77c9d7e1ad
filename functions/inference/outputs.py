"""Output formats: the objects' Parquet table (one row per object, polygon as WKB) and
QuPath-compatible GeoJSON features, both written as streams.

Each row of the task's Parquet also holds its GeoJSON Feature as text (column
`feature`, the very bytes of the task's GeoJSON), so a viewport query only reads,
filters and joins. The Parquet is ordered along a Hilbert curve over a grid of CELL x CELL level-0
cells and cut into row groups at cell boundaries (about ROW_GROUP_ROWS rows each), so
every row group covers a compact patch of the slide and its min/max statistics of
x_min, y_min, x_max, y_max let a viewport query skip the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import IO, Any

import numpy as np

from functions.inference.objects import Objects
from functions.inference.wkb import encode_polygons

CELL = 512
ROW_GROUP_ROWS = 1024
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


def _coordinates(column: Any) -> tuple[np.ndarray, np.ndarray]:
    """All vertices of a WKB polygon column (our writer's: little-endian, one ring)
    as one (n_points, 2) float64 array, and each row's first point (n_rows + 1)."""
    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    _, offsets, data = array.buffers()
    starts = np.frombuffer(offsets, np.int32, count=len(array) + 1, offset=array.offset * 4)
    first = starts[:-1].astype(np.int64) + 13  # after byte order, type, rings, points
    sizes = starts[1:].astype(np.int64) - first
    # one gather of every row's coordinate bytes (rows sit at any alignment)
    index = np.repeat(first - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
    index += np.arange(int(sizes.sum()))
    raw = np.frombuffer(data, np.uint8)[index]
    points = np.concatenate([[0], np.cumsum(sizes // 16)])
    return raw.view("<f8").reshape(-1, 2), points


def _numbers(values: np.ndarray, decimals: int | None = None) -> Any:
    """JSON numbers as an Arrow string array (C++ shortest round-trip formatting);
    NaN and infinities become null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = np.asarray(values, np.float64)
    if decimals is not None:
        values = np.round(values, decimals)
    text = pa.array(values).cast(pa.string())
    return pc.if_else(pa.array(np.isfinite(values)), text, "null")


def feature_texts(table: Any, colors: dict[str, str]) -> Any:
    """The rows of an objects table (with ids) as QuPath detections: one GeoJSON
    Feature (level-0 pixel coordinates) per row, as an Arrow string array. Built
    column by column with Arrow's string kernels (no Python object per number)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return pa.array([], pa.string())
    coords, points = _coordinates(table["polygon"])
    text = _numbers(coords.ravel(), 2)
    pairs = pc.binary_join_element_wise("[", text[0::2], ",", text[1::2], "]", "")
    rings = pc.binary_join(pa.ListArray.from_arrays(pa.array(points, pa.int32()), pairs), ",")
    struct = table["measurements"].combine_chunks()
    names = [struct.type.field(i).name for i in range(struct.type.num_fields)]
    parts: list[Any] = []
    for i, (name, child) in enumerate(zip(names, struct.flatten(), strict=True)):
        values = child.to_numpy(zero_copy_only=False)
        parts += [("," if i else "") + json.dumps(name) + ":", _numbers(values)]
    measurements = pc.binary_join_element_wise(*parts, "") if parts else pa.scalar("")
    classes = sorted(set(table["class"].to_pylist()))
    styles = pa.array(
        [
            json.dumps({"name": c, "color": _rgb(colors.get(c, "#808080"))}, separators=(",", ":"))
            for c in classes
        ]
    )
    style = styles.take(pc.index_in(table["class"], pa.array(classes)))
    features = pc.binary_join_element_wise(
        '{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[',
        rings,
        ']]},"properties":{"objectType":"detection","object_id":',
        table["id"].cast(pa.string()),
        ',"classification":',
        style,
        ',"confidence":',
        _numbers(table["confidence"].to_numpy(), 4),
        ',"measurements":{',
        measurements,
        "}}}",
        "",
    )
    return features


class GeoJSONWriter:
    """A FeatureCollection written feature by feature to a binary stream."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.count = 0
        out.write(b'{"type":"FeatureCollection","features":[')

    def __repr__(self) -> str:
        return f"GeoJSONWriter({self.count} features)"

    def write(self, texts: Any) -> None:
        """Append Features given as an Arrow string array (see `feature_texts`)."""
        if len(texts) == 0:
            return
        self.out.write(b",\n" if self.count else b"\n")
        self.out.write(",\n".join(texts.to_pylist()).encode())
        self.count += len(texts)

    def close(self) -> None:
        self.out.write(b"\n]}\n")
