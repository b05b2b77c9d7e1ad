"""Dataset builds over HTTP: POST /datasets/{id}/builds answers 202 with the job and
its Location, the build is listed and detailed (parts per file, summary, shard and
manifest ids), the shards download and load with `webdataset`, stats count builds, and
bad input is a 422 naming the problem."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from functions.inference.synthetic import write_he_slide
from tests.functions.datasets.wdsload import load
from tests.support.app import register, signed_in, wait_for_job

API = "/api/v1/datasets"


@pytest.fixture(scope="module")
def slide_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path, _ = write_he_slide(
        tmp_path_factory.mktemp("api-build") / "he.svs", width=1024, height=1024, seed=5, levels=2
    )
    return path.read_bytes()


def _upload(client: TestClient, name: str, data: bytes) -> str:
    response = client.post("/api/v1/files", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _dataset(client: TestClient, *file_ids: str) -> str:
    created = client.post(API, json={"name": f"build-{uuid.uuid4().hex[:6]}"})
    assert created.status_code == 201, created.text
    dataset_id = str(created.json()["id"])
    if file_ids:
        added = client.post(f"{API}/{dataset_id}/files", json={"file_ids": list(file_ids)})
        assert added.status_code == 200, added.text
    return dataset_id


@pytest.fixture(scope="module")
def slides(client: TestClient, slide_bytes: bytes) -> tuple[str, list[str]]:
    ids = [_upload(client, f"he-{i}.svs", slide_bytes) for i in range(2)]
    return _dataset(client, *ids), ids


SPEC: dict[str, Any] = {
    "patches": {"size": 64, "mpp": 2.0, "min_tissue": 0.5},
    "split": {"train": 0.5, "validation": 0.5, "test": 0.0, "seed": 1},
    "output": {"format": "jpeg", "quality": 90, "shard_size": 16},
}


def test_a_build_runs_and_its_shards_download_and_load(
    client: TestClient, slides: tuple[str, list[str]], tmp_path: Path
) -> None:
    dataset_id, ids = slides
    response = client.post(f"{API}/{dataset_id}/builds", json=SPEC)
    assert response.status_code == 202, response.text
    build = response.json()
    assert response.headers["Location"] == f"/api/v1/jobs/{build['job_id']}"
    assert build["dataset_id"] == dataset_id and build["status"] in ("queued", "running")
    job = wait_for_job(client, build["job_id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    detail = client.get(f"{API}/{dataset_id}/builds/{build['job_id']}").json()
    assert detail["status"] == "succeeded" and detail["progress"] == 1.0
    assert sorted(p["file_id"] for p in detail["parts"]) == sorted(ids)
    assert {p["split"] for p in detail["parts"]} == {"train", "validation"}
    assert all(p["status"] == "succeeded" and p["samples"] > 0 for p in detail["parts"])
    assert sum(p["samples"] for p in detail["parts"]) == detail["samples"]
    shards = []
    for file_id in detail["shard_file_ids"]:
        download = client.get(f"/api/v1/files/{file_id}/download")
        assert download.status_code == 200
        shards.append(tmp_path / f"{file_id}.tar")
        shards[-1].write_bytes(download.content)
    samples = load(shards, "jpg", "json")
    assert len(samples) == detail["samples"]
    assert all(p.shape == (64, 64, 3) and p.dtype == np.uint8 for p, _ in samples)
    assert {m["split"] for _, m in samples} == {"train", "validation"}
    listed = client.get(f"{API}/{dataset_id}/builds").json()
    assert [b["job_id"] for b in listed["items"]] == [build["job_id"]] and listed["total"] == 1
    stats = client.get(f"{API}/stats").json()["items"]
    mine = next(s for s in stats if s["dataset_id"] == dataset_id)
    assert mine["builds"] == 1 and mine["builds_by_status"]["succeeded"] == 1
    elsewhere = client.get(f"{API}/{_dataset(client)}/builds/{build['job_id']}")
    assert elsewhere.status_code == 422 and "is of dataset" in elsewhere.text
    noop = client.post("/api/v1/jobs", json={"function": "noop", "params": {}}).json()
    not_a_build = client.get(f"{API}/{dataset_id}/builds/{noop['id']}")
    assert not_a_build.status_code == 422 and "not a dataset build" in not_a_build.text
    files = client.get(f"{API}/{dataset_id}/files", params={"limit": 500}).json()["items"]
    assert {f["kind"] for f in files} >= {"dataset-shard", "dataset-manifest", "dataset-summary"}


@pytest.mark.parametrize(
    ("patches", "message"),
    [
        ({"size": 8}, "size"),
        ({"size": 5000}, "size"),
        ({"mpp": 0.01}, "mpp"),
        ({"mpp": 100}, "mpp"),
        ({"mpp": 0.25}, "finer than slide"),
        ({"size": 2048, "mpp": 8.0}, "larger than slide"),
    ],
)
def test_patch_size_or_resolution_out_of_range_is_422(
    client: TestClient, slides: tuple[str, list[str]], patches: dict[str, Any], message: str
) -> None:
    body = {**SPEC, "patches": {**SPEC["patches"], **patches}}
    response = client.post(f"{API}/{slides[0]}/builds", json=body)
    assert response.status_code == 422, response.text
    assert message in response.text


def test_labels_from_a_task_of_another_user_or_slide_is_422(
    client: TestClient, app_client: TestClient, slides: tuple[str, list[str]], slide_bytes: bytes
) -> None:
    dataset_id, ids = slides
    other = signed_in(app_client, register(app_client))
    theirs = _upload(other, "theirs.svs", slide_bytes)
    their_task = other.post(
        "/api/v1/jobs", json={"function": "inference.slide", "params": {"file_id": theirs}}
    )
    assert their_task.status_code == 202
    body = {**SPEC, "patches": {**SPEC["patches"], "labels_from": [their_task.json()["id"]]}}
    response = client.post(f"{API}/{dataset_id}/builds", json=body)
    assert response.status_code == 422 and "not one of your jobs" in response.text
    elsewhere = _upload(client, "elsewhere.svs", slide_bytes)
    task = client.post(
        "/api/v1/jobs", json={"function": "inference.slide", "params": {"file_id": elsewhere}}
    )
    job = wait_for_job(client, task.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    body = {**SPEC, "patches": {**SPEC["patches"], "labels_from": [job["id"]]}}
    response = client.post(f"{API}/{dataset_id}/builds", json=body)
    assert response.status_code == 422 and "another slide" in response.text
    assert ids  # the dataset's own slides are untouched


def test_a_time_lapse_without_workflow_results_is_422(client: TestClient, tmp_path: Path) -> None:
    from functions.microscopy.synthetic import write_timelapse

    paths = write_timelapse(tmp_path, fovs=1, frames=3, size=64, seed=2)
    movie = _upload(client, "movie.ome.tif", paths.image.read_bytes())
    dataset_id = _dataset(client, movie)
    response = client.post(f"{API}/{dataset_id}/builds", json={"crops": {"size": 32}})
    assert response.status_code == 422, response.text
    assert "movie.ome.tif has no workflow results" in response.text


def test_another_users_dataset_is_404_and_an_empty_spec_422(
    client: TestClient, app_client: TestClient, slides: tuple[str, list[str]]
) -> None:
    other = signed_in(app_client, register(app_client))
    assert other.post(f"{API}/{slides[0]}/builds", json=SPEC).status_code == 404
    assert other.get(f"{API}/{slides[0]}/builds").status_code == 404
    response = client.post(
        f"{API}/{slides[0]}/builds", json={"split": {"train": 1, "validation": 0, "test": 0}}
    )
    assert response.status_code == 422 and "patches" in response.text
