"""Inference through the HTTP API on the real app (worker processes, database, store):
the model list, nuclei-he over a synthetic H&E slide through POST /inference, tasks as
jobs, the viewport route (bbox, class, confidence, limit, Parquet, density), ONNX
registration (malformed and mismatched graphs refused, a good one run), bad input, and
a slide's deletion taking its tasks' artefacts with it."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from functions.inference.synthetic import write_he_slide
from tests.functions.inference import onnx_graphs
from tests.functions.inference.conftest import Truth, load_truth
from tests.functions.inference.scoring import match
from tests.support.app import register, signed_in
from tests.support.inference import bounds, centroids, start_task, upload_slide, wait_task

pytestmark = pytest.mark.slow

PARQUET = "application/vnd.apache.parquet"


@pytest.fixture(scope="module")
def he(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    """1,024 x 768 at 0.5 µm/px: one nuclei-he tile, about 300 nuclei."""
    path, truth = write_he_slide(
        tmp_path_factory.mktemp("he") / "he.svs", width=1024, height=768, seed=3
    )
    return path, load_truth(truth)


@pytest.fixture(scope="module")
def slide(client: TestClient, he: tuple[Path, Truth]) -> dict[str, Any]:
    return upload_slide(client, he[0])


@pytest.fixture(scope="module")
def task(client: TestClient, slide: dict[str, Any]) -> dict[str, Any]:
    started = start_task(client, {"slide_id": slide["id"], "model": "nuclei-he"})
    assert started["status"] in {"queued", "running"} and started["model"]["kind"] == "builtin"
    done = wait_task(client, started["task_id"])
    assert done["status"] == "succeeded", done["error"]
    return done


def features(client: TestClient, slide_id: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/viewer/predictions/{slide_id}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/geo+json")
    body = response.json()
    assert body["type"] == "FeatureCollection"
    return body["features"]  # type: ignore[no-any-return]


def test_models_list_the_builtin_with_its_parameters(client: TestClient) -> None:
    models = client.get("/api/v1/inference/models").json()
    builtin = next(m for m in models if m["name"] == "nuclei-he")
    assert builtin["kind"] == "builtin" and builtin["id"] == "nuclei-he"
    assert builtin["mpp"] == 0.5
    assert builtin["output"]["kind"] == "segmentation" and builtin["output"]["classes"]
    props = builtin["params_schema"]["properties"]
    assert props["foreground_threshold"]["default"] == 60
    assert props["min_nucleus_area"]["default"] == 80


def test_a_builtin_task_is_a_job_with_its_outputs(
    client: TestClient, slide: dict[str, Any], task: dict[str, Any], he: tuple[Path, Truth]
) -> None:
    job = client.get(f"/api/v1/jobs/{task['task_id']}").json()
    assert job["function"] == "inference.slide" and job["status"] == "succeeded"
    assert task["slide_id"] == slide["id"] and task["progress"] == 1.0
    summary, artefacts = task["summary"], task["artefacts"]
    assert task["objects"] == summary["objects"] == sum(summary["counts"].values()) > 100
    for key in ("parquet_file_id", "geojson_file_id", "summary_file_id", "tissue_file_id"):
        assert client.get(f"/api/v1/files/{artefacts[key]}").status_code == 200
    truth = he[1]
    found = centroids(features(client, slide["id"]))
    assert len(found) == task["objects"]
    assert match(truth.centroids, truth.radius, found).f1 >= 0.9
    listed = client.get("/api/v1/inference/tasks", params={"slide_id": slide["id"]}).json()
    assert [t["task_id"] for t in listed["items"]] == [task["task_id"]] and listed["total"] == 1
    by_model = client.get("/api/v1/inference/tasks", params={"model": "nuclei-he"}).json()
    assert task["task_id"] in {t["task_id"] for t in by_model["items"]}
    failed = client.get("/api/v1/inference/tasks", params={"status": "failed"}).json()
    assert task["task_id"] not in {t["task_id"] for t in failed["items"]}
    events = client.get(f"/api/v1/jobs/{task['task_id']}/events")  # the jobs' SSE stream
    assert events.headers["content-type"].startswith("text/event-stream")
    kinds = [line[6:].strip() for line in events.text.splitlines() if line.startswith("event:")]
    data = [line[5:].strip() for line in events.text.splitlines() if line.startswith("data:")]
    assert "progress" in kinds and kinds[-1] == "status"
    assert json.loads(data[-1])["status"] == "succeeded"


def test_the_viewport_query_filters_by_box_class_confidence_and_limit(
    client: TestClient, slide: dict[str, Any], task: dict[str, Any]
) -> None:
    every = features(client, slide["id"])
    response = client.get(f"/api/v1/viewer/predictions/{slide['id']}")
    assert response.headers["x-aperture-task-id"] == task["task_id"]
    props = every[0]["properties"]
    assert 0 <= props["confidence"] <= 1 and props["objectType"] == "detection"
    assert {"centroid_x", "centroid_y"} <= set(props["measurements"])
    box = (200.0, 150.0, 600.0, 500.0)
    inside = features(client, slide["id"], bbox=",".join(map(str, box)))
    b = bounds(every)
    meets = (b[:, 0] < box[2]) & (b[:, 2] > box[0]) & (b[:, 1] < box[3]) & (b[:, 3] > box[1])
    ids = lambda fs: sorted(f["properties"]["object_id"] for f in fs)  # noqa: E731
    assert 0 < len(inside) < len(every)
    assert ids(inside) == ids([f for f, m in zip(every, meets, strict=True) if m])
    confident = features(client, slide["id"], min_confidence=0.8)
    conf = np.array([f["properties"]["confidence"] for f in every])
    assert len(confident) == int((conf >= 0.8).sum())
    name = props["classification"]["name"]
    assert len(features(client, slide["id"], **{"class": name})) == len(every)
    assert features(client, slide["id"], **{"class": "no-such-class"}) == []
    assert len(features(client, slide["id"], limit=5)) == 5
    parquet = client.get(
        f"/api/v1/viewer/predictions/{slide['id']}",
        params={"bbox": ",".join(map(str, box))},
        headers={"Accept": PARQUET},
    )
    assert parquet.headers["content-type"] == PARQUET
    table = pq.read_table(io.BytesIO(parquet.content))
    assert sorted(table["id"].to_pylist()) == ids(inside)
    density = client.get(
        f"/api/v1/viewer/predictions/{slide['id']}/density",
        params={"bbox": ",".join(map(str, box)), "grid": 8},
    ).json()
    c = centroids(inside)
    within = (c[:, 0] >= box[0]) & (c[:, 0] < box[2]) & (c[:, 1] >= box[1]) & (c[:, 1] < box[3])
    assert density["total"] == int(within.sum()) and len(density["counts"]) == 8 * 7


def test_bad_input_is_refused_with_the_reason(
    client: TestClient, app_client: TestClient, slide: dict[str, Any], task: dict[str, Any]
) -> None:
    base = {"slide_id": slide["id"], "model": "nuclei-he"}
    cases = [
        ({**base, "slide_id": str(uuid.uuid4())}, 404, "no slide"),
        ({**base, "model": "no-such-model"}, 404, "no model"),
        ({**base, "model": str(uuid.uuid4())}, 404, "no model"),
        ({**base, "confidence_threshold": 1.5}, 422, "confidence_threshold"),
        ({**base, "region": {"bbox": {"x0": 5000, "y0": 0, "x1": 6000, "y1": 10}}}, 422, "outside"),
        ({**base, "params": {"foreground_threshold": -1}}, 422, "foreground_threshold"),
        ({**base, "params": {"nope": 1}}, 422, "nope"),
    ]
    for body, status, words in cases:
        response = client.post("/api/v1/inference", json=body)
        assert response.status_code == status, (body, response.text)
        assert words in response.json()["detail"], response.json()
    url = f"/api/v1/viewer/predictions/{slide['id']}"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"bbox": "1,2,3"}, "bbox"),
        ({"bbox": "5,5,1,1"}, "bbox"),
        ({"bbox": "a,b,c,d"}, "bbox"),
        ({"min_confidence": 2}, "min_confidence"),
        ({"limit": -1}, "limit"),
    ]
    for params, words in bad:
        response = client.get(url, params=params)
        assert response.status_code == 422 and words in response.json()["detail"], response.text
    other = signed_in(app_client, register(app_client))
    assert other.get(url).status_code == 404  # another user's slide
    assert other.get(f"/api/v1/inference/tasks/{task['task_id']}").status_code == 404
    assert other.delete(f"/api/v1/inference/tasks/{task['task_id']}").status_code == 404
    assert other.post("/api/v1/inference", json=base).status_code == 404
    assert client.get(url, params={"task_id": str(uuid.uuid4())}).status_code == 404
    assert client.get(f"/api/v1/inference/tasks/{uuid.uuid4()}").status_code == 404
    done = client.delete(f"/api/v1/inference/tasks/{task['task_id']}")
    assert done.status_code == 409  # finished tasks cannot be cancelled


def _onnx(client: TestClient, tmp: Path, name: str, data: bytes) -> str:
    stored = client.post("/api/v1/files", files={"file": (name, data)})
    assert stored.status_code == 201, stored.text
    return str(stored.json()["id"])


def _declaration(file_id: str, name: str, size: int = 256) -> dict[str, Any]:
    return {
        "file_id": file_id,
        "name": name,
        "input": {"size": size, "mpp": 0.5},
        "output": {"kind": "segmentation", "classes": ["nucleus"], "split": "watershed"},
    }


def test_onnx_models_are_checked_at_registration_and_run(
    client: TestClient,
    app_client: TestClient,
    slide: dict[str, Any],
    task: dict[str, Any],
    he: tuple[Path, Truth],
    tmp_path: Path,
) -> None:
    junk = _onnx(client, tmp_path, "junk.onnx", b"\x08\x07not a model at all")
    refused = client.post("/api/v1/inference/models", json=_declaration(junk, "junk"))
    assert refused.status_code == 422 and "not a valid ONNX model" in refused.json()["detail"]
    good = _onnx(client, tmp_path, "seg.onnx", onnx_graphs.segmentation_model())
    wrong = client.post("/api/v1/inference/models", json=_declaration(good, "wrong", size=512))
    assert wrong.status_code == 422
    assert "tile size" in wrong.json()["detail"] and "512" in wrong.json()["detail"]
    taken = client.post("/api/v1/inference/models", json=_declaration(good, "nuclei-he"))
    assert taken.status_code == 422
    created = client.post("/api/v1/inference/models", json=_declaration(good, "red-nuclei"))
    assert created.status_code == 201, created.text
    model = created.json()
    assert model["kind"] == "onnx" and model["mpp"] == 0.5 and model["file_id"] == good
    again = client.post("/api/v1/inference/models", json=_declaration(good, "red-nuclei"))
    assert again.status_code == 409
    listed = {m["name"]: m for m in client.get("/api/v1/inference/models").json()}
    assert listed["red-nuclei"]["id"] == model["id"]
    other = signed_in(app_client, register(app_client))
    assert "red-nuclei" not in {m["name"] for m in other.get("/api/v1/inference/models").json()}
    assert (
        other.post(
            "/api/v1/inference", json={"slide_id": slide["id"], "model": model["id"]}
        ).status_code
        == 404
    )
    started = start_task(client, {"slide_id": slide["id"], "model": "red-nuclei"})
    assert started["model"] == {"kind": "onnx", "name": "red-nuclei", "id": model["id"]}
    done = wait_task(client, started["task_id"])
    assert done["status"] == "succeeded", done["error"]
    found = centroids(features(client, slide["id"], task_id=done["task_id"]))
    pages = [
        client.get(
            "/api/v1/inference/tasks", params={"slide_id": slide["id"], "limit": 1, "offset": i}
        ).json()
        for i in (0, 1)
    ]
    assert [p["total"] for p in pages] == [2, 2]  # the builtin's task, then this one
    newest_first = [done["task_id"], task["task_id"]]
    assert [p["items"][0]["task_id"] for p in pages] == newest_first
    truth = he[1]
    interior = (truth.centroids > 16).all(1) & (truth.centroids < [1008, 752]).all(1)
    keep = (found > 16).all(1) & (found < [1008, 752]).all(1)
    score = match(truth.centroids[interior], truth.radius[interior], found[keep])
    assert score.f1 >= 0.8, (score.precision, score.recall)
    assert other.delete(f"/api/v1/inference/models/{model['id']}").status_code == 404
    assert client.delete(f"/api/v1/inference/models/{model['id']}").status_code == 204
    assert "red-nuclei" not in {m["name"] for m in client.get("/api/v1/inference/models").json()}


def test_deleting_a_slide_deletes_its_tasks_artefacts(
    client: TestClient, he: tuple[Path, Truth]
) -> None:
    doomed = upload_slide(client, he[0], name="doomed.svs")
    region = {"bbox": {"x0": 0, "y0": 0, "x1": 300, "y1": 300}}
    with client.websocket_connect("/api/v1/ws/jobs") as websocket:  # tasks are jobs there too
        started = start_task(client, {"slide_id": doomed["id"], "region": region})
        statuses: list[str] = []
        while not statuses or statuses[-1] not in {"succeeded", "failed", "cancelled"}:
            event = websocket.receive_json()["event"]
            if event["job_id"] == started["task_id"] and event["kind"] == "status":
                statuses.append(event["status"])
    assert statuses[-1] == "succeeded" and "running" in statuses
    done = wait_task(client, started["task_id"])
    assert done["status"] == "succeeded", done["error"]
    files = list(done["artefacts"].values())
    assert all(client.get(f"/api/v1/files/{f}").status_code == 200 for f in files)
    assert client.delete(f"/api/v1/slides/{doomed['id']}").status_code == 204
    assert all(client.get(f"/api/v1/files/{f}").status_code == 404 for f in files)
    assert client.get(f"/api/v1/inference/tasks/{done['task_id']}").status_code == 404
    assert client.get(f"/api/v1/jobs/{done['task_id']}").status_code == 200  # history stays
    summary = json.dumps(done["summary"])
    assert "tiles" in summary
