"""Building the real app for tests: settings in a temp dir, an in-process client (real
ASGI app, lifespan, executor and workers), and a live server over real HTTP in its own
process for tests that kill it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from common.settings import Settings
from web.app import create_app

REPO = Path(__file__).resolve().parents[2]
TEST_CAPABILITIES = "tests.support.capabilities"
TERMINAL = {"succeeded", "failed", "cancelled"}


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "workers": 2,
        "extra_capabilities": [TEST_CAPABILITIES],
        "cancel_grace_s": 1.0,
        "heartbeat_interval_s": 0.5,
        "heartbeat_timeout_s": 5.0,
        "log_format": "text",
    }
    values.update(overrides)
    return Settings(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_job(
    client: httpx.Client | TestClient,
    job_id: str,
    *,
    timeout: float = 30,
    statuses: set[str] = TERMINAL,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")
        time.sleep(0.05)


PASSWORD = "correct horse battery staple"


def register(
    client: httpx.Client | TestClient, email: str | None = None, password: str = PASSWORD
) -> dict[str, str]:
    """Register and log in a new user; returns the Authorization header for them."""
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.org"
    created = client.post("/api/v1/auth/register", json={"email": email, "password": password})
    assert created.status_code == 201, created.text
    return login(client, email, password)


def login(
    client: httpx.Client | TestClient, email: str, password: str = PASSWORD
) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    client.cookies.clear()  # the caller's client stays anonymous; the header is the identity
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def signed_in(app_client: TestClient, headers: dict[str, str]) -> TestClient:
    """Another client of the same running app (same event loop, via its portal) that sends
    `headers` with every request."""
    other = TestClient(app_client.app, raise_server_exceptions=False, headers=headers)
    other.portal = app_client.portal  # type: ignore[attr-defined]
    return other


def make_admin(client: TestClient, email: str | None = None) -> dict[str, str]:
    """An admin account made the way `aperture users create --admin` makes one."""
    email = email or f"admin-{uuid.uuid4().hex[:10]}@example.org"
    identity = client.app.state.aperture.identity  # type: ignore[attr-defined]
    identity.accounts.create_user(email, PASSWORD, role="admin")
    return login(client, email)


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The real app (lifespan, executor, worker processes) in process, shared by a test
    module: starting workers costs seconds. Tests tag or name what they create. It
    carries no credentials; `client` is the same app signed in."""
    settings = make_settings(tmp_path_factory.mktemp("app") / "data")
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def client(app_client: TestClient) -> Iterator[TestClient]:
    """The shared app, signed in as one ordinary user for the module (bearer token)."""
    yield signed_in(app_client, register(app_client))


class LiveServer:
    """`aperture serve` in a child process on a free port, as a user would run it.

    `public_url=False` leaves APERTURE_PUBLIC_URL unset (the server derives it); `repo`
    runs another checkout's server (benchmarks compare against the code before a change).
    """

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        *,
        public_url: bool = True,
        repo: Path = REPO,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.repo = repo
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "APERTURE_PUBLIC_URL"},
            "APERTURE_DATA_DIR": str(data_dir),
            "APERTURE_EXTRA_CAPABILITIES": f'["{TEST_CAPABILITIES}"]',
            "APERTURE_LOG_FORMAT": "text",
            "APERTURE_HEARTBEAT_INTERVAL_S": "0.5",
            "PYTHONPATH": str(repo),
            **({"APERTURE_PUBLIC_URL": self.url} if public_url else {}),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"

    def command(self, *, workers: int = 2, web_workers: int | None = 1) -> list[str]:
        """The command line. One web process unless asked: each costs seconds of CPU to
        start, and most tests are about something else."""
        command = [sys.executable, "-m", "infra.cli", "serve", "--port", str(self.port)]
        command += ["--workers", str(workers)]
        if web_workers is not None:
            command += ["--web-workers", str(web_workers)]
        return command

    def start(
        self, *, workers: int = 2, web_workers: int | None = 1, timeout: float = 120
    ) -> LiveServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(workers=workers, web_workers=web_workers),
                cwd=self.repo,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server and its workers: no shutdown code runs."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "data").start()
    try:
        yield server
    finally:
        server.stop()
