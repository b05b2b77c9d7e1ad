"""Viewport predictions as the viewer waits for them: `GET /api/v1/viewer/predictions/
{slide_id}?task_id=&bbox=` over real HTTP from `aperture serve`, beside the kernel
(`viewport_geojson` on the same file in this process) and the reference of the issue
(`json.load` of the whole GeoJSON, then the same bbox filter).

    uv run python tests/bench/bench_predictions_http.py [--objects 10000,100000] [--queries 200]

Objects: `bench_inference.synthetic_regions` (12-vertex outlines, one per 1,600 px²)
merged by `merge_regions` into the task's Parquet (Hilbert-ordered row groups). The
server is `aperture serve` in its own process on 127.0.0.1 (SQLite, directory store);
the user, the slide and the request are real. The task is recorded directly in the
server's database (a succeeded `inference.slide` job whose result names the merged
Parquet, stored as the user's file), so the figure is the query, not the inference run.

Queries: `--queries` random 2,000 x 2,000 px boxes, the same for both sides; the first
is reported apart (it builds the cached row-group index). One JSON line per object count:
p50/p99 of each side, `overhead_p50` = HTTP / kernel, `ratio_p50` = reference / HTTP.
Noisy on a shared machine: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_inference import emit, synthetic_regions  # noqa: E402

Box = tuple[float, float, float, float]


def objects_file(n: int, tmp: Path) -> tuple[Path, Path, float]:
    """The merged Parquet and GeoJSON of n synthetic objects; the side of their square."""
    from functions.inference.merge import merge_regions

    regions, side = synthetic_regions(n, tmp)
    parquet, geojson = tmp / f"objects-{n}.parquet", tmp / f"objects-{n}.geojson"
    merge_regions(regions, parquet, geojson, {"tumor": "#d63f2f", "immune": "#2f6fd6"})
    return parquet, geojson, side


def record_task(data_dir: Path, owner_id: uuid.UUID, slide_id: uuid.UUID, parquet: Path) -> str:
    """A succeeded inference task of `slide_id` whose objects are `parquet` (see above)."""
    from common.inference_records import InferenceRecords
    from common.jobs import Status
    from common.runtime import Runtime
    from common.settings import Settings

    runtime = Runtime.from_settings(Settings(data_dir=data_dir))
    try:
        with parquet.open("rb") as f:
            stored = runtime.files.add(
                f, name=parquet.name, owner_id=owner_id, kind="inference-objects"
            )
        job = runtime.jobs.create(
            function="inference.slide", params={}, executor="local", owner_id=owner_id
        )
        runtime.jobs.transition(job.id, Status.running)
        result = {"parquet_file_id": str(stored.id)}
        runtime.jobs.transition(job.id, Status.succeeded, result=result, progress=1.0)
        InferenceRecords(runtime.db).add_task(
            job.id,
            owner_id=owner_id,
            slide_id=slide_id,
            model_kind="builtin",
            model_name="nuclei-he",
            model_id=None,
        )
        return str(job.id)
    finally:
        runtime.close()


def timed(run: Callable[[Box], bytes], boxes: list[Box]) -> tuple[float, np.ndarray, int]:
    """(first query s, the others' seconds, features in the last answer)."""
    times, body = [], b""
    for box in boxes:
        started = time.perf_counter()
        body = run(box)
        times.append(time.perf_counter() - started)
    return times[0], np.array(times[1:]), len(json.loads(body)["features"])


def reference_s(geojson: Path, box: Box) -> float:
    started = time.perf_counter()
    with geojson.open("rb") as f:
        data = json.load(f)
    x0, y0, x1, y1 = box
    for feature in data["features"]:
        ring = np.asarray(feature["geometry"]["coordinates"][0])
        _ = (ring[:, 0].min() < x1 and ring[:, 0].max() > x0) and (
            ring[:, 1].min() < y1 and ring[:, 1].max() > y0
        )
    return time.perf_counter() - started


def bench(client: httpx.Client, data_dir: Path, ids: dict[str, Any], n: int, args: Any) -> None:
    from functions.inference.query import viewport_geojson

    tmp = Path(args.tmp)
    parquet, geojson, side = objects_file(n, tmp)
    task_id = record_task(data_dir, ids["owner"], ids["slide"], parquet)
    rng = np.random.default_rng(7)
    boxes: list[Box] = [
        (float(x), float(y), x + 2000.0, y + 2000.0)
        for x, y in rng.uniform(0, side - 2000, (201, 2))
    ]
    boxes = boxes[: args.queries + 1]
    url = f"/api/v1/viewer/predictions/{ids['slide']}"

    def http(box: Box) -> bytes:
        bbox = ",".join(f"{v:.0f}" for v in box)
        response = client.get(url, params={"task_id": task_id, "bbox": bbox})
        response.raise_for_status()
        return response.content

    def kernel(box: Box) -> bytes:
        rounded: Box = (round(box[0]), round(box[1]), round(box[2]), round(box[3]))
        return b"".join(viewport_geojson(parquet, bbox=rounded, cache_key=f"k{n}"))

    k_first, k_warm, k_found = timed(kernel, boxes)
    h_first, h_warm, h_found = timed(http, boxes)
    assert k_found == h_found, (k_found, h_found)
    reference = reference_s(geojson, boxes[-1]) if n <= args.reference_max else None
    h50 = float(np.percentile(h_warm, 50))
    emit(
        bench="inference.viewport_http",
        objects=n,
        bbox=2000,
        queries=len(h_warm),
        features_last_query=h_found,
        http_p50_ms=round(h50 * 1000, 2),
        http_p99_ms=round(float(np.percentile(h_warm, 99)) * 1000, 2),
        http_first_ms=round(h_first * 1000, 2),
        kernel_p50_ms=round(float(np.percentile(k_warm, 50)) * 1000, 2),
        kernel_p99_ms=round(float(np.percentile(k_warm, 99)) * 1000, 2),
        kernel_first_ms=round(k_first * 1000, 2),
        overhead_p50=round(h50 / float(np.percentile(k_warm, 50)), 2),
        reference="json.load of the whole GeoJSON, then the same bbox filter",
        reference_ms=None if reference is None else round(reference * 1000, 1),
        ratio_p50=None if reference is None else round(reference / h50, 1),
    )


def main() -> None:
    from functions.slides.synthetic import write_synthetic_slide
    from tests.support.app import LiveServer, register

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--reference-max", type=int, default=100_000, help="json.load up to n")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aperture-bench-predictions-") as tmp:
        args.tmp = tmp
        live = LiveServer(Path(tmp) / "data").start(workers=1)
        try:
            with live.client() as client:
                client.headers.update(register(client))
                slide = write_synthetic_slide(Path(tmp) / "s.svs", width=512, height=512)
                from tests.support.inference import upload_slide

                ids = {
                    "owner": uuid.UUID(client.get("/api/v1/users/me").json()["id"]),
                    "slide": uuid.UUID(upload_slide(client, slide)["id"]),
                }
                for n in (int(v) for v in args.objects.split(",")):
                    bench(client, live.data_dir, ids, n, args)
        finally:
            live.stop()


if __name__ == "__main__":
    main()
