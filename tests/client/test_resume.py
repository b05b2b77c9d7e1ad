"""An upload whose client process is killed between parts resumes on the next run
(the server's stored part list decides what is left) and the stored bytes are exact:
on the directory store and on S3 (SeaweedFS, presigned part URLs)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from client import ApiKey, Client
from tests.client.conftest import child_env, new_account, start_server
from tests.support.s3 import S3Server, s3_settings_env, unique_bucket

MIB = 1024 * 1024
PART = 5 * MIB  # the server's part size for files this small
REPO = Path(__file__).resolve().parents[2]


def _source(path: Path, size: int) -> Path:
    block = b"x,y\n" + os.urandom(MIB // 2).hex().encode()[: MIB - 4]
    with path.open("wb") as f:
        for i in range(size // MIB):
            f.write(block[:-8] + f"{i:07d}\n".encode())
        f.write(b"9" * (size % MIB))
    return path


def _kill_after_parts(url: str, key: str, path: Path, home: Path, parts: int) -> None:
    landed = 0
    with subprocess.Popen(
        [sys.executable, "-m", "tests.client.upload_child", url, key, str(path)],
        cwd=REPO,
        env=child_env(home),
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("PART"):
                landed += 1
                if landed == parts:
                    os.kill(child.pid, signal.SIGKILL)
                    break
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL and landed == parts


def _interrupt_and_resume(url: str, tmp_path: Path, home: Path) -> None:
    account = new_account(url)
    source = _source(tmp_path / "stack.csv", 4 * PART + 123)  # 5 parts
    _kill_after_parts(url, account.api_key, source, home, parts=2)

    with Client(url, ApiKey(account.api_key), part_concurrency=4) as aperture:
        resumed = aperture.upload(source)
        assert resumed.resumed_parts == 2 and not resumed.skipped
        assert resumed.sent_bytes == source.stat().st_size - 2 * PART
        assert resumed.file.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
        back = aperture.download(resumed.file.id, tmp_path / "back.csv")
    assert back.read_bytes() == source.read_bytes()
    assert not any((home / "state").rglob("*.json"))  # nothing left pending


@pytest.mark.slow
def test_killed_upload_resumes_on_the_directory_store(tmp_path: Path, private_dirs: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        _interrupt_and_resume(server.url, tmp_path, private_dirs)
    finally:
        server.stop()


@pytest.mark.slow
def test_killed_upload_resumes_on_s3(
    tmp_path: Path, private_dirs: Path, s3_server: S3Server
) -> None:
    bucket = unique_bucket("client-resume")
    s3_server.store(bucket).ensure_bucket()
    server = start_server(tmp_path / "data", **s3_settings_env(s3_server, bucket))
    try:
        _interrupt_and_resume(server.url, tmp_path, private_dirs)
    finally:
        server.stop()
