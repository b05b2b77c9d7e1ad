"""Login throttling per account and per client address (its own app: a throttled address
would lock every other test of a shared app out)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.app import PASSWORD, make_settings, register
from web.app import create_app


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path / "data",
        workers=1,
        login_max_failures_per_account=3,
        login_max_failures_per_ip=6,
        login_window_s=600,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _login(client: TestClient, email: str, password: str) -> int:
    return client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}
    ).status_code


def test_failed_logins_are_throttled_per_account(strict: TestClient) -> None:
    email = f"t-{uuid.uuid4().hex[:8]}@example.org"
    register(strict, email)
    assert [_login(strict, email, "wrong password!") for _ in range(3)] == [401] * 3
    throttled = strict.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert throttled.status_code == 429  # even the right password, until the window passes
    assert int(throttled.headers["retry-after"]) == 600
    assert throttled.json()["type"] == "urn:aperture:problem:rate-limited"


def test_failed_logins_are_throttled_per_address(strict: TestClient) -> None:
    emails = [f"n-{uuid.uuid4().hex[:8]}@example.org" for _ in range(6)]
    assert [_login(strict, e, "wrong password!") for e in emails] == [401] * 6
    fresh = f"f-{uuid.uuid4().hex[:8]}@example.org"
    assert _login(strict, fresh, "wrong password!") == 429
