"""Merging regions into the task's outputs, streaming: pass 1 reads only the light
columns of every region to find seam duplicates (polygons are read only for candidate
pairs); pass 2 reads one region at a time, drops the duplicates, orders its rows
along the Hilbert curve, numbers them and appends them to the Parquet file and the
GeoJSON. Memory: one region's objects plus the light columns, whatever the slide."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from functions.inference.outputs import (
    LIGHT_COLUMNS,
    GeoJSONWriter,
    feature_texts,
    spatial_groups,
)
from functions.inference.seams import duplicates
from functions.inference.wkb import decode_polygon


@dataclass
class MergeReport:
    objects: int = 0
    duplicates: int = 0
    per_class: Counter[str] = field(default_factory=Counter)
    row_groups: int = 0


def find_duplicates(regions: Sequence[Path]) -> list[np.ndarray]:
    """Per region, the row positions of seam duplicates to drop."""
    import pyarrow.parquet as pq

    light = [pq.read_table(path, columns=LIGHT_COLUMNS) for path in regions]
    sizes = [t.num_rows for t in light]
    if sum(sizes) == 0:
        return [np.empty(0, np.int64) for _ in regions]
    col = {n: np.concatenate([t[n].to_numpy() for t in light]) for n in LIGHT_COLUMNS}
    owner = np.repeat(np.arange(len(regions)), sizes)
    row = np.concatenate([np.arange(n) for n in sizes])
    polygons: dict[int, list[bytes]] = {}

    def polygon(i: int) -> np.ndarray:
        region = int(owner[i])
        if region not in polygons:
            polygons[region] = pq.read_table(regions[region], columns=["polygon"])[
                "polygon"
            ].to_pylist()
        return decode_polygon(polygons[region][int(row[i])])[:-1]

    drop = duplicates(
        np.stack([col["centroid_x"], col["centroid_y"]], 1),
        np.stack([col["x_min"], col["y_min"], col["x_max"], col["y_max"]], 1),
        col["confidence"],
        np.stack([col["tile_col"], col["tile_row"]], 1),
        polygon,
    )
    return [row[drop[owner[drop] == r]] for r in range(len(regions))]


def merge_regions(
    regions: Sequence[Path],
    parquet_out: Path,
    geojson_out: Path,
    colors: dict[str, str],
) -> MergeReport:
    """Write the task's Parquet and GeoJSON from the regions' tables (in region order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    report = MergeReport()
    drops = find_duplicates(regions)
    writer = None
    next_id = 0
    with geojson_out.open("wb") as gj:
        features = GeoJSONWriter(gj)
        for path, drop in zip(regions, drops, strict=True):
            table = pq.read_table(path)
            if len(drop):
                keep = np.ones(table.num_rows, bool)
                keep[drop] = False
                table = table.filter(pa.array(keep))
                report.duplicates += len(drop)
            for group in spatial_groups(table):
                ids = pa.array(np.arange(next_id, next_id + group.num_rows, dtype=np.int64))
                group = group.add_column(0, "id", ids)
                texts = feature_texts(group, colors)
                group = group.append_column("feature", texts)
                next_id += group.num_rows
                if writer is None:
                    schema = group.schema.with_metadata({"aperture.colors": json.dumps(colors)})
                    # lz4: viewport reads decode 1.6x faster than zstd, for 17 % more bytes
                    writer = pq.ParquetWriter(parquet_out, schema, compression="lz4")
                writer.write_table(group.cast(writer.schema), row_group_size=group.num_rows)
                report.row_groups += 1
                features.write(texts)
                report.per_class.update(group["class"].to_pylist())
        features.close()
    if writer is None:  # no objects: an empty file with the regions' schema
        schema = pq.read_schema(regions[0]) if regions else None
        empty = schema.empty_table() if schema is not None else pa.table({})
        empty = empty.add_column(0, "id", pa.array([], pa.int64()))
        empty = empty.append_column("feature", pa.array([], pa.string()))
        pq.write_table(
            empty.replace_schema_metadata({"aperture.colors": json.dumps(colors)}), parquet_out
        )
    else:
        writer.close()
    report.objects = next_id
    return report
