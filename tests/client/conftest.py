"""A live `aperture serve` (real HTTP on 127.0.0.1) for the client tests, accounts on it,
and a private config/state directory so no test touches the user's own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.app import PASSWORD, TEST_CAPABILITIES, LiveServer

CAPABILITIES = f'["{TEST_CAPABILITIES}", "tests.client.capabilities"]'


def start_server(data_dir: Path, **env: str) -> LiveServer:
    return LiveServer(data_dir, env={"APERTURE_EXTRA_CAPABILITIES": CAPABILITIES, **env}).start(
        workers=2
    )


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    api_key: str


def new_account(url: str) -> Account:
    email = f"client-{uuid.uuid4().hex[:10]}@example.org"
    with httpx.Client(base_url=url, timeout=30) as http:
        created = http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        tokens = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        bearer = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
        key = http.post("/api/v1/auth/api-keys", json={"name": "tests"}, headers=bearer)
        assert key.status_code == 201, key.text
    return Account(email, PASSWORD, key.json()["key"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`aperture serve` on the directory store, shared by a test module."""
    live = start_server(tmp_path_factory.mktemp("client-server") / "data")
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def account(server: LiveServer) -> Account:
    return new_account(server.url)


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """platformdirs reads XDG_*: config and upload state go to the test's own folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    for name in ("APERTURE_URL", "APERTURE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return home


def child_env(home: Path) -> dict[str, str]:
    """The environment a child process of a test gets (same private dirs)."""
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
