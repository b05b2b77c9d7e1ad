"""Viewport queries over a task's objects Parquet: the objects whose bounding box meets
a level-0 box, above a confidence, of a class, streamed as GeoJSON bytes.

Only the row groups whose x_min/y_min/x_max/y_max statistics meet the box are read
(the file is written in Hilbert order of spatial cells, so a viewport touches a
handful); their rows are filtered with numpy. The row-group index comes from the
file's footer and is cached per file.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from common.errors import InvalidInput

#: Row groups read together (a 2,000-pixel viewport touches about this many).
BATCH_GROUPS = 8
#: Columns a feature needs (measurements include the centroid).
FEATURE_COLUMNS = ["id", "class", "confidence", "x_min", "y_min", "x_max", "y_max", "feature"]


@dataclass(frozen=True)
class RowGroupIndex:
    """Per row group: bounds of the objects' boxes, rows, highest confidence."""

    bounds: np.ndarray  # (g, 4) min x_min, min y_min, max x_max, max y_max
    max_confidence: np.ndarray  # (g,)
    rows: np.ndarray  # (g,)
    colors: dict[str, str]
    metadata: Any = None  # the file's parsed footer, reused by later opens


def read_index(parquet: Any) -> RowGroupIndex:
    """The row-group index of an open `pyarrow.parquet.ParquetFile`."""
    meta = parquet.metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    where = {n: names.index(n) for n in ("x_min", "y_min", "x_max", "y_max", "confidence")}
    bounds = np.empty((meta.num_row_groups, 4))
    conf = np.empty(meta.num_row_groups)
    rows = np.empty(meta.num_row_groups, np.int64)
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        stats = {n: group.column(i).statistics for n, i in where.items()}
        if any(s is None or not s.has_min_max for s in stats.values()):
            bounds[g] = (-np.inf, -np.inf, np.inf, np.inf)
            conf[g] = np.inf
        else:
            bounds[g] = (
                stats["x_min"].min,
                stats["y_min"].min,
                stats["x_max"].max,
                stats["y_max"].max,
            )
            conf[g] = stats["confidence"].max
        rows[g] = group.num_rows
    kv = parquet.schema_arrow.metadata or {}
    import json

    colors = json.loads(kv.get(b"aperture.colors", b"{}"))
    return RowGroupIndex(bounds, conf, rows, colors, meta)


