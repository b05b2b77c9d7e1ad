"""Inputs that used to end in a 500 (or in a misleading answer) get a 4xx problem that
says what is wrong: broken multipart bodies, huge offsets, off-calendar dates, bare
numbers for dates, NUL/control/bidi characters in text, a body in the wrong media type,
malformed JSON; 405 names every method; a disconnecting client is not an error."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.app import make_admin, register, signed_in

API = "/api/v1"
PROBLEM = "urn:aperture:problem:"
BOUNDARY = "robustness-boundary"
MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def _problem(response: Any, status: int, code: str, says: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + code, body
    assert says in body["detail"], body["detail"]
    return body


def _part(name: str, value: str, filename: str | None = None) -> str:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n"


def _file_count(client: TestClient) -> int:
    return int(client.get(f"{API}/files").json()["total"])


# -- multipart --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (_part("file", "hi", filename="a" * 10_000 + ".txt") + f"--{BOUNDARY}--\r\n", "header"),
        (
            f"--{BOUNDARY}\r\nContent-Disposition form-data\r\n\r\nhi\r\n--{BOUNDARY}--\r\n",
            "malformed",
        ),
        (
            _part("file", "hello", filename="a.txt")
            + _part("name", "late")
            + f"--{BOUNDARY}--\r\n",
            "form field 'name' comes after the file part",
        ),
    ],
    ids=["file-name-over-header-limit", "broken-part-header", "field-after-file"],
)
def test_broken_multipart_bodies_are_400_and_store_nothing(
    client: TestClient, body: str, says: str
) -> None:
    before = _file_count(client)
    response = client.post(f"{API}/files", content=body.encode(), headers=MULTIPART)
    _problem(response, 400, "malformed-request", says)
    assert _file_count(client) == before


def test_an_upload_that_is_not_multipart_is_415(client: TestClient) -> None:
    response = client.post(f"{API}/files", content=b"x", headers={"content-type": "text/plain"})
    _problem(response, 415, "unsupported-media-type", "multipart/form-data")


def test_fields_before_the_file_still_work(client: TestClient) -> None:
    body = _part("note", "early") + _part("file", "hello", filename="a.txt") + f"--{BOUNDARY}--\r\n"
    response = client.post(f"{API}/files", content=body.encode(), headers=MULTIPART)
    assert response.status_code == 201, response.text
    assert response.json()["size"] == 5


def test_a_client_that_disconnects_mid_upload_is_logged_quietly(
    app_client: TestClient, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The ASGI app gets half a body, then `http.disconnect`: no traceback, no error log,
    no file."""
    before = _file_count(client)
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\n\r\n'
    messages = [
        {"type": "http.request", "body": head.encode() + b"a" * 4096, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    token = client.headers["authorization"]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"{API}/files",
        "raw_path": f"{API}/files".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", token.encode()),
            (b"content-type", MULTIPART["content-type"].encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "state": {},
    }
    with caplog.at_level(logging.INFO):
        app_client.portal.call(app_client.app, scope, receive, send)  # type: ignore[attr-defined]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]
    assert any(getattr(r, "problem", None) == "client-disconnected" for r in caplog.records)
    assert _file_count(client) == before


# -- JSON bodies --------------------------------------------------------------------------


def test_malformed_json_says_where(client: TestClient) -> None:
    response = client.post(
        f"{API}/jobs",
        content=b'{\n  "function": "noop",\n  oops\n}',
        headers={"content-type": "application/json"},
    )
    _problem(response, 400, "malformed-json", "at line 3, column 3")


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_json_body_in_another_media_type_says_which_is_wanted(
    client: TestClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(f"{API}/jobs", content=b'{"function": "noop"}', headers=headers)
    body = _problem(response, 415, "unsupported-media-type", "Content-Type: application/json")
    assert "valid dictionary" not in body["detail"]


# -- methods ----------------------------------------------------------------------------


def test_405_allows_every_method_of_the_path(client: TestClient) -> None:
    response = client.options(f"{API}/datasets/{uuid.uuid4()}")
    _problem(response, 405, "method-not-allowed", "OPTIONS is not allowed")
    assert response.headers["allow"] == "DELETE, GET, PATCH"
    assert client.put(f"{API}/jobs").headers["allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("patch", "/datasets/stats", "GET"),
        ("delete", "/jobs/stats", "GET"),
        ("patch", "/files/usage", "GET"),
        ("options", "/datasets/stats", "GET"),
        ("delete", "/users/me", "GET, PATCH"),
    ],
)
def test_a_literal_path_is_its_own_resource(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    """`/datasets/stats` also matches `/datasets/{dataset_id}`: a method only the latter
    serves is 405 for the stats, not a 422 about an id that is not a UUID."""
    response = client.request(method.upper(), API + path)
    _problem(response, 405, "method-not-allowed", "not allowed")
    assert response.headers["allow"] == allow


# -- pagination and counts ---------------------------------------------------------------

PAGINATED = [
    "/files",
    "/jobs",
    "/events",
    "/slides",
    "/datasets",
    "/datasets/stats",
    "/inference/tasks",
]


@pytest.mark.parametrize("path", PAGINATED)
@pytest.mark.parametrize("offset", [2**63, 2**31 * 10, -1])
def test_offsets_out_of_range_are_422(client: TestClient, path: str, offset: int) -> None:
    response = client.get(API + path, params={"offset": offset})
    _problem(response, 422, "validation", "offset")


def test_every_paginated_list_declares_its_bounds(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    paginated = {
        (path, method)
        for path, item in paths.items()
        for method, operation in item.items()
        if any(p["name"] == "offset" for p in operation.get("parameters", []))
    }
    assert {(API + p, "get") for p in PAGINATED} <= paginated
    assert (API + "/datasets/{dataset_id}/files", "get") in paginated
    for path, method in paginated:
        params = {p["name"]: p["schema"] for p in paths[path][method]["parameters"]}
        assert params["offset"]["maximum"] <= 2**53 - 1, path
        assert params["limit"]["maximum"] <= 10_000, path


def test_a_dataset_page_far_away_is_empty_not_an_error(client: TestClient) -> None:
    dataset = client.post(f"{API}/datasets", json={"name": "far"}).json()
    far = client.get(f"{API}/datasets/{dataset['id']}/files", params={"offset": 10**9})
    assert far.status_code == 200 and far.json()["items"] == []
    _problem(
        client.get(f"{API}/datasets/{dataset['id']}/files", params={"offset": 2**63}),
        422,
        "validation",
    )


def test_huge_sizes_and_event_ids_are_422(client: TestClient) -> None:
    _problem(client.get(f"{API}/files", params={"size": 2**63}), 422, "validation", "size")
    job = client.post(f"{API}/jobs", json={"function": "noop"}).json()
    logs = client.get(f"{API}/jobs/{job['id']}/logs", params={"after": 2**31})
    _problem(logs, 422, "validation", "after")


# -- dates ------------------------------------------------------------------------------

DATE_FILTERS = [
    ("/jobs", "created_after"),
    ("/jobs/stats", "created_before"),
    ("/files", "created_after"),
    ("/slides", "created_before"),
    ("/events", "since"),
    ("/events", "until"),
]


@pytest.mark.parametrize(("path", "name"), DATE_FILTERS)
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0001-01-01T00:00:00+14:00", "out of range"),
        ("9999-12-31T23:59:59-14:00", "out of range"),
        ("0.5", "not a number"),
        ("1700000000", "not a number"),
    ],
)
def test_date_filters_refuse_numbers_and_off_calendar_offsets(
    client: TestClient, path: str, name: str, value: str, says: str
) -> None:
    _problem(client.get(API + path, params={name: value}), 422, "validation", says)


def test_date_filters_accept_dates_at_the_calendar_edges(client: TestClient) -> None:
    edges = {"created_after": "0001-01-01T00:00:00Z", "created_before": "9999-12-31T23:59:59Z"}
    assert client.get(f"{API}/jobs", params=edges).status_code == 200
    local = client.get(f"{API}/jobs", params={"created_after": "2024-05-01"})  # no offset: UTC
    assert local.status_code == 200


def test_api_key_expiry_is_checked_the_same_way(client: TestClient) -> None:
    url = f"{API}/auth/api-keys"
    edge = client.post(url, json={"name": "k", "expires_at": "9999-12-31T23:59:59-14:00"})
    _problem(edge, 422, "validation", "out of range")
    _problem(client.post(url, json={"name": "k", "expires_at": 1e12}), 422, "validation", "number")
    far = client.post(url, json={"name": "k", "expires_at": "9999-12-31T00:00:00+01:00"})
    assert far.status_code == 201, far.text


# -- text -------------------------------------------------------------------------------

BAD_TEXT = {"nul": "a\x00b", "escape": "a\x1b[31mb", "bidi": "admin\u202egro.elpmaxe"}


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_names_refuse_nul_escape_and_bidi_overrides(client: TestClient, bad: str) -> None:
    cases = [
        ("post", "/auth/register", {"email": f"x{bad}@example.org", "password": "p" * 6 + "qrst"}),
        ("post", "/auth/login", {"email": f"x{bad}@example.org", "password": "whatever"}),
        ("patch", "/users/me", {"display_name": bad}),
        ("post", "/auth/api-keys", {"name": bad}),
        ("post", "/datasets", {"name": bad}),
        ("post", "/jobs", {"function": "noop", "name": bad}),
        ("post", "/jobs", {"function": "noop", "tags": [bad]}),
    ]
    for method, path, body in cases:
        response = getattr(client, method)(API + path, json=body)
        _problem(response, 422, "validation", "found U+")


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_filters_refuse_nul_escape_and_bidi_overrides(client: TestClient, bad: str) -> None:
    for path, name in [
        ("/jobs", "tag"),
        ("/jobs/stats", "function"),
        ("/datasets", "tag"),
        ("/datasets/stats", "name"),
        ("/files", "kind"),
        ("/slides", "vendor"),
        ("/events", "action"),
        ("/inference/tasks", "model"),
    ]:
        _problem(client.get(API + path, params={name: bad}), 422, "validation", "found U+")


def test_descriptions_keep_line_breaks_and_refuse_nul(client: TestClient) -> None:
    kept = client.post(f"{API}/datasets", json={"name": "d", "description": "one\n\ttwo"})
    assert kept.status_code == 201 and kept.json()["description"] == "one\n\ttwo"
    refused = client.post(f"{API}/datasets", json={"name": "d", "description": "a\x00"})
    _problem(refused, 422, "validation", "U+0000")


def test_job_params_refuse_nul_anywhere(client: TestClient) -> None:
    response = client.post(f"{API}/jobs", json={"function": "noop", "params": {"\x00": 1}})
    _problem(response, 422, "validation", "NUL")


# -- accounts ---------------------------------------------------------------------------


def test_an_admin_cannot_lock_themselves_out(app_client: TestClient) -> None:
    admin = signed_in(app_client, make_admin(app_client))
    me = admin.get(f"{API}/users/me").json()["id"]
    _problem(admin.post(f"{API}/users/{me}/deactivate"), 409, "conflict", "your own account")
    _problem(admin.patch(f"{API}/users/{me}", json={"role": "user"}), 409, "conflict", "own")
    assert admin.get(f"{API}/users").status_code == 200  # still an active admin
    other = register(app_client)
    other_id = signed_in(app_client, other).get(f"{API}/users/me").json()["id"]
    assert admin.post(f"{API}/users/{other_id}/deactivate").status_code == 200


# -- logging ----------------------------------------------------------------------------


def test_refused_requests_are_logged_at_info(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="aperture.web"):
        client.get(f"{API}/jobs/{uuid.uuid4()}")
        client.get(f"{API}/jobs", params={"limit": 0})
    refused = [r for r in caplog.records if r.getMessage() == "request refused"]
    assert {getattr(r, "status", None) for r in refused} == {404, 422}
    assert all(r.levelno == logging.INFO for r in refused)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
