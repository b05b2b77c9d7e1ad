"""Bad input gets a 4xx RFC 9457 problem with a stable type, never a 500; every response
carries a request id and the security headers."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from tests.support.app import wait_for_job

PROBLEM = "urn:aperture:problem:"


def _problem(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == PROBLEM + code and body["status"] == status
    assert body["detail"] and body["request_id"] == response.headers["x-request-id"]
    return body


def test_malformed_json(client: TestClient) -> None:
    response = client.post(
        "/api/v1/jobs",
        content=b'{"function": "noop",',
        headers={"content-type": "application/json"},
    )
    _problem(response, 400, "malformed-json")


def test_unknown_function(client: TestClient) -> None:
    body = _problem(client.post("/api/v1/jobs", json={"function": "nope"}), 404, "unknown-function")
    assert "nope" in body["detail"]


@pytest.mark.parametrize("params", [{"sleep_s": "long"}, {"sleep_s": -1}, {"unknown": 1}])
def test_params_failing_the_schema(client: TestClient, params: dict) -> None:
    body = _problem(
        client.post("/api/v1/jobs", json={"function": "noop", "params": params}),
        422,
        "invalid-input",
    )
    assert "noop" in body["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"function": "noop", "surprise": True},
        {"params": {}},
        {"function": "noop", "params": []},
        {"function": "noop", "tags": ["\x00"]},
        [],
    ],
)
def test_request_bodies_failing_validation(client: TestClient, body: object) -> None:
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 422 and response.json()["type"].startswith(PROBLEM)


def test_unknown_and_malformed_job_ids(client: TestClient) -> None:
    _problem(client.get(f"/api/v1/jobs/{uuid.uuid4()}"), 404, "not-found")
    _problem(client.post(f"/api/v1/jobs/{uuid.uuid4()}/cancel"), 404, "not-found")
    _problem(client.get("/api/v1/jobs/not-a-uuid"), 422, "validation")
    _problem(client.get("/api/v1/no-such-route"), 404, "not-found")


def test_cancelling_a_finished_job_is_an_illegal_transition(client: TestClient) -> None:
    job = client.post("/api/v1/jobs", json={"function": "noop"}).json()
    wait_for_job(client, job["id"])
    body = _problem(client.post(f"/api/v1/jobs/{job['id']}/cancel"), 409, "illegal-transition")
    assert "succeeded" in body["detail"]


def test_bad_query_parameters(client: TestClient) -> None:
    _problem(client.get("/api/v1/jobs", params={"status": "sleeping"}), 422, "validation")
    _problem(client.get("/api/v1/jobs", params={"limit": 0}), 422, "validation")
    _problem(client.get("/api/v1/jobs", params={"created_after": "yesterday"}), 422, "validation")


def test_request_id_is_echoed_when_safe_and_made_up_otherwise(client: TestClient) -> None:
    given = client.get("/api/v1/health", headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    unsafe = client.get("/api/v1/health", headers={"x-request-id": "a b\tc"})
    assert unsafe.headers["x-request-id"] != "a b\tc" and len(unsafe.headers["x-request-id"]) == 32


def test_security_headers(client: TestClient) -> None:
    headers = client.get("/api/v1/health").headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
