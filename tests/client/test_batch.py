"""`aperture batch` against `aperture serve`: 20 inputs with one corrupt file, the live
display (rich's recording console), resuming without resubmitting, --retry-failed, Ctrl-C,
cancel."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
from rich.console import Console

from client import ApiKey, Client
from client.batch.command import cmd_batch_run
from infra.cli import build_parser, main
from tests.client.conftest import Account, child_env
from tests.support.app import LiveServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def signed_in(
    server: LiveServer, account: Account, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Client]:
    monkeypatch.setenv("APERTURE_URL", server.url)
    monkeypatch.setenv("APERTURE_API_KEY", account.api_key)
    with Client(server.url, ApiKey(account.api_key)) as aperture:
        yield aperture


def _tiffs(folder: Path, count: int) -> None:
    folder.mkdir()
    for i in range(count):
        tifffile.imwrite(folder / f"plate{i:02d}.tif", np.full((2, 16, 16), i, np.uint8))
    good = (folder / "plate00.tif").read_bytes()
    (folder / "broken.tif").write_bytes(good[: len(good) // 3])  # truncated


def _batch(tmp_path: Path, *extra: str) -> list[str]:
    (tmp_path / "params.json").write_text("{}")
    return [
        "batch", "run", "--function", "metadata", "--params", str(tmp_path / "params.json"),
        "--inputs", str(tmp_path / "in" / "*.tif"), "--out", str(tmp_path / "out"),
        "--manifest", str(tmp_path / "batch.json"), "--concurrency", "4", *extra,
    ]  # fmt: skip


def _metadata_jobs(aperture: Client) -> int:
    return aperture.jobs(function="metadata", limit=1).total


@pytest.mark.slow
def test_a_batch_with_a_corrupt_input_then_a_rerun_that_submits_nothing(
    signed_in: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _tiffs(tmp_path / "in", 19)
    before = _metadata_jobs(signed_in)
    console = Console(record=True, force_terminal=True, width=150, file=io.StringIO())
    args = build_parser().parse_args(_batch(tmp_path))
    assert cmd_batch_run(args, console) == 1

    manifest = json.loads((tmp_path / "batch.json").read_text())
    entries = {e["name"]: e for e in manifest["entries"]}
    assert len(entries) == 20
    broken = entries.pop("broken.tif")
    assert broken["status"] == "failed" and broken["stage"] == "upload"
    assert "415 unsupported-file" in broken["error"] and broken["job_id"] is None
    assert {e["status"] for e in entries.values()} == {"succeeded"}
    for name, entry in entries.items():
        result = json.loads((tmp_path / "out" / name / "result.json").read_text())
        assert result["kind"] == "microscopy" and entry["artefacts"] == [f"{name}/result.json"]
    assert _metadata_jobs(signed_in) == before + 19

    screen = console.export_text()
    assert "20/20 done · 19 ok · 1 failed" in screen  # the overall line at the end
    assert "━" in screen  # its bar
    frames_with_rows = [f for f in screen.split("metadata ") if "input" in f and "status" in f]
    assert frames_with_rows and any("running" in f or "queued" in f for f in frames_with_rows)
    assert "broken.tif" in screen and "unsupported-file" in screen  # the summary

    # The same command again: nothing new is submitted, plain lines off a terminal.
    capsys.readouterr()
    plain = Console(file=io.StringIO(), force_terminal=False, width=200)
    assert cmd_batch_run(build_parser().parse_args(_batch(tmp_path)), plain) == 1
    assert "metadata: 20 inputs, 20 already done" in capsys.readouterr().out
    assert _metadata_jobs(signed_in) == before + 19
    assert "1 failed, 19 succeeded" in plain.file.getvalue()  # type: ignore[attr-defined]

    # The user repairs the broken file: --retry-failed submits it, and only it.
    tifffile.imwrite(tmp_path / "in" / "broken.tif", np.zeros((2, 16, 16), np.uint8))
    retry = build_parser().parse_args(_batch(tmp_path, "--retry-failed"))
    assert cmd_batch_run(retry, Console(file=io.StringIO(), force_terminal=False)) == 0
    assert _metadata_jobs(signed_in) == before + 20
    repaired = {e["name"]: e for e in json.loads((tmp_path / "batch.json").read_text())["entries"]}
    assert repaired["broken.tif"]["status"] == "succeeded"
    assert (tmp_path / "out" / "broken.tif" / "result.json").exists()


@pytest.mark.slow
def test_ctrl_c_leaves_a_consistent_manifest_and_batch_cancel_stops_the_jobs(
    signed_in: Client, server: LiveServer, account: Account, tmp_path: Path, private_dirs: Path
) -> None:
    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"cell{i}.csv").write_text(f"t,y\n0,{i}\n")
    (tmp_path / "params.json").write_text('{"seconds": 30}')
    manifest = tmp_path / "batch.json"
    command = [
        sys.executable, "-m", "infra.cli", "batch", "run", "--function", "test.slowfile",
        "--params", str(tmp_path / "params.json"), "--inputs", str(tmp_path / "in" / "*.csv"),
        "--out", str(tmp_path / "out"), "--manifest", str(manifest),
    ]  # fmt: skip
    env = {
        **child_env(private_dirs),
        "APERTURE_URL": server.url,
        "APERTURE_API_KEY": account.api_key,
    }
    with subprocess.Popen(
        command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    ) as child:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if manifest.exists():
                entries = json.loads(manifest.read_text())["entries"]
                if len(entries) == 3 and all(e["job_id"] for e in entries):
                    break
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGINT)
        out, _ = child.communicate(timeout=30)
    assert child.returncode == 130, out
    assert "3 jobs keep running" in out and "aperture batch cancel" in out
    entries = json.loads(manifest.read_text())["entries"]
    job_ids = [e["job_id"] for e in entries]
    assert all(job_ids) and {e["status"] for e in entries} <= {"queued", "running"}

    assert main(["batch", "cancel", str(manifest)]) == 0
    for job_id in job_ids:
        assert signed_in.wait(job_id, timeout=30).status == "cancelled"
    entries = json.loads(manifest.read_text())["entries"]
    assert {e["status"] for e in entries} == {"cancelled"}
    assert main(["batch", "status", str(manifest)]) == 1
