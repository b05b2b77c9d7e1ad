"""Malformed bodies and headers against the auth endpoints: always a 4xx, never a 500."""

from __future__ import annotations

import base64
import json
import random

import pytest
from fastapi.testclient import TestClient

rng = random.Random(20261122)

BODIES: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b'"x"',
    b"{",
    b"\xff\xfe",
    b'{"email": 1, "password": 2}',
    b'{"email": null, "password": null}',
    b'{"email": "a@b.c"}',
    b'{"password": "x"}',
    b'{"email": "' + b"a" * 10_000 + b'@b.c", "password": "xxxxxxxxxxxx"}',
    b'{"email": "a@b.c", "password": "' + b"p" * 5000 + b'"}',
    b'{"email": "\\u0000@\\u0000.c", "password": "\\u0000\\u0000\\u0000\\u0000"}',
    b'{"email": ["a@b.c"], "password": {"x": 1}}',
    b'{"refresh_token": 12}',
    b'{"refresh_token": "' + b"r" * 600 + b'"}',
    b'{"name": "", "expires_at": "never"}',
    *[bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))) for _ in range(10)],
]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


HEADERS: list[str] = [
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "bearer x.y.z",
    "Bearer ap_",
    "Bearer ap_x_y",
    "Bearer " + "a" * 8000,
    "Bearer \u00e9\u00e9",
    "Bearer a.b",
    "Token abc",
    "Bearer " + _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({"sub": "x"}) + ".",
    "Bearer " + _b64({"alg": "HS256"}) + "." + _b64({"sub": "not-a-uuid", "exp": 1}) + ".sig",
    "Bearer " + _b64({"alg": "RS256", "kid": "nope"}) + "." + _b64({}) + ".sig",
]

ENDPOINTS = [
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/api-keys"),
    ("GET", "/api/v1/auth/me"),
    ("POST", "/api/v1/auth/logout"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_malformed_bodies_never_cause_a_500(app_client: TestClient, method: str, path: str) -> None:
    for body in BODIES:
        for content_type in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
            response = app_client.request(
                method, path, content=body, headers={"content-type": content_type}
            )
            assert 400 <= response.status_code < 500, (body[:60], response.text[:200])


@pytest.mark.parametrize("header", HEADERS)
def test_malformed_credentials_are_401(app_client: TestClient, header: str) -> None:
    raw = header.encode()  # bytes: non-ASCII goes on the wire as UTF-8
    response = app_client.get("/api/v1/auth/me", headers={"Authorization": raw})
    assert response.status_code == 401, response.text
    for name, value in ((b"X-API-Key", raw), (b"Cookie", b"aperture_access=" + raw[7:])):
        other = app_client.get("/api/v1/jobs", headers={name: value})
        assert other.status_code == 401, (name, value[:40], other.text)
