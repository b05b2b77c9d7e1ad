"""An external service's predictions stored as the task's outputs, in the builtin
models' formats: the objects Parquet (Hilbert-ordered row groups, each row's GeoJSON
Feature), the QuPath GeoJSON and the summary, through the same merge."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from common.capabilities import Context
from common.inference_records import ServiceRecord
from functions.inference.geojson_in import keep_inside, read_features
from functions.inference.models import PALETTE
from functions.inference.outputs import objects_table
from functions.inference.params import InferenceResult
from functions.inference.stored import store_objects, store_result


def store_predictions(
    ctx: Context,
    params: Any,
    service: ServiceRecord,
    slide: dict[str, Any],
    collection: Any,
    *,
    name: str,
) -> InferenceResult:
    """Read, filter (threshold, region) and store `collection` for the task."""
    import pyarrow.parquet as pq

    started = time.monotonic()
    declared = list(service.output.get("classes") or [])
    objects, classes, measured = read_features(collection, classes=declared, mpp=slide["mpp"])
    received = len(objects)
    region = params.region.points() if params.region else None
    objects = keep_inside(objects, confidence_threshold=params.confidence_threshold, region=region)
    colors = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(classes)}
    stem = name or "slide"
    with tempfile.TemporaryDirectory(prefix="aperture-external-") as folder:
        tmp = Path(folder)
        table = objects_table(objects, classes, ("centroid_x", "centroid_y", *measured))
        pq.write_table(table, tmp / "region-0.parquet")
        stored = store_objects(ctx, [tmp / "region-0.parquet"], tmp, stem, colors)
    report = stored.report
    counts = dict(sorted(report.per_class.items()))
    summary = {
        "model": {
            "name": service.name,
            "kind": "external",
            "service_id": str(service.id),
            "mpp": service.mpp,
            "output": service.output.get("kind"),
            "classes": classes,
        },
        "parameters": params.model_dump(mode="json"),
        "slide": {k: slide[k] for k in ("width", "height", "mpp")},
        "objects": report.objects,
        "received": received,
        "counts": counts,
        "measurements": ["centroid_x", "centroid_y", *measured],
        "row_groups": report.row_groups,
        "store_s": round(time.monotonic() - started, 3),
    }
    return store_result(ctx, stem, stored, summary, None)
