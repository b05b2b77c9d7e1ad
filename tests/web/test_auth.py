"""Local accounts over HTTP: registration, login, refresh rotation and reuse detection,
sessions, logout, cookies with CSRF, API keys, deactivation, admin users, audit log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from tests.support.app import PASSWORD, login, make_admin, register, signed_in


def _email() -> str:
    return f"u-{uuid.uuid4().hex[:10]}@example.org"


def _tokens(client: TestClient, email: str, password: str = PASSWORD) -> dict:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    client.cookies.clear()
    return response.json()


def _me(client: TestClient, token: str) -> int:
    return client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_register_login_me(app_client: TestClient) -> None:
    email = _email()
    created = app_client.post(
        "/api/v1/auth/register", json={"email": email.upper(), "password": PASSWORD}
    )
    assert created.status_code == 201 and created.json()["email"] == email
    assert created.json()["role"] == "user" and "password" not in created.text
    tokens = _tokens(app_client, email)
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    me = app_client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json()
    assert me["email"] == email and me["id"] == created.json()["id"]
    again = app_client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert again.status_code == 409


def test_access_token_has_supabase_claim_shape(app_client: TestClient) -> None:
    email = _email()
    register(app_client, email)
    claims = jwt.decode(
        _tokens(app_client, email)["access_token"], options={"verify_signature": False}
    )
    assert {"sub", "role", "aud", "email", "exp", "iat", "session_id"} <= set(claims)
    assert claims["aud"] == "authenticated" and claims["role"] == "authenticated"
    assert claims["exp"] - claims["iat"] == 900 and claims["email"] == email
    assert claims["app_metadata"]["role"] == "user"


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 10"),
        ("aaaaaaaaaaaa", "4 different"),
        ("x" * 300, "at most 256"),
    ],
)
def test_password_policy(app_client: TestClient, password: str, reason: str) -> None:
    response = app_client.post(
        "/api/v1/auth/register", json={"email": _email(), "password": password}
    )
    assert response.status_code == 422 and reason in response.json()["detail"]


def test_login_answers_the_same_for_unknown_user_and_wrong_password(
    app_client: TestClient,
) -> None:
    email = _email()
    register(app_client, email)
    wrong = app_client.post("/api/v1/auth/login", json={"email": email, "password": "nope" * 4})
    unknown = app_client.post(
        "/api/v1/auth/login", json={"email": _email(), "password": "nope" * 4}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


def test_refresh_rotates_and_reuse_revokes_the_session(app_client: TestClient) -> None:
    email = _email()
    register(app_client, email)
    first = _tokens(app_client, email)
    second = app_client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    ).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert _me(app_client, second["access_token"]) == 200
    replay = app_client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and "already used" in replay.json()["detail"]
    # the whole family is gone: the newest refresh token and its access token too
    assert (
        app_client.post(
            "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
        ).status_code
        == 401
    )
    assert _me(app_client, second["access_token"]) == 401
    assert (
        app_client.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"}).status_code
        == 401
    )


def test_sessions_list_and_revoke(app_client: TestClient) -> None:
    email = _email()
    register(app_client, email)
    phone = _tokens(app_client, email)
    laptop = _tokens(app_client, email)
    headers = {"Authorization": f"Bearer {laptop['access_token']}"}
    sessions = app_client.get("/api/v1/auth/sessions", headers=headers).json()
    assert len(sessions) == 3 and sum(s["current"] for s in sessions) == 1
    phone_id = jwt.decode(phone["access_token"], options={"verify_signature": False})["session_id"]
    assert (
        app_client.delete(f"/api/v1/auth/sessions/{phone_id}", headers=headers).status_code == 204
    )
    assert _me(app_client, phone["access_token"]) == 401  # at once, not at expiry
    assert _me(app_client, laptop["access_token"]) == 200
    other = register(app_client)
    laptop_id = jwt.decode(laptop["access_token"], options={"verify_signature": False})
    assert (
        app_client.delete(
            f"/api/v1/auth/sessions/{laptop_id['session_id']}", headers=other
        ).status_code
        == 404
    )


def test_logout_ends_the_session(app_client: TestClient) -> None:
    email = _email()
    register(app_client, email)
    tokens = _tokens(app_client, email)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert app_client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert _me(app_client, tokens["access_token"]) == 401
    assert (
        app_client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        ).status_code
        == 401
    )


def test_cookie_auth_needs_csrf_for_unsafe_requests(app_client: TestClient) -> None:
    email = _email()
    register(app_client, email)
    browser = TestClient(
        app_client.app, base_url="https://testserver", raise_server_exceptions=False
    )
    browser.portal = app_client.portal  # type: ignore[attr-defined]
    response = browser.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    cookie_header = response.headers.get_list("set-cookie")
    assert all("HttpOnly" in c for c in cookie_header if c.startswith("aperture_access"))
    assert any("SameSite=lax" in c and "Secure" in c for c in cookie_header)
    assert browser.get("/api/v1/auth/me").status_code == 200  # safe: no CSRF needed
    body = {"function": "noop", "tags": ["cookie"]}
    refused = browser.post("/api/v1/jobs", json=body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = browser.post("/api/v1/jobs", json=body, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    token = browser.cookies.get("aperture_csrf")
    assert (
        browser.post("/api/v1/jobs", json=body, headers={"X-CSRF-Token": token}).status_code == 202
    )
    refreshed = browser.post("/api/v1/auth/refresh")  # refresh token from its cookie
    assert refreshed.status_code == 200


def test_api_keys_work_until_revoked_or_expired(app_client: TestClient) -> None:
    headers = register(app_client)
    created = app_client.post(
        "/api/v1/auth/api-keys", json={"name": "script"}, headers=headers
    ).json()
    key = created["key"]
    assert key.startswith(created["prefix"]) and len(key) > 40
    listed = app_client.get("/api/v1/auth/api-keys", headers=headers).json()
    assert [k["prefix"] for k in listed] == [created["prefix"]] and "key" not in listed[0]
    for way in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        assert app_client.get("/api/v1/jobs", headers=way).status_code == 200
    assert app_client.get("/api/v1/auth/api-keys", headers=headers).json()[0]["last_used_at"]
    assert app_client.get("/api/v1/jobs", headers={"X-API-Key": key + "x"}).status_code == 401
    assert (
        app_client.delete(f"/api/v1/auth/api-keys/{created['id']}", headers=headers).status_code
        == 204
    )
    revoked = app_client.get("/api/v1/jobs", headers={"X-API-Key": key})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    soon = datetime.now(UTC) + timedelta(seconds=1)
    short = app_client.post(
        "/api/v1/auth/api-keys",
        headers=headers,
        json={"name": "short", "expires_at": soon.isoformat()},
    ).json()
    identity = app_client.app.state.aperture.identity  # type: ignore[attr-defined]
    with identity.api_keys.db.begin() as session:  # let it expire without waiting
        from common.records import ApiKey

        session.get(ApiKey, uuid.UUID(short["id"])).expires_at = datetime.now(UTC) - timedelta(
            seconds=1
        )
    expired = app_client.get("/api/v1/jobs", headers={"X-API-Key": short["key"]})
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    past = app_client.post(
        "/api/v1/auth/api-keys",
        headers=headers,
        json={"name": "past", "expires_at": "2000-01-01T00:00:00Z"},
    )
    assert past.status_code == 422


def test_deactivation_stops_tokens_and_keys_at_once(app_client: TestClient) -> None:
    admin = make_admin(app_client)
    email = _email()
    headers = register(app_client, email)
    key = app_client.post("/api/v1/auth/api-keys", json={"name": "k"}, headers=headers).json()
    me = app_client.get("/api/v1/auth/me", headers=headers).json()
    assert (
        app_client.post(f"/api/v1/users/{me['id']}/deactivate", headers=admin).json()["is_active"]
        is False
    )
    assert app_client.get("/api/v1/auth/me", headers=headers).status_code == 401
    assert app_client.get("/api/v1/jobs", headers={"X-API-Key": key["key"]}).status_code == 401
    assert (
        app_client.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
        ).status_code
        == 401
    )
    app_client.post(f"/api/v1/users/{me['id']}/activate", headers=admin)
    assert app_client.get("/api/v1/jobs", headers={"X-API-Key": key["key"]}).status_code == 200


def test_admin_manages_users_and_users_manage_themselves(app_client: TestClient) -> None:
    admin = make_admin(app_client)
    user = register(app_client)
    created = app_client.post(
        "/api/v1/users",
        headers=admin,
        json={"email": _email(), "password": PASSWORD, "role": "admin"},
    )
    assert created.status_code == 201 and created.json()["role"] == "admin"
    listing = app_client.get("/api/v1/users", headers=admin).json()
    assert listing["total"] >= 3
    assert app_client.get("/api/v1/users", headers=user).status_code == 403
    target = created.json()["id"]
    patched = app_client.patch(
        f"/api/v1/users/{target}", headers=admin, json={"role": "user", "display_name": "Ada"}
    ).json()
    assert patched["role"] == "user" and patched["display_name"] == "Ada"
    mine = app_client.patch("/api/v1/users/me", headers=user, json={"display_name": "Me"})
    assert mine.json()["display_name"] == "Me"
    no_current = app_client.patch(
        "/api/v1/users/me", headers=user, json={"password": "another good one"}
    )
    assert no_current.status_code == 422
    assert (
        app_client.patch("/api/v1/users/me", headers=user, json={"role": "admin"}).status_code
        == 422
    )


def test_password_change_needs_the_current_password(app_client: TestClient) -> None:
    email = _email()
    headers = register(app_client, email)
    wrong = app_client.patch(
        "/api/v1/users/me",
        headers=headers,
        json={"password": "a brand new secret", "current_password": "not it at all"},
    )
    assert wrong.status_code == 401
    ok = app_client.patch(
        "/api/v1/users/me",
        headers=headers,
        json={"password": "a brand new secret", "current_password": PASSWORD},
    )
    assert ok.status_code == 200
    login(app_client, email, "a brand new secret")


def test_audit_log_records_who_did_what(app_client: TestClient) -> None:
    email = _email()
    headers = register(app_client, email)
    app_client.post("/api/v1/auth/login", json={"email": email, "password": "wrong password!"})
    job = app_client.post("/api/v1/jobs", json={"function": "noop"}, headers=headers).json()
    app_client.post("/api/v1/auth/api-keys", json={"name": "k"}, headers=headers)
    mine = app_client.get("/api/v1/events", headers=headers, params={"limit": 100}).json()
    actions = {e["action"] for e in mine["items"]}
    assert {
        "user.registered",
        "auth.login",
        "auth.login_failed",
        "job.submitted",
        "api_key.created",
    } <= actions
    submitted = app_client.get(
        "/api/v1/events", headers=headers, params={"action": "job.submitted"}
    ).json()["items"]
    assert [e["target_id"] for e in submitted] == [job["id"]]
    other = register(app_client)
    theirs = app_client.get("/api/v1/events", headers=other).json()["items"]
    assert all(e["action"] != "job.submitted" for e in theirs)
    admin = make_admin(app_client)
    everyone = app_client.get(
        "/api/v1/events", headers=admin, params={"action": "job.submitted", "limit": 500}
    ).json()
    assert job["id"] in {e["target_id"] for e in everyone["items"]}


def test_signed_in_helper_keeps_users_apart(app_client: TestClient) -> None:
    alice = signed_in(app_client, register(app_client))
    bob = signed_in(app_client, register(app_client))
    job = alice.post("/api/v1/jobs", json={"function": "noop"}).json()
    assert bob.get(f"/api/v1/jobs/{job['id']}").status_code == 404
    assert all(j["id"] != job["id"] for j in bob.get("/api/v1/jobs").json()["items"])
