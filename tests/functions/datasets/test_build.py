"""`datasets.build` through real jobs (database, store, worker processes): a part per
slide, shards per split that `webdataset` loads, the manifest, a split that never
shares a slide, a source that cannot be read, labels from a real inference task, and
cancel leaving no partial shard."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from common.jobs import JobRecord, Status
from common.jobs.service import JobService
from functions.datasets.params import BuildParams
from functions.datasets.plan import assign_splits, plan_build
from tests.functions.datasets.wdsload import load
from tests.functions.inference.conftest import Truth, file_bytes, run_job, store_file


@pytest.fixture(scope="module")
def dataset(pool: JobService, small_slides: list[Path]) -> tuple[str, list[str]]:
    runtime = pool.runtime
    ds = runtime.datasets.create(owner_id=None, name=f"slides-{uuid.uuid4().hex[:6]}")
    ids = [store_file(pool, p).id for p in small_slides]
    runtime.datasets.add_files(ds.id, ids)
    return str(ds.id), [str(i) for i in ids]


def _spec(dataset_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "patches": {"size": 64, "mpp": 2.0, "min_tissue": 0.5},
        "split": {"train": 0.34, "validation": 0.33, "test": 0.33, "seed": 7},
        "output": {"shard_size": 10},
        **extra,
    }


def _planned(pool: JobService, spec: dict[str, Any]) -> dict[str, Any]:
    params = plan_build(pool.runtime, None, BuildParams.model_validate(spec))
    return params.model_dump(mode="json")


def _download(pool: JobService, ids: list[str], tmp: Path) -> list[Path]:
    out = []
    for i in ids:
        stored = pool.runtime.files.get(uuid.UUID(i))
        path = tmp / stored.name
        path.write_bytes(file_bytes(pool, i))
        out.append(path)
    return out


@pytest.fixture(scope="module")
def built(pool: JobService, dataset: tuple[str, list[str]]) -> JobRecord:
    job = run_job(pool, "datasets.build", _planned(pool, _spec(dataset[0])))
    assert job.status is Status.succeeded, job.error
    return job


def test_shards_load_with_webdataset_and_the_split_shares_no_slide(
    pool: JobService, built: JobRecord, dataset: tuple[str, list[str]], tmp_path: Path
) -> None:
    assert built.result is not None
    shards = _download(pool, [str(i) for i in built.result["shard_file_ids"]], tmp_path)
    assert all(p.name.split("-shard-")[0].startswith("build-") for p in shards)
    samples = load(shards, "png", "json", "__key__")
    summary = built.result["summary"]
    assert len(samples) == summary["samples"] == built.result["samples"] > 10
    for pixels, meta, key in samples:
        assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
        assert meta["key"] == key and meta["level"] == 1 and meta["tissue"] >= 0.5
    by_split: dict[str, set[str]] = {}
    for path in shards:
        split = path.name.removeprefix("build-").split("-shard-")[0]
        metas = [m for (m,) in load([path], "json")]
        assert 0 < len(metas) <= 10  # shard_size
        by_split.setdefault(split, set()).update(m["source_file_id"] for m in metas)
    assert sorted(by_split) == ["test", "train", "validation"]
    seen = [s for sources in by_split.values() for s in sources]
    assert len(seen) == len(set(seen)) == 3  # each slide in exactly one split
    for split, stats in summary["splits"].items():
        assert stats["sources"] == len(by_split[split])


def test_manifest_has_a_row_per_sample_and_the_files_join_the_dataset(
    pool: JobService, built: JobRecord, dataset: tuple[str, list[str]], tmp_path: Path
) -> None:
    assert built.result is not None
    result = built.result
    csv = pacsv.read_csv(io.BytesIO(file_bytes(pool, result["manifest_csv_file_id"])))
    table = pq.read_table(io.BytesIO(file_bytes(pool, result["manifest_parquet_file_id"])))
    assert csv.num_rows == table.num_rows == result["samples"]
    assert table["key"].to_pylist() == csv["key"].to_pylist()
    assert set(table["source_file_id"].to_pylist()) == set(dataset[1])
    rows, _ = pool.runtime.datasets.files(uuid.UUID(dataset[0]), limit=500)
    ids = {str(r.id) for r in rows}
    made = [*result["shard_file_ids"], result["manifest_csv_file_id"], result["summary_file_id"]]
    assert {str(i) for i in made} <= ids
    assert not [r for r in rows if r.kind == "dataset-part"]  # parts are removed
    summary = json.loads(file_bytes(pool, result["summary_file_id"]))
    assert summary["samples"] == result["samples"]


def test_a_build_can_put_its_outputs_in_a_new_dataset(
    pool: JobService, dataset: tuple[str, list[str]]
) -> None:
    spec = _spec(dataset[0], source_ids=[dataset[1][0]], new_dataset_name="nuclei patches v1")
    job = run_job(pool, "datasets.build", _planned(pool, spec))
    assert job.status is Status.succeeded, job.error
    assert job.result is not None
    new_id = uuid.UUID(job.result["dataset_id"])
    assert str(new_id) != dataset[0]
    assert pool.runtime.datasets.get(new_id).name == "nuclei patches v1"
    rows, _ = pool.runtime.datasets.files(new_id, limit=500)
    assert {str(i) for i in job.result["shard_file_ids"]} <= {str(r.id) for r in rows}
    with pytest.raises(ValidationError, match="not both"):
        BuildParams.model_validate({**spec, "target_dataset_id": dataset[0]})


def test_the_split_is_deterministic_by_source_file() -> None:
    files = [uuid.UUID(int=i) for i in range(20)]
    first = assign_splits(files, (0.6, 0.2, 0.2), seed=1)
    assert first == assign_splits(list(reversed(files)), (0.6, 0.2, 0.2), seed=1)
    assert first != assign_splits(files, (0.6, 0.2, 0.2), seed=2)
    counts = {s: list(first.values()).count(s) for s in ("train", "validation", "test")}
    assert counts == {"train": 12, "validation": 4, "test": 4}


def test_a_source_that_cannot_be_read_fails_its_part_with_the_reason(
    pool: JobService, dataset: tuple[str, list[str]], small_slides: list[Path], tmp_path: Path
) -> None:
    spec = _planned(pool, _spec(dataset[0], source_ids=[dataset[1][0]]))
    broken = tmp_path / "broken.svs"
    data = small_slides[1].read_bytes()
    broken.write_bytes(data[: len(data) // 3])  # header intact, tiles cut off
    bad = store_file(pool, broken)
    spec["planned"].append({**spec["planned"][0], "file_id": str(bad.id), "name": bad.name})
    job = run_job(pool, "datasets.build", spec)
    assert job.status is Status.succeeded, job.error
    assert job.result is not None
    (failed,) = job.result["failed_sources"]
    assert failed["file_id"] == str(bad.id) and failed["status"] == "failed"
    assert "broken.svs" in failed["reason"]
    assert job.result["samples"] > 0


def test_labels_from_an_inference_task_count_its_objects(
    pool: JobService, he_slide: tuple[Path, Truth], tmp_path: Path
) -> None:
    runtime = pool.runtime
    slide = store_file(pool, he_slide[0], name="labelled.svs")
    ds = runtime.datasets.create(owner_id=None, name="labelled")
    runtime.datasets.add_files(ds.id, [slide.id])
    task = run_job(pool, "inference.slide", {"file_id": str(slide.id)})
    assert task.status is Status.succeeded and task.result is not None
    spec = _spec(str(ds.id), split={"train": 1.0, "validation": 0.0, "test": 0.0})
    spec["patches"] = {"size": 128, "mpp": 1.0, "min_tissue": 0.5, "labels_from": [str(task.id)]}
    job = run_job(pool, "datasets.build", _planned(pool, spec))
    assert job.status is Status.succeeded, job.error
    assert job.result is not None
    objects = pq.read_table(io.BytesIO(file_bytes(pool, task.result["parquet_file_id"])))
    cx, cy = objects["centroid_x"].to_numpy(), objects["centroid_y"].to_numpy()
    shards = _download(pool, [str(i) for i in job.result["shard_file_ids"]], tmp_path)
    total = 0
    for _, meta in load(shards, "png", "json"):
        inside = (
            (cx >= meta["x"]) & (cx < meta["x"] + 256) & (cy >= meta["y"]) & (cy < meta["y"] + 256)
        )
        assert meta["counts"].get("nucleus", 0) == int(inside.sum())
        total += int(inside.sum())
    assert total > 100
    assert job.result["summary"]["classes"] == {"nucleus": total}


def test_cancel_mid_build_leaves_no_partial_shard(
    pool: JobService, dataset: tuple[str, list[str]], he_slide: tuple[Path, Truth]
) -> None:
    runtime = pool.runtime
    big = store_file(pool, he_slide[0], name="many-patches.svs")
    ds = runtime.datasets.create(owner_id=None, name="to-cancel")
    runtime.datasets.add_files(ds.id, [big.id])
    spec = _spec(str(ds.id), output={"shard_size": 50})
    spec["patches"] = {"size": 16, "mpp": 0.5, "min_tissue": 0.0}  # 16,384 patches
    job = pool.submit("datasets.build", _planned(pool, spec), owner_id=None)
    deadline = time.monotonic() + 60
    while not any(c.progress > 0 for c in runtime.queries.children(job.id)):
        assert time.monotonic() < deadline, "the part never started"
        time.sleep(0.05)
    pool.cancel(job.id)
    while not (found := runtime.jobs.get(job.id)).status.terminal:
        assert time.monotonic() < deadline + 60
        time.sleep(0.1)
    assert found.status is Status.cancelled
    children = [c.id for c in runtime.queries.children(job.id)]
    assert children and all(runtime.jobs.get(c).status.terminal for c in children)
    assert runtime.files.made_by([job.id, *children]) == []
    rows, _ = runtime.datasets.files(ds.id)
    assert [r.id for r in rows] == [big.id]
