"""The OpenAPI document tells the truth: problem+json errors, security schemes that make
/docs' Authorize button work for writes, real media types, and the constraints the
server enforces."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from common.identity.passwords import MIN_LENGTH
from tests.support.app import PASSWORD, register

API = "/api/v1"


@pytest.fixture(scope="module")
def spec(app_client: TestClient) -> dict[str, Any]:
    response = app_client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


def test_docs_has_an_authorize_button_for_tokens_keys_and_cookies(
    app_client: TestClient, spec: dict[str, Any]
) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] | {"in": "header", "name": "X-API-Key"} == schemes["apiKey"]
    assert schemes["cookie"] | {"in": "cookie", "name": "aperture_access"} == schemes["cookie"]
    docs = app_client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert '"persistAuthorization": true' in docs.text


def test_protected_operations_declare_security_and_public_ones_do_not(
    spec: dict[str, Any],
) -> None:
    paths = spec["paths"]
    assert paths[f"{API}/jobs"]["post"]["security"] == [
        {"bearer": []},
        {"apiKey": []},
        {"cookie": []},
    ]
    assert "security" in paths[f"{API}/auth/me"]["get"]
    for public in (f"{API}/health", f"{API}/auth/login", f"{API}/auth/register"):
        assert all("security" not in op for op in paths[public].values()), public


def test_a_write_the_way_docs_sends_it_needs_no_csrf_token(app_client: TestClient) -> None:
    """Swagger UI sends the browser's cookies (set by logging in through /docs) and the
    Authorization header it was given: the header decides, so no X-CSRF-Token is needed.
    Cookies alone still need it."""
    email = "docs-user@example.org"
    assert app_client.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    # Secure cookies travel over HTTPS only.
    docs = TestClient(app_client.app, base_url="https://testserver", raise_server_exceptions=False)
    docs.portal = app_client.portal  # type: ignore[attr-defined]
    login = docs.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200 and docs.cookies.get("aperture_access")
    bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}

    cookie_only = docs.post(f"{API}/datasets", json={"name": "via cookie"})
    assert cookie_only.status_code == 403 and "X-CSRF-Token" in cookie_only.json()["detail"]

    with_bearer = docs.post(f"{API}/datasets", json={"name": "via docs"}, headers=bearer)
    assert with_bearer.status_code == 201, with_bearer.text
    key = docs.post(f"{API}/auth/api-keys", json={"name": "docs"}, headers=bearer).json()["key"]
    with_key = docs.post(f"{API}/datasets", json={"name": "via key"}, headers={"X-API-Key": key})
    assert with_key.status_code == 201, with_key.text


def test_every_error_is_problem_json_and_the_422_is_what_we_send(
    client: TestClient, spec: dict[str, Any]
) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    for path, _, operation in _operations(spec):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and status != "503":
                assert list(response["content"]) == ["application/problem+json"], (path, status)
    sent = client.get(f"{API}/jobs", params={"limit": 0}).json()
    assert set(problem["required"]) <= set(sent) and sent["errors"][0]["loc"] == [
        "query",
        "limit",
    ]


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("get", "/jobs/{job_id}", {"401", "404", "422"}),
        ("post", "/jobs", {"400", "401", "403", "404", "415", "422"}),
        ("post", "/files", {"400", "401", "413", "415", "507"}),
        ("post", "/auth/login", {"400", "401", "415", "422", "429"}),
        ("get", "/users", {"401", "403"}),
        ("post", "/analysis/fitting/start", {"403", "404", "415", "422"}),
        ("get", "/analysis/fitting/status/{job_id}", {"404", "422"}),
        ("post", "/users/{user_id}/deactivate", {"403", "404", "409"}),
        ("get", "/files/{file_id}/download", {"404", "416"}),
    ],
)
def test_errors_are_declared_where_they_happen(
    spec: dict[str, Any], method: str, path: str, statuses: set[str]
) -> None:
    assert statuses <= set(spec["paths"][API + path][method]["responses"])


@pytest.mark.parametrize(
    ("method", "path", "status", "media_types"),
    [
        ("get", "/files/{file_id}/download", "200", {"application/octet-stream", "*/*"}),
        ("get", "/files/{file_id}/download", "206", {"application/octet-stream", "*/*"}),
        ("get", "/jobs/{job_id}/events", "200", {"text/event-stream"}),
        ("get", "/viewer/{slide_id}.dzi", "200", {"application/xml", "application/json"}),
        (
            "get",
            "/viewer/{slide_id}_files/{level}/{col}_{row}.{fmt}",
            "200",
            {"image/jpeg", "image/png"},
        ),
        ("get", "/slides/{slide_id}/thumbnail", "200", {"image/jpeg"}),
    ],
)
def test_what_is_not_json_says_so(
    spec: dict[str, Any], method: str, path: str, status: str, media_types: set[str]
) -> None:
    content = spec["paths"][API + path][method]["responses"][status]["content"]
    assert set(content) == media_types


def _schema(spec: dict[str, Any], path: str, method: str = "post") -> dict[str, Any]:
    body = spec["paths"][API + path][method]["requestBody"]["content"]["application/json"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    return dict(spec["components"]["schemas"][ref])


def test_enforced_constraints_are_in_the_schema(spec: dict[str, Any]) -> None:
    register_body = _schema(spec, "/auth/register")
    assert register_body["properties"]["password"]["minLength"] == MIN_LENGTH
    assert "pattern" in register_body["properties"]["email"]
    source = _schema(spec, "/analysis/load-traces")
    assert source["oneOf"] == [{"required": ["file_id"]}, {"required": ["file_path"]}]
    assert source["properties"]["file_id"] == {
        "format": "uuid",
        "title": "File Id",
        "type": "string",
    }
    job = _schema(spec, "/jobs")
    tag = job["properties"]["tags"]
    assert tag["maxItems"] == 32 and tag["items"]["maxLength"] == 64 and tag["items"]["pattern"]
    me = _schema(spec, "/users/me", "patch")
    assert me["dependentRequired"] == {"password": ["current_password"]}


def test_exactly_one_source_is_enforced_as_declared(client: TestClient) -> None:
    url = f"{API}/analysis/load-traces"
    for body in ({}, {"file_id": "8c4b8ee3-9b52-4b1b-9f3e-2b0f54f9b0a1", "file_path": "/x"}):
        response = client.post(url, json=body)
        assert response.status_code == 422 and "exactly one" in response.json()["detail"]


def test_register_answers_as_declared(app_client: TestClient) -> None:
    """The declared minimum length is the policy's: one shorter is refused by the schema."""
    short = app_client.post(
        f"{API}/auth/register", json={"email": "short@example.org", "password": "a1b2c3"}
    )
    assert short.status_code == 422 and "password" in short.json()["detail"]
    assert register(app_client)  # a policy-conforming one passes


