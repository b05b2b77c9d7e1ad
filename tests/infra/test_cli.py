"""The `aperture` command line."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
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
    written = [tmp_path / "tl" / "timelapse.ome.tif", tmp_path / "tl" / "timelapse.truth.json"]
    assert made.stdout.splitlines() == [str(p) for p in written]  # paths, not a repr
    assert all(p.exists() for p in written)
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
    assert slide.stdout.strip() == str(tmp_path / "s.svs")
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


def test_user_errors_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    """Each mistake prints one line naming it and exits non-zero; the four run at once
    (each is a fresh interpreter)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APERTURE_")}
    env["PYTHONPATH"] = str(REPO)
    cases = {
        ("demo-data", "timelapse", "out", "--size", "0"): "--size: must be at least 64, got 0",
        ("demo-data", "slide", "/nonexistent/dir/x.svs"): "folder /nonexistent/dir does not exist",
        ("demo-data", "slide", "out.png"): "a slide is written as .svs, .tif, .tiff",
        ("migrate", "--revision", "nonsense"): "Can't locate revision identified by 'nonsense'",
        ("users", "create", "--email", "a@lab.org"): "pipe it in with --password-stdin",
    }
    running = {
        args: subprocess.Popen(
            [sys.executable, "-m", "infra.cli", *args],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,  # no terminal
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in cases
    }
    for args, words in cases.items():
        out, err = running[args].communicate(timeout=120)
        assert running[args].returncode != 0, (args, out, err)
        assert err.count("\n") == 1 and words in err, (args, err)
        assert "Traceback" not in err and err.startswith("aperture "), (args, err)
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "out").exists()


def _options(parser: argparse.ArgumentParser, prog: str = "aperture") -> Iterator[tuple]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{prog} {name}")
        elif not isinstance(action, argparse._HelpAction) and action.help != argparse.SUPPRESS:
            yield prog, action


def test_every_option_has_help_and_help_shows_defaults() -> None:
    parser = build_parser()
    undocumented = [(prog, a.dest) for prog, a in _options(parser) if not a.help]
    assert undocumented == []
    slide = parser._subparsers._group_actions[0].choices["demo-data"]  # type: ignore[union-attr]
    text = slide._subparsers._group_actions[0].choices["slide"].format_help()
    assert "--width WIDTH" in text and "(default: 8000)" in text and "(default: 0)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    defaults = parser.parse_args(["demo-data", "slide", "x.svs"])
    assert (defaults.width, defaults.height) == (8000, 6000)  # made in seconds
