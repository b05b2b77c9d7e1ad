"""Live job updates: Server-Sent Events (resumable) and the WebSocket stream."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.support.app import wait_for_job


def _sse(text: str) -> list[dict]:
    events, current = [], {}
    for line in text.splitlines():
        if not line:
            if current:
                events.append(current)
            current = {}
        elif ":" in line and not line.startswith(":"):
            field, _, value = line.partition(":")
            current[field] = value.strip()
    if current:
        events.append(current)
    return events


def test_sse_streams_until_the_final_status_and_resumes(client: TestClient) -> None:
    job = client.post("/api/v1/jobs", json={"function": "noop", "params": {"sleep_s": 0.3}}).json()
    response = client.get(f"/api/v1/jobs/{job['id']}/events")
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _sse(response.text)
    seqs = [int(e["id"]) for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    last = json.loads(events[-1]["data"])
    assert events[-1]["event"] == "status" and last["status"] == "succeeded"
    resumed = _sse(
        client.get(f"/api/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "2"}).text
    )
    assert [int(e["id"]) for e in resumed] == seqs[2:]
    bad = client.get(f"/api/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 422


def test_websocket_pushes_job_events(client: TestClient) -> None:
    with client.websocket_connect("/api/v1/ws/jobs") as websocket:
        job = client.post("/api/v1/jobs", json={"function": "noop"}).json()
        statuses = []
        while not statuses or statuses[-1] not in {"succeeded", "failed"}:
            message = websocket.receive_json()
            assert message["type"] == "job.event"
            if message["event"]["job_id"] == job["id"] and message["event"]["kind"] == "status":
                statuses.append(message["event"]["status"])
    assert statuses[0] == "queued" and statuses[-1] == "succeeded" and "running" in statuses


def test_websocket_can_follow_one_job(client: TestClient) -> None:
    other = client.post("/api/v1/jobs", json={"function": "noop"}).json()
    job = client.post("/api/v1/jobs", json={"function": "noop", "params": {"sleep_s": 0.2}})
    job_id = job.json()["id"]
    with client.websocket_connect(f"/api/v1/ws/jobs?job_id={job_id}") as websocket:
        while True:
            event = websocket.receive_json()["event"]
            assert event["job_id"] == job_id != other["id"]
            if event["status"] == "succeeded":
                break
    wait_for_job(client, other["id"])
