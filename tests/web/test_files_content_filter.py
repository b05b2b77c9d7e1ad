"""GET /files?sha256=&size=: find a file by its content (clients skip re-uploading)."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient


def _upload(client: TestClient, name: str, data: bytes) -> dict:  # type: ignore[type-arg]
    response = client.post("/api/v1/files", files={"file": (name, data, "text/csv")})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_files_are_found_by_sha256_and_size(client: TestClient) -> None:
    a = _upload(client, "a.csv", b"x,y\n1,2\n")
    _upload(client, "b.csv", b"x,y\n3,4\n")
    digest = hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    found = client.get("/api/v1/files", params={"sha256": digest.upper(), "size": 8}).json()
    assert [f["id"] for f in found["items"]] == [a["id"]] and found["total"] == 1
    assert client.get("/api/v1/files", params={"size": 8}).json()["total"] == 2
    assert client.get("/api/v1/files", params={"sha256": digest, "size": 9}).json()["total"] == 0
    bad = client.get("/api/v1/files", params={"sha256": "abc"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"


def test_another_users_file_is_not_found_by_its_hash(
    client: TestClient, app_client: TestClient
) -> None:
    from tests.support.app import register, signed_in

    mine = _upload(client, "mine.csv", b"p,q\n5,6\n")
    other = signed_in(app_client, register(app_client))
    found = other.get("/api/v1/files", params={"sha256": mine["sha256"]}).json()
    assert found["total"] == 0
