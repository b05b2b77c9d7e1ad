"""A task's stored outputs: the merged objects (Parquet and GeoJSON) and the summary,
saved the same way whether the objects came from our regions or an external service."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions.inference.merge import MergeReport, merge_regions
from functions.inference.outputs import GEOJSON, PARQUET
from functions.inference.params import InferenceResult


@dataclass(frozen=True)
class StoredObjects:
    report: MergeReport
    parquet_id: Any
    geojson_id: Any


def store_objects(
    ctx: Any, regions: list[Path], tmp: Path, stem: str, colors: dict[str, str]
) -> StoredObjects:
    """Merge the regions' tables (seams, duplicates) and store the task's objects."""
    report = merge_regions(regions, tmp / "objects.parquet", tmp / "objects.geojson", colors)
    with (tmp / "objects.parquet").open("rb") as f:
        parquet = ctx.save_file(
            f"{stem}.objects.parquet", f, content_type=PARQUET, kind="inference-objects"
        )
    with (tmp / "objects.geojson").open("rb") as f:
        geojson = ctx.save_file(
            f"{stem}.geojson", f, content_type=GEOJSON, kind="inference-geojson"
        )
    return StoredObjects(report, parquet.id, geojson.id)


def store_result(
    ctx: Any, stem: str, stored: StoredObjects, summary: dict[str, Any], tissue_id: Any
) -> InferenceResult:
    """Store the summary; the task's result naming every output."""
    summary_file = ctx.save_file(
        f"{stem}.summary.json",
        json.dumps(summary, indent=2).encode(),
        content_type="application/json",
        kind="inference-summary",
    )
    ctx.progress(1.0, f"{stored.report.objects} objects")
    return InferenceResult(
        summary=summary,
        geojson_file_id=stored.geojson_id,
        parquet_file_id=stored.parquet_id,
        summary_file_id=summary_file.id,
        tissue_file_id=tissue_id,
        objects=stored.report.objects,
    )
