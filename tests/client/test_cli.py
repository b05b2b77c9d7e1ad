"""The user verbs of `aperture`: login saves a credential (0600, no password), the
environment overrides it, and upload / submit / jobs / download / cancel work end to end."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from infra.cli import build_parser, main
from tests.client.conftest import Account
from tests.support.app import LiveServer


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_help_lists_server_and_user_verbs() -> None:
    text = build_parser().format_help()
    assert "server commands" in text and "user commands" in text
    for verb in ("serve", "migrate", "users", "cleanup", "login", "upload", "batch"):
        assert verb in text


def test_login_with_a_password_keeps_only_a_refresh_token(
    server: LiveServer,
    account: Account,
    private_dirs: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _stdin(monkeypatch, account.password + "\n")
    assert main(["login", "--url", server.url, "--email", account.email, "--password-stdin"]) == 0
    saved = private_dirs / "config" / "aperture" / "credentials.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    first = json.loads(saved.read_text())["auth"]
    assert first["kind"] == "password" and account.password not in saved.read_text()
    assert main(["jobs"]) == 0
    rotated = json.loads(saved.read_text())["auth"]["refresh_token"]
    assert rotated != first["refresh_token"]  # the rotated token was written back
    assert main(["jobs"]) == 0  # and works for the next command
    assert "jobs" in capsys.readouterr().out


def test_a_wrong_password_saves_nothing(
    server: LiveServer, account: Account, private_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, "wrong\n")
    assert main(["login", "--url", server.url, "--email", account.email, "--password-stdin"]) == 1
    assert not (private_dirs / "config" / "aperture" / "credentials.json").exists()


def test_environment_overrides_and_one_off_verbs(
    server: LiveServer,
    account: Account,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["jobs"]) == 2  # not signed in: says how to
    assert "aperture login" in capsys.readouterr().err
    _stdin(monkeypatch, account.api_key + "\n")
    assert main(["login", "--url", "http://127.0.0.1:9", "--api-key-stdin"]) == 1  # no server
    monkeypatch.setenv("APERTURE_URL", server.url)
    monkeypatch.setenv("APERTURE_API_KEY", account.api_key)

    source = tmp_path / "table.csv"
    source.write_text("a,b\n1,2\n")
    assert main(["upload", str(source)]) == 0
    file_id = capsys.readouterr().out.split()[0]
    assert main(["upload", str(source)]) == 0
    assert "already stored" in capsys.readouterr().out

    params = tmp_path / "p.json"
    params.write_text(json.dumps({"file_id": file_id, "copies": 1}))
    assert main(["submit", "test.artefacts", "--params", str(params), "--wait"]) == 0
    out = capsys.readouterr().out
    job_id = out.split()[0]
    assert "succeeded" in out and "log: read 8 bytes" in out
    assert main(["download", job_id, "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "copy-0.txt").read_text() == "a,b\n1,2\n"[::-1]
    assert main(["jobs", "--status", "succeeded"]) == 0
    assert job_id in capsys.readouterr().out

    params.write_text(json.dumps({"file_id": file_id, "seconds": 30}))
    assert main(["submit", "test.slowfile", "--params", str(params)]) == 0
    slow = capsys.readouterr().out.split()[0]
    assert main(["cancel", slow]) == 0
    assert slow in capsys.readouterr().out
    params.write_text(json.dumps({"file_id": "nope"}))
    assert main(["submit", "checksum", "--params", str(params)]) == 1
    assert "is not a 'uuid'" in capsys.readouterr().err
