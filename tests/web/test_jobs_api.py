"""Jobs over HTTP: submit, list with filters, stats, read, relabel, cancel, logs."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from tests.support.app import register, signed_in, wait_for_job


def _submit(
    client: TestClient, function: str = "noop", params: dict | None = None, **extra: object
) -> dict:
    response = client.post(
        "/api/v1/jobs", json={"function": function, "params": params or {}, **extra}
    )
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/api/v1/jobs/{response.json()['id']}"
    return response.json()


def test_submit_returns_the_job_and_it_succeeds(client: TestClient) -> None:
    job = _submit(client, params={"sleep_s": 0.05}, name="first", tags=["t-submit"])
    assert job["status"] in {"queued", "running"} and uuid.UUID(job["id"])
    assert job["params"] == {"sleep_s": 0.05} and job["name"] == "first"
    done = wait_for_job(client, job["id"])
    assert done["status"] == "succeeded" and done["result"]["slept_s"] >= 0.05
    assert done["started_at"] and done["finished_at"] and done["attempts"] == 1


def test_params_get_their_defaults(client: TestClient) -> None:
    job = _submit(client, tags=["t-defaults"])
    assert job["params"] == {"sleep_s": 0.0}


def test_list_filters_and_paginates(client: TestClient) -> None:
    tag = f"t-{uuid.uuid4().hex[:8]}"
    ids = [_submit(client, tags=[tag, "t-list"])["id"] for _ in range(3)]
    failing = _submit(client, "test.fail", tags=[tag])["id"]
    for job_id in [*ids, failing]:
        wait_for_job(client, job_id)
    page = client.get("/api/v1/jobs", params={"tag": tag, "limit": 2}).json()
    assert page["total"] == 4 and len(page["items"]) == 2 and page["limit"] == 2
    rest = client.get("/api/v1/jobs", params={"tag": tag, "limit": 2, "offset": 2}).json()
    assert {j["id"] for j in page["items"] + rest["items"]} == {*ids, failing}
    failed = client.get("/api/v1/jobs", params={"tag": tag, "status": "failed"}).json()
    assert [j["id"] for j in failed["items"]] == [failing]
    by_function = client.get("/api/v1/jobs", params={"tag": tag, "function": "noop"}).json()
    assert by_function["total"] == 3
    future = client.get(
        "/api/v1/jobs", params={"tag": tag, "created_after": "2999-01-01T00:00:00Z"}
    )
    assert future.json()["total"] == 0


def test_stats_count_by_status_and_function(client: TestClient) -> None:
    tag = f"t-{uuid.uuid4().hex[:8]}"
    for function in ("noop", "noop", "test.fail"):
        wait_for_job(client, _submit(client, function, tags=[tag])["id"])
    stats = client.get("/api/v1/jobs/stats", params={"tag": tag}).json()
    assert stats["total"] == 3
    assert stats["by_status"]["succeeded"] == 2 and stats["by_status"]["failed"] == 1
    assert stats["by_function"] == {"noop": {"succeeded": 2}, "test.fail": {"failed": 1}}
    assert 0 <= stats["duration_p50_s"] <= stats["duration_p95_s"] < 30


def test_patch_changes_name_and_tags_only(client: TestClient) -> None:
    job = _submit(client, tags=["t-patch"])
    patched = client.patch(f"/api/v1/jobs/{job['id']}", json={"name": "renamed"}).json()
    assert patched["name"] == "renamed" and patched["tags"] == ["t-patch"]
    retagged = client.patch(f"/api/v1/jobs/{job['id']}", json={"tags": ["x", "x", "y"]})
    assert retagged.json()["tags"] == ["x", "y"] and retagged.json()["name"] == "renamed"
    refused = client.patch(f"/api/v1/jobs/{job['id']}", json={"status": "succeeded"})
    assert refused.status_code == 422


def test_cancel_with_post_and_delete(client: TestClient) -> None:
    for method in ("POST", "DELETE"):
        job = _submit(client, params={"sleep_s": 30}, tags=["t-cancel"])
        wait_for_job(client, job["id"], statuses={"running"})
        response = client.request(method, f"/api/v1/jobs/{job['id']}/cancel")
        assert response.status_code == 200
        assert response.json()["status"] in {"cancelling", "cancelled"}
        assert wait_for_job(client, job["id"])["status"] == "cancelled"


def test_logs_list_every_event_in_order(client: TestClient) -> None:
    job = _submit(client, "test.bug", tags=["t-logs"])
    wait_for_job(client, job["id"])
    events = client.get(f"/api/v1/jobs/{job['id']}/logs").json()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["message"] == "submitted" and events[-1]["status"] == "failed"
    assert any(e["kind"] == "log" and "ZeroDivisionError" in e["message"] for e in events)
    after = client.get(f"/api/v1/jobs/{job['id']}/logs", params={"after": 2}).json()
    assert [e["seq"] for e in after] == [e["seq"] for e in events[2:]]


def test_checksum_of_an_uploaded_file(client: TestClient) -> None:
    data = b"".join(b"%d,%d\n" % (i, i * i) for i in range(120_000))
    stored = client.post("/api/v1/files", files={"file": ("data.csv", data)}).json()
    job = _submit(client, "checksum", {"file_id": stored["id"]}, tags=["t-checksum"])
    done = wait_for_job(client, job["id"])
    import hashlib

    assert done["status"] == "succeeded", done
    assert done["result"] == {
        "file_id": stored["id"],
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    progress = [
        e for e in client.get(f"/api/v1/jobs/{job['id']}/logs").json() if e["kind"] == "progress"
    ]
    assert progress and progress[-1]["progress"] == 1.0


def test_a_missing_or_foreign_file_is_404_at_submit(
    client: TestClient, app_client: TestClient
) -> None:
    """`checksum` names a stored file: one that is not there, or not the caller's, is
    refused before a job exists (not failed after two attempts)."""
    other = signed_in(app_client, register(app_client))
    theirs = other.post("/api/v1/files", files={"file": ("a.txt", b"theirs")}).json()["id"]
    before = client.get("/api/v1/jobs", params={"function": "checksum"}).json()["total"]
    for file_id in (str(uuid.uuid4()), theirs):
        body = {"function": "checksum", "params": {"file_id": file_id}}
        refused = client.post("/api/v1/jobs", json=body)
        assert refused.status_code == 404, refused.text
        assert f"no file with id {file_id}" in refused.json()["detail"]
    after = client.get("/api/v1/jobs", params={"function": "checksum"}).json()["total"]
    assert after == before
    mine = client.post("/api/v1/files", files={"file": ("b.txt", b"mine")}).json()["id"]
    job = _submit(client, "checksum", {"file_id": mine})
    assert wait_for_job(client, job["id"])["status"] == "succeeded"
