"""Verified credentials are reused for APERTURE_PRINCIPAL_CACHE_S: revocation is immediate
in the process that revokes, and reaches every other process within that time."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from common.errors import Unauthorized
from tests.support.app import register
from web.auth import PrincipalCache, authenticate

TTL_S = 0.5


def _request(headers: dict[str, str], method: str = "GET") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": method, "path": "/", "headers": raw})


def _identity(app_client: TestClient):  # type: ignore[no-untyped-def]
    return app_client.app.state.aperture.identity  # type: ignore[attr-defined]


def test_a_revoked_key_is_refused_elsewhere_within_the_ttl(app_client: TestClient) -> None:
    """`elsewhere` stands for another web process: its cache does not watch this
    process's writes, so only its TTL ends the revoked key's access."""
    headers = register(app_client)
    created = app_client.post("/api/v1/auth/api-keys", json={"name": "k"}, headers=headers)
    key = created.json()["key"]
    elsewhere = PrincipalCache(TTL_S)
    request = _request({"X-API-Key": key})
    principal = authenticate(request, _identity(app_client), cache=elsewhere)
    revoked_at = time.monotonic()
    gone = app_client.delete(f"/api/v1/auth/api-keys/{created.json()['id']}", headers=headers)
    assert gone.status_code == 204
    assert app_client.get("/api/v1/jobs", headers={"X-API-Key": key}).status_code == 401
    while time.monotonic() - revoked_at < TTL_S * 0.5:  # stale, but only within the TTL
        assert authenticate(request, _identity(app_client), cache=elsewhere) == principal
        time.sleep(0.02)
    time.sleep(TTL_S)
    with pytest.raises(Unauthorized, match="revoked"):
        authenticate(request, _identity(app_client), cache=elsewhere)


def test_the_revoking_process_refuses_at_once(app_client: TestClient) -> None:
    """The app's own cache watches its database writes: logout, a revoked session and a
    deactivated account end access on the very next request, cached or not."""
    cache = app_client.app.state.principals  # type: ignore[attr-defined]
    assert cache.ttl_s > 0
    headers = register(app_client)
    assert app_client.get("/api/v1/auth/me", headers=headers).status_code == 200
    assert cache.get(("token", headers["Authorization"].removeprefix("Bearer "))) is not None
    assert app_client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert app_client.get("/api/v1/auth/me", headers=headers).status_code == 401


def test_an_access_token_is_never_kept_past_its_expiry() -> None:
    expires = int(time.time()) + 2
    short = jwt.encode({"sub": str(uuid.uuid4()), "exp": expires}, "k" * 32, algorithm="HS256")
    cache = PrincipalCache(60)
    cache.put(("token", short), object())  # type: ignore[arg-type]
    assert cache.get(("token", short)) is not None
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    assert cache.get(("token", short)) is None


def test_the_cache_is_bounded() -> None:
    cache = PrincipalCache(60, max_entries=3)
    for n in range(5):
        cache.put(("api-key", f"ak_{n}"), object())  # type: ignore[arg-type]
    assert [cache.get(("api-key", f"ak_{n}")) is not None for n in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_cookie_writes_still_need_csrf_when_cached(app_client: TestClient) -> None:
    from common.errors import Forbidden

    headers = register(app_client)
    token = headers["Authorization"].removeprefix("Bearer ")
    cache = PrincipalCache(60)
    cookie = {"cookie": f"aperture_access={token}"}
    authenticate(_request(cookie), _identity(app_client), cache=cache)  # cached now
    with pytest.raises(Forbidden, match="CSRF"):
        authenticate(_request(cookie, "POST"), _identity(app_client), cache=cache)