class IndexCache:
    """Row-group indexes of recently queried files, keyed by the caller's key (e.g. the
    artefact's file id and sha256: stored artefacts never change)."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, RowGroupIndex] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"IndexCache({len(self._items)}/{self.max_entries})"

    def peek(self, key: str) -> RowGroupIndex | None:
        with self._lock:
            return self._items.get(key)

    def get(self, key: str, parquet: Any) -> RowGroupIndex:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        index = read_index(parquet)
        with self._lock:
            self._items[key] = index
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return index


INDEXES = IndexCache()


def _check(
    bbox: tuple[float, float, float, float] | None, min_confidence: float, limit: int | None
) -> None:
    if bbox is not None:
        x0, y0, x1, y1 = bbox
        if not all(np.isfinite(bbox)) or x1 <= x0 or y1 <= y0:
            raise InvalidInput(
                f"bbox must be finite x0,y0,x1,y1 with x0 < x1 and y0 < y1, got {bbox}"
            )
    if not 0 <= min_confidence <= 1:
        raise InvalidInput(f"min_confidence must be in [0, 1], got {min_confidence}")
    if limit is not None and limit < 0:
        raise InvalidInput(f"limit must be >= 0, got {limit}")


def open_objects(
    source: str | Path | IO[bytes], cache_key: str | None = None
) -> tuple[Any, RowGroupIndex]:
    """An objects Parquet and its row-group index (cached under `cache_key`, with the
    parsed footer: a million objects make a footer worth parsing once)."""
    import pyarrow.parquet as pq

    known = INDEXES.peek(cache_key) if cache_key else None
    if known is not None:
        return pq.ParquetFile(source, metadata=known.metadata), known
    parquet = pq.ParquetFile(source)
    return parquet, (INDEXES.get(cache_key, parquet) if cache_key else read_index(parquet))


def select_rows(
    source: str | Path | IO[bytes],
    *,
    bbox: tuple[float, float, float, float] | None = None,
    min_confidence: float = 0.0,
    classes: set[str] | None = None,
    limit: int | None = None,
    columns: list[str] | None = None,
    cache_key: str | None = None,
) -> Iterator[Any]:
    """Matching rows of an objects Parquet, as pyarrow Tables (one per row group read).

    An object matches when its bounding box meets `bbox` (x0, y0, x1, y1; open
    intervals: x_min < x1 and x_max > x0, the same in y), its confidence is at least
    `min_confidence` and its class is in `classes` (all when None). At most `limit`
    rows come back, in file (Hilbert) order.
    """
    _check(bbox, min_confidence, limit)
    parquet, index = open_objects(source, cache_key)
    return _rows(parquet, index, bbox, min_confidence, classes, limit, columns)


def _rows(
    parquet: Any,
    index: RowGroupIndex,
    bbox: tuple[float, float, float, float] | None,
    min_confidence: float,
    classes: set[str] | None,
    limit: int | None,
    columns: list[str] | None,
) -> Iterator[Any]:
    wanted = index.max_confidence >= min_confidence
    if bbox is not None:
        x0, y0, x1, y1 = bbox
        b = index.bounds
        wanted &= (b[:, 0] < x1) & (b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 3] > y0)
    left = limit
    groups = np.flatnonzero(wanted).tolist()
    for start in range(0, len(groups), BATCH_GROUPS):
        if left is not None and left <= 0:
            return
        # several row groups per read: Arrow decodes them on its threads
        table = parquet.read_row_groups(
            groups[start : start + BATCH_GROUPS], columns=columns or FEATURE_COLUMNS
        )
        keep = table["confidence"].to_numpy() >= np.float32(min_confidence)
        if bbox is not None:
            keep &= (table["x_min"].to_numpy() < x1) & (table["x_max"].to_numpy() > x0)
            keep &= (table["y_min"].to_numpy() < y1) & (table["y_max"].to_numpy() > y0)
        if classes is not None:
            keep &= np.isin(np.asarray(table["class"].to_pylist(), object), list(classes))
        rows = np.flatnonzero(keep)
        if left is not None:
            rows = rows[:left]
            left -= len(rows)
        if len(rows):
            yield table.take(rows)


def viewport_geojson(
    source: str | Path | IO[bytes],
    *,
    bbox: tuple[float, float, float, float] | None = None,
    min_confidence: float = 0.0,
    classes: set[str] | None = None,
    limit: int | None = None,
    cache_key: str | None = None,
) -> Iterator[bytes]:
    """The matching objects (see `select_rows`) as a GeoJSON FeatureCollection, in
    chunks of bytes (one per row group read): never the whole answer in memory.

    Raises
    ------
    InvalidInput
        A malformed bbox, a confidence outside [0, 1] or a negative limit; checked
        when called, before any byte is produced.
    """
    _check(bbox, min_confidence, limit)
    parquet, index = open_objects(source, cache_key)
    return _geojson(_rows(parquet, index, bbox, min_confidence, classes, limit, None), index)


def _geojson(tables: Iterator[Any], index: RowGroupIndex) -> Iterator[bytes]:
    yield b'{"type":"FeatureCollection","features":['
    first = True
    for table in tables:  # each row holds its Feature's text (written by the merge)
        chunk = ",".join(table["feature"].to_pylist()).encode()
        yield chunk if first else b"," + chunk
        first = False
    yield b"]}"


def viewport_parquet(
    source: str | Path | IO[bytes],
    *,
    bbox: tuple[float, float, float, float] | None = None,
    min_confidence: float = 0.0,
    classes: set[str] | None = None,
    limit: int | None = None,
    cache_key: str | None = None,
) -> bytes:
    """The matching objects (see `select_rows`), every column, as a Parquet file."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    _check(bbox, min_confidence, limit)
    parquet, index = open_objects(source, cache_key)
    columns = parquet.schema_arrow.names
    tables = list(_rows(parquet, index, bbox, min_confidence, classes, limit, columns))
    table = pa.concat_tables(tables) if tables else parquet.schema_arrow.empty_table()
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()
