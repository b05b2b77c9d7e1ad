"""The `aperture` command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, update

from common.records import File, transaction
from common.records.types import utcnow
from infra.cli import build_parser
from tests.support.app import REPO, make_settings, register
from web.app import create_app


def _aperture(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_creates_the_default_database_in_dot_aperture(tmp_path: Path) -> None:
    result = _aperture("migrate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    database = tmp_path / ".aperture" / "aperture.db"
    assert database.exists() and "head" in result.stdout
    tables = inspect(create_engine(f"sqlite:///{database}")).get_table_names()
    assert {"jobs", "job_events", "files"} <= set(tables)


def test_serve_options() -> None:
    args = build_parser().parse_args(
        ["serve", "--host", "0.0.0.0", "--port", "9000", "--workers", "3"]
    )
    assert (args.host, args.port, args.workers) == ("0.0.0.0", 9000, 3)
    defaults = build_parser().parse_args(["serve"])
    assert (defaults.host, defaults.port) == ("127.0.0.1", 8000)


def test_unknown_command_fails_with_usage(tmp_path: Path) -> None:
    result = _aperture("fly", cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_cors_origins_come_from_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", cors_origins=["https://app.example"], workers=1)
    with TestClient(create_app(settings)) as client:
        allowed = client.options(
            "/api/v1/jobs",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = client.get("/api/v1/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_users_create_makes_the_first_admin(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_")}
    env["PYTHONPATH"] = str(REPO)
    command = [
        sys.executable,
        "-m",
        "infra.cli",
        "users",
        "create",
        "--email",
        "Boss@Lab.org",
        "--admin",
        "--password-stdin",
    ]
    made = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        input="a long enough secret\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert "created admin boss@lab.org" in made.stdout
    weak = subprocess.run(
        [*command[:-4], "--email", "x@lab.org", "--password-stdin"],
        cwd=tmp_path,
        env=env,
        input="short\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert weak.returncode == 1 and "at least 10" in weak.stderr
    settings = make_settings(tmp_path / ".aperture", workers=1)
    with TestClient(create_app(settings)) as client:
        tokens = client.post(
            "/api/v1/auth/login", json={"email": "boss@lab.org", "password": "a long enough secret"}
        )
        me = client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"}
        )
        assert me.json()["role"] == "admin"


def test_demo_data_writes_a_timelapse_and_a_slide(tmp_path: Path) -> None:
    made = _aperture(
        "demo-data",
        "timelapse",
        str(tmp_path / "tl"),
        "--fovs",
        "2",
        "--frames",
        "3",
        "--size",
        "64",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "tl" / "timelapse.ome.tif").exists()
    assert (tmp_path / "tl" / "timelapse.truth.json").exists()
    slide = _aperture(
        "demo-data",
        "slide",
        str(tmp_path / "s.svs"),
        "--width",
        "2000",
        "--height",
        "1500",
        cwd=tmp_path,
    )
    assert slide.returncode == 0, slide.stderr
    import openslide

    with openslide.OpenSlide(str(tmp_path / "s.svs")) as opened:
        assert opened.dimensions == (2000, 1500) and opened.level_count >= 2


def test_serve_runs_cleanup_periodically(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", workers=1, cleanup_interval_s=0.2)
    with TestClient(create_app(settings)) as client:
        client.headers.update(register(client))
        stored = client.post("/api/v1/files", files={"file": ("gone.csv", b"a,b\n")}).json()
        runtime = client.app.state.aperture.runtime  # type: ignore[attr-defined]
        key = runtime.files.record(uuid.UUID(stored["id"])).key
        # a delete whose object removal was lost (e.g. a crash) leaves the bytes behind
        with transaction(runtime.db) as session:
            session.execute(update(File).where(File.key == key).values(deleted_at=utcnow()))
        deadline = time.monotonic() + 10
        while runtime.objects.exists(key):
            assert time.monotonic() < deadline, "cleanup never removed the deleted file's bytes"
            time.sleep(0.1)
