"""`inference.slide` through real jobs (a real database, store and worker processes):
nuclei-he against the synthetic slide's truth, seams, tissue, fan-out, outputs
(Parquet, QuPath GeoJSON, summary), a user region, a failing region, cancellation."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from common.inference_records import InferenceRecords
from common.jobs import JobRecord, Status
from common.jobs.service import JobService
from functions.inference.nuclei_he import MPP
from functions.inference.synthetic_layout import plan_layout
from functions.inference.wkb import decode_polygon
from tests.functions.inference.conftest import Truth, file_bytes, run_job, store_file
from tests.functions.inference.scoring import match

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slide_id(pool: JobService, he_slide: tuple[Path, Truth]) -> str:
    return str(store_file(pool, he_slide[0]).id)


@pytest.fixture(scope="module")
def single(pool: JobService, slide_id: str) -> JobRecord:
    job = run_job(pool, "inference.slide", {"file_id": slide_id})
    assert job.status is Status.succeeded, job.error
    return job


def objects(pool: JobService, job: JobRecord, tmp: Path) -> Any:
    assert job.result is not None
    path = tmp / f"{job.id}.parquet"
    path.write_bytes(file_bytes(pool, job.result["parquet_file_id"]))
    return pq.read_table(path), path


def test_nuclei_he_finds_the_true_nuclei_once_and_only_in_tissue(
    pool: JobService, single: JobRecord, he_slide: tuple[Path, Truth], tmp_path: Path
) -> None:
    _, truth = he_slide
    table, _ = objects(pool, single, tmp_path)
    found = np.stack([table["centroid_x"].to_numpy(), table["centroid_y"].to_numpy()], 1)
    score = match(truth.centroids, truth.radius, found)
    assert score.f1 >= 0.90, (score.precision, score.recall)
    area = table["area_um2"].to_numpy()[score.detection_index] / MPP**2
    error = np.abs(area - truth.area_px[score.truth_index]) / truth.area_px[score.truth_index]
    assert np.median(error) <= 0.15
    # Nuclei crossing a tile seam are reported once: no two detections within 3 px,
    # and every matched seam-crossing nucleus has exactly one detection near it.
    from scipy.spatial import cKDTree

    assert len(cKDTree(found).query_pairs(3.0)) == 0
    stride, half = 1024 - 80, 40
    seams = np.array([stride + half, 2 * stride + half])
    crossing = [
        i
        for i, o in enumerate(truth.outlines)
        if any((o[:, a].min() < s < o[:, a].max()) for a in (0, 1) for s in seams)
    ]
    assert len(crossing) > 30
    near = cKDTree(found).query_ball_point(truth.centroids[crossing], truth.radius[crossing])
    counts = np.array([len(n) for n in near])
    assert (counts <= 1).all() and (counts == 1).mean() >= 0.9
    layout = plan_layout(truth.meta["width"], truth.meta["height"], truth.meta["seed"])
    assert layout.in_tissue(found[:, 0], found[:, 1]).all()


def test_the_summary_counts_what_was_stored(
    pool: JobService, single: JobRecord, he_slide: tuple[Path, Truth], tmp_path: Path
) -> None:
    _, truth = he_slide
    assert single.result is not None
    summary = json.loads(file_bytes(pool, single.result["summary_file_id"]))
    assert summary == single.result["summary"]
    table, _ = objects(pool, single, tmp_path)
    assert summary["objects"] == table.num_rows == single.result["objects"]
    assert summary["counts"] == {"nucleus": table.num_rows}
    assert summary["tissue_area_mm2"] == pytest.approx(truth.meta["tissue_area_mm2"], rel=0.05)
    density = table.num_rows / summary["tissue_area_mm2"]
    assert summary["density_per_mm2"]["nucleus"] == pytest.approx(density, rel=1e-3)
    assert summary["tiles"] == 8 and summary["tiles_in_grid"] == 9
    assert summary["model"] == {
        "name": "nuclei-he",
        "kind": "segmentation",
        "mpp": 0.5,
        "tile": 1024,
        "overlap": 80,
        "classes": ["nucleus"],
    }
    assert summary["parameters"]["model"]["params"]["foreground_threshold"] == 60
    assert summary["timing_s"]["total_s"] > 0
    assert single.progress == 1.0


def test_parquet_rows_are_numbered_and_grouped_by_place(
    pool: JobService, single: JobRecord, tmp_path: Path
) -> None:
    table, path = objects(pool, single, tmp_path)
    assert table["id"].to_pylist() == list(range(table.num_rows))
    meta = pq.ParquetFile(path).metadata
    spans = []
    for g in range(meta.num_row_groups):
        group = pq.ParquetFile(path).read_row_group(g, columns=["x_min", "x_max", "y_min", "y_max"])
        spans.append(
            max(
                group["x_max"].to_numpy().max() - group["x_min"].to_numpy().min(),
                group["y_max"].to_numpy().max() - group["y_min"].to_numpy().min(),
            )
        )
    assert max(spans) < 2048  # each row group is a patch, not the slide
    ring = decode_polygon(table["polygon"][0].as_py())
    assert np.array_equal(ring[0], ring[-1]) and len(ring) >= 4
    x, y = table["centroid_x"][0].as_py(), table["centroid_y"][0].as_py()
    assert ring[:, 0].min() <= x <= ring[:, 0].max() and ring[:, 1].min() <= y <= ring[:, 1].max()
    measurements = table["measurements"][0].as_py()
    assert set(measurements) == {
        "centroid_x",
        "centroid_y",
        "area_um2",
        "mean_hematoxylin",
        "mean_eosin",
        "eccentricity",
        "solidity",
    }
    conf = table["confidence"].to_numpy()
    assert conf.min() >= 0.5 and conf.max() <= 1


def test_geojson_is_a_feature_collection_qupath_imports(
    pool: JobService, single: JobRecord, tmp_path: Path
) -> None:
    assert single.result is not None
    data = json.loads(file_bytes(pool, single.result["geojson_file_id"]))
    table, _ = objects(pool, single, tmp_path)
    assert data["type"] == "FeatureCollection" and len(data["features"]) == table.num_rows
    feature = data["features"][0]
    assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) >= 4
    props = feature["properties"]
    assert props["objectType"] == "detection"
    assert props["classification"] == {"name": "nucleus", "color": [47, 111, 214]}
    assert 0.5 <= props["confidence"] <= 1
    assert {"centroid_x", "centroid_y", "area_um2"} <= set(props["measurements"])


def test_fan_out_over_regions_gives_the_same_objects(
    pool: JobService, slide_id: str, single: JobRecord, tmp_path: Path
) -> None:
    fanned = run_job(pool, "inference.slide", {"file_id": slide_id, "tiles_per_region": 1})
    assert fanned.status is Status.succeeded, fanned.error
    assert fanned.result is not None and fanned.result["summary"]["regions"] == 8
    children = pool.runtime.queries.children(fanned.id)
    assert sorted(c.function for c in children) == ["inference.region"] * 8
    assert all(c.status is Status.succeeded for c in children)
    # what a slide's deletion removes: the task's outputs and its regions' own tables
    made = {str(f) for f in InferenceRecords(pool.runtime.db).artefact_ids([fanned.id])}
    region_files = {str(c.result["objects_file_id"]) for c in children if c.result}
    assert len(region_files) == 8 and region_files <= made
    assert str(fanned.result["parquet_file_id"]) in made
    a, _ = objects(pool, single, tmp_path)
    b, _ = objects(pool, fanned, tmp_path)

    def canonical(t: Any) -> list[tuple[float, ...]]:
        return sorted(
            zip(
                t["centroid_x"].to_pylist(),
                t["centroid_y"].to_pylist(),
                t["confidence"].to_pylist(),
                t["polygon"].to_pylist(),
                strict=True,
            )
        )

    assert canonical(a) == canonical(b)


def test_a_region_restricts_the_objects(pool: JobService, slide_id: str, tmp_path: Path) -> None:
    box = {"x0": 300, "y0": 400, "x1": 1300, "y1": 1200}
    job = run_job(pool, "inference.slide", {"file_id": slide_id, "region": {"bbox": box}})
    assert job.status is Status.succeeded, job.error
    table, _ = objects(pool, job, tmp_path)
    x, y = table["centroid_x"].to_numpy(), table["centroid_y"].to_numpy()
    assert table.num_rows > 100
    # the mask works at 2 px (its level), so centroids may sit up to 2 px past the box
    assert x.min() >= 298 and x.max() <= 1302 and y.min() >= 398 and y.max() <= 1202
    assert job.result is not None and job.result["summary"]["tiles"] < 8


def test_a_region_outside_the_slide_is_refused(pool: JobService, slide_id: str) -> None:
    box = {"x0": 5000, "y0": 0, "x1": 6000, "y1": 100}
    job = run_job(pool, "inference.slide", {"file_id": slide_id, "region": {"bbox": box}})
    assert job.status is Status.failed and job.error is not None
    assert job.error.type == "invalid-input" and "outside the slide" in job.error.message


@pytest.mark.parametrize("tiles_per_region", [200, 1])
def test_a_failed_region_fails_the_task_and_names_the_region(
    pool: JobService, slide_id: str, he_slide: tuple[Path, Truth], tiles_per_region: int
) -> None:
    not_a_model = store_file(pool, he_slide[0], name="model.onnx")  # a slide, not a graph
    model = {
        "kind": "onnx",
        "file_id": str(not_a_model.id),
        "input": {"size": 256, "mpp": 0.5},
        "output": {"kind": "segmentation", "classes": ["n"]},
    }
    job = run_job(
        pool,
        "inference.slide",
        {"file_id": slide_id, "model": model, "tiles_per_region": tiles_per_region},
    )
    assert job.status is Status.failed and job.error is not None
    assert job.error.type == "invalid-input", job.error.message
    assert (
        job.error.message.startswith("region 0 (") and "not a valid ONNX model" in job.error.message
    )


def test_cancelling_the_task_cancels_its_regions(pool: JobService, slide_id: str) -> None:
    job = pool.submit(
        "inference.slide", {"file_id": slide_id, "tiles_per_region": 1}, owner_id=None
    )
    deadline = time.monotonic() + 120
    while not pool.runtime.queries.events(job.id) or not any(
        "regions spawned" in (e.message or "") for e in pool.runtime.queries.events(job.id)
    ):
        assert time.monotonic() < deadline, "the task never spawned its regions"
        time.sleep(0.1)
    pool.cancel(job.id)
    deadline = time.monotonic() + 60
    while not (done := pool.runtime.jobs.get(job.id)).status.terminal:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert done.status is Status.cancelled
    deadline = time.monotonic() + 60
    while not all(c.status.terminal for c in pool.runtime.queries.children(job.id)):
        assert time.monotonic() < deadline, "children still running after the task's cancel"
        time.sleep(0.1)
    children = pool.runtime.queries.children(job.id)
    assert children and all(c.status in (Status.cancelled, Status.succeeded) for c in children)
    assert any(c.status is Status.cancelled for c in children)