def test_the_domain_error_table_names_real_operations(spec: dict[str, Any]) -> None:
    """A route renamed without its entry would lose its declared errors silently."""
    from web.openapi import DOMAIN_ERRORS

    operations = {f"{method.upper()} {path}" for path, method, _ in _operations(spec)}
    assert set(DOMAIN_ERRORS) <= operations, set(DOMAIN_ERRORS) - operations


def test_no_parameter_is_declared_nullable(spec: dict[str, Any]) -> None:
    """A query or header value cannot be null (left out is how it is absent): declared
    nullable, a client sends `Last-Event-ID: null` and gets a 422 for a valid request."""
    nullable = [
        (path, method, p["name"])
        for path, method, operation in _operations(spec)
        for p in operation.get("parameters", [])
        if "anyOf" in p["schema"] or p["schema"].get("default", 0) is None
    ]
    assert nullable == []
    events = spec["paths"][API + "/jobs/{job_id}/events"]["get"]["parameters"]
    last_event_id = next(p for p in events if p["name"] == "last-event-id")
    assert last_event_id["schema"]["type"] == "integer" and not last_event_id["required"]


def test_server_paths_are_declared_absolute(spec: dict[str, Any]) -> None:
    """The server refuses a relative path ("the path must be absolute"): the schema says
    so, or a schema-valid `"path": "0"` is answered 422."""
    import re

    for path, field in [("/files/import", "path"), ("/analysis/load-traces", "file_path")]:
        pattern = _schema(spec, path)["properties"][field]["pattern"]
        assert re.search(pattern, "/data/plate 1.tif") and not re.search(pattern, "0"), path
