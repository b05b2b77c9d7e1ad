"""Health readiness and the capability registry as the API publishes it."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_health_reports_every_dependency(client: TestClient) -> None:
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "objects", "executor", "capabilities"}
    assert body["checks"]["database"]["detail"]["dialect"] == "sqlite"
    assert body["checks"]["objects"]["detail"]["kind"] == "dir"
    assert body["checks"]["executor"]["detail"]["workers"] == 3  # two and the warm spare


def test_functions_list_schemas_and_resources(client: TestClient) -> None:
    functions = {f["name"]: f for f in client.get("/api/v1/functions").json()}
    checksum = functions["checksum"]
    assert checksum["params_schema"]["required"] == ["file_id"]
    assert checksum["params_schema"]["properties"]["file_id"]["format"] == "uuid"
    assert checksum["resources"]["retries"] == 1 and checksum["resources"]["gpu"] is None
    assert "SHA-256" in checksum["description"]
    assert functions["noop"]["params_schema"]["properties"]["sleep_s"]["maximum"] == 60
    one = client.get("/api/v1/functions/noop").json()
    assert one == functions["noop"]
    assert client.get("/api/v1/functions/nope").status_code == 404


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/api/v1/jobs" in schema["paths"] and "/api/v1/files" in schema["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "cdn." not in docs.text  # the UI's assets come from this server
    scripts = re.findall(r'src="([^"]+\.js)"', docs.text)
    assert scripts and all(client.get(src).status_code == 200 for src in scripts)
