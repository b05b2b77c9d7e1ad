"""External inference services end to end, over real HTTP: `aperture serve` in its own
process and a stand-in service (a threaded HTTP server on 127.0.0.1) that receives the
task, downloads the slide through the presigned URL and calls back with signed progress
and GeoJSON. Refused callbacks (unsigned, wrongly signed, stale, for an unknown task)
and replays change nothing; cancelling reaches the service; a silent service times out.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.app import PASSWORD, REPO, LiveServer, login, register
from tests.support.inference import start_task, upload_slide, wait_task
from tests.support.inference_service import StandInService, signed_header, square

pytestmark = pytest.mark.slow

SECRET = "a shared secret of the stand-in service"
TIMEOUT_S = 6  # APERTURE_INFERENCE_EXTERNAL_TIMEOUT_S of this module's server
PREDICTIONS = {
    "type": "FeatureCollection",
    "features": [
        square(100, 100, 10, "tumor", 0.9),
        square(300, 120, 12, "tumor", 0.7),
        square(200, 300, 8, "lymphocyte", 0.95),
        square(400, 400, 9, "lymphocyte", 0.2),  # under the task's threshold: dropped
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("external") / "data",
        env={"APERTURE_INFERENCE_EXTERNAL_TIMEOUT_S": str(TIMEOUT_S)},
    ).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def service() -> Iterator[StandInService]:
    standin = StandInService(SECRET, PREDICTIONS).start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture(scope="module")
def admin(server: LiveServer) -> Iterator[httpx.Client]:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.org"
    create = [sys.executable, "-m", "infra.cli", "users", "create", "--admin"]
    subprocess.run(
        [*create, "--email", email, "--password-stdin"],
        input=PASSWORD,
        text=True,
        check=True,
        cwd=REPO,
        env={**server.env, "APERTURE_DATA_DIR": str(server.data_dir)},
        capture_output=True,
    )
    with server.client() as client:
        client.headers.update(login(client, email))
        yield client


@pytest.fixture(scope="module")
def user(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        client.headers.update(register(client))
        yield client


@pytest.fixture(scope="module")
def registered(admin: httpx.Client, service: StandInService) -> dict[str, Any]:
    body = {
        "name": "standin",
        "base_url": service.url,
        "secret": SECRET,
        "mpp": 0.5,
        "output": {"kind": "segmentation", "classes": ["tumor", "lymphocyte"]},
        "params_schema": {
            "type": "object",
            "properties": {"sensitivity": {"type": "number", "minimum": 0, "default": 1}},
            "additionalProperties": False,
        },
    }
    response = admin.post("/api/v1/inference/services", json=body)
    assert response.status_code == 201, response.text
    assert SECRET not in response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def slide(user: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from functions.slides.synthetic import write_synthetic_slide

    path = write_synthetic_slide(
        tmp_path_factory.mktemp("slide") / "ext.svs", width=512, height=512, levels=2, seed=4
    )
    return upload_slide(user, path)


def _held(service: StandInService, user: httpx.Client, slide: dict[str, Any]) -> str:
    """A running task the stand-in holds (it calls back only when the test does)."""
    service.mode = "hold"
    task = start_task(user, {"slide_id": slide["id"], "model": "standin"})
    service.wait(lambda: task["task_id"] in service.tasks)
    deadline = time.monotonic() + 30
    # settled: the job has recorded handing the task over (and waits for callbacks)
    while (now := wait_task(user, task["task_id"], statuses={"running"}))["progress"] == 0:
        assert time.monotonic() < deadline, now
        time.sleep(0.05)
    assert now["message"] == "sent to standin"
    return str(task["task_id"])


def _state(user: httpx.Client, task_id: str) -> tuple[Any, ...]:
    task = user.get(f"/api/v1/inference/tasks/{task_id}").json()
    logs = user.get(f"/api/v1/jobs/{task_id}/logs").json()
    return task["status"], task["progress"], task["message"], len(logs)


def test_a_task_runs_through_the_service(
    user: httpx.Client,
    admin: httpx.Client,
    service: StandInService,
    registered: dict[str, Any],
    slide: dict[str, Any],
    server: LiveServer,
) -> None:
    listed = {m["name"]: m for m in user.get("/api/v1/inference/models").json()}
    assert listed["standin"]["kind"] == "external" and listed["standin"]["mpp"] == 0.5
    assert listed["standin"]["output"]["classes"] == ["tumor", "lymphocyte"]
    assert SECRET not in json.dumps(admin.get("/api/v1/inference/services").json())
    service.mode = "run"
    started = start_task(
        user,
        {"slide_id": slide["id"], "model": "standin", "params": {"sensitivity": 2}},
    )
    done = wait_task(user, started["task_id"], timeout=60)
    assert service.errors == [] and done["status"] == "succeeded", (service.errors, done)
    sent = service.tasks[done["task_id"]]
    assert sent["params"] == {"sensitivity": 2}
    assert sent["callback_url"] == f"{server.url}/api/v1/inference/webhook/callback"
    assert (sent["slide"]["width"], sent["slide"]["height"]) == (512, 512)
    assert sent["slide"]["mpp"] == pytest.approx(slide["mpp_x"])
    stored = user.get(f"/api/v1/files/{slide['file_id']}").json()
    assert hashlib.sha256(service.downloads[done["task_id"]]).hexdigest() == stored["sha256"]
    link = httpx.URL(sent["slide"]["download_url"])  # presigned and expiring
    expires = int(link.params["e"])
    assert 0 < expires - time.time() <= sent["slide"]["expires_in"] == 3600
    later = link.copy_set_param("e", str(expires + 3600))  # a longer life is not its to take
    assert httpx.get(str(later)).status_code in {401, 403}
    assert [r.status_code for r in service.callbacks] == [200, 200, 200]
    assert done["objects"] == 3 and done["summary"]["counts"] == {"lymphocyte": 1, "tumor": 2}
    assert done["model"] == {"kind": "external", "name": "standin", "id": registered["id"]}
    logs = user.get(f"/api/v1/jobs/{done['task_id']}/logs").json()
    assert any(e["message"] == "half the tiles" for e in logs)
    features = user.get(f"/api/v1/viewer/predictions/{slide['id']}").json()["features"]
    assert len(features) == 3
    props = {f["properties"]["classification"]["name"]: f["properties"] for f in features}
    assert props["lymphocyte"]["measurements"]["centroid_x"] == pytest.approx(200)
    assert props["lymphocyte"]["measurements"]["darkness"] == 95.0
    boxed = user.get(
        f"/api/v1/viewer/predictions/{slide['id']}", params={"bbox": "250,100,350,150"}
    ).json()["features"]
    assert [f["properties"]["confidence"] for f in boxed] == [0.7]
    bad = user.post(
        "/api/v1/inference",
        json={"slide_id": slide["id"], "model": "standin", "params": {"sensitivity": -1}},
    )
    assert bad.status_code == 422 and "sensitivity" in bad.json()["detail"]


def test_predictions_can_come_by_url(
    user: httpx.Client, service: StandInService, registered: dict[str, Any], slide: dict[str, Any]
) -> None:
    """A service with too many objects for a callback body names a URL; Aperture fetches it."""
    service.mode, service.by_url = "run", True
    try:
        started = start_task(user, {"slide_id": slide["id"], "model": "standin"})
        done = wait_task(user, started["task_id"], timeout=60)
    finally:
        service.by_url = False
    assert service.errors == [] and done["status"] == "succeeded", (service.errors, done)
    assert service.fetched == [done["task_id"]]
    assert done["summary"]["counts"] == {"lymphocyte": 1, "tumor": 2}  # 0.2 under threshold
    features = user.get(
        f"/api/v1/viewer/predictions/{slide['id']}", params={"task_id": done["task_id"]}
    ).json()["features"]
    assert sorted(f["properties"]["confidence"] for f in features) == [0.7, 0.9, 0.95]


def test_refused_callbacks_change_nothing(
    user: httpx.Client, service: StandInService, registered: dict[str, Any], slide: dict[str, Any]
) -> None:
    task_id = _held(service, user, slide)
    progress = {"status": "progress", "progress": 0.25, "message": "a quarter"}
    before = _state(user, task_id)
    refusals = [
        service.callback(task_id, progress, header=None),  # unsigned
        service.callback(task_id, progress, secret="not the shared secret at all"),
        service.callback(task_id, progress, header="t=abc,v1=00"),
        service.callback(task_id, progress, timestamp=int(time.time()) - 600),  # stale
        service.callback(task_id, progress, timestamp=int(time.time()) + 600),
    ]
    service.callback_url = service.tasks[task_id]["callback_url"]
    refusals.append(service.callback(str(uuid.uuid4()), progress))  # unknown task
    for response in refusals:
        assert response.status_code == 401, response.text
        assert response.json()["type"].endswith("bad-webhook-signature")
    time.sleep(1)  # the task's job polls callbacks; give it the chance to act on any
    assert _state(user, task_id) == before
    body = json.dumps({"task_id": task_id, "event_id": "e-1", **progress}).encode()
    headers = {"X-Aperture-Signature": signed_header(SECRET, body)}
    url = service.callback_url
    first = httpx.post(url, content=body, headers=headers)
    assert first.status_code == 200 and first.json()["duplicate"] is False
    wait_task(user, task_id, statuses={"running"})
    deadline = time.monotonic() + 10
    while _state(user, task_id)[1] == before[1]:
        assert time.monotonic() < deadline, "progress never arrived"
        time.sleep(0.1)
    seen = _state(user, task_id)
    replay = httpx.post(url, content=body, headers=headers)
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    invalid = service.callback(task_id, {"status": "exploded"})
    assert invalid.status_code == 422  # signed, so its content is judged
    time.sleep(1)
    assert _state(user, task_id) == seen
    failed = service.callback(task_id, {"status": "failed", "message": "out of GPU memory"})
    assert failed.status_code == 200
    done = wait_task(user, task_id)
    assert done["status"] == "failed" and "out of GPU memory" in done["error"]["message"]
    late = service.callback(task_id, {"status": "progress", "progress": 0.9})
    assert late.status_code == 409


def test_cancelling_reaches_the_service(
    user: httpx.Client, service: StandInService, registered: dict[str, Any], slide: dict[str, Any]
) -> None:
    task_id = _held(service, user, slide)
    cancelled = user.delete(f"/api/v1/inference/tasks/{task_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] in {
        "cancelling",
        "cancelled",
    }
    service.wait(lambda: task_id in service.cancelled)
    assert wait_task(user, task_id)["status"] == "cancelled"
    assert service.refused == []


def test_a_silent_service_times_the_task_out(
    user: httpx.Client, service: StandInService, registered: dict[str, Any], slide: dict[str, Any]
) -> None:
    task_id = _held(service, user, slide)
    done = wait_task(user, task_id, timeout=TIMEOUT_S + 20)
    assert done["status"] == "failed" and "timed out" in done["error"]["message"]
    assert task_id in service.cancelled  # told to stop


def test_services_are_for_admins_and_not_deleted_under_running_tasks(
    user: httpx.Client,
    admin: httpx.Client,
    service: StandInService,
    registered: dict[str, Any],
    slide: dict[str, Any],
) -> None:
    body = {"name": "x", "base_url": "http://127.0.0.1:9", "secret": "s" * 20}
    refused = user.post("/api/v1/inference/services", json=body | {"output": {"classes": ["a"]}})
    assert refused.status_code == 403
    bad_url = admin.post(
        "/api/v1/inference/services",
        json=body | {"base_url": "ftp://example.org", "output": {"classes": ["a"]}},
    )
    assert bad_url.status_code == 422
    short = admin.post(
        "/api/v1/inference/services",
        json=body | {"secret": "short", "output": {"classes": ["a"]}},
    )
    assert short.status_code == 422
    task_id = _held(service, user, slide)
    busy = admin.delete(f"/api/v1/inference/services/{registered['id']}")
    assert busy.status_code == 409
    user.delete(f"/api/v1/inference/tasks/{task_id}")
    assert wait_task(user, task_id)["status"] == "cancelled"
