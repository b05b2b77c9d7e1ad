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

from client import ApiKey, Client, ProblemError
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
def test_a_resumed_part_changed_on_the_server_is_caught_at_completion(
    tmp_path: Path, private_dirs: Path
) -> None:
    """The directory store's part ETags name files, not content, so a stored part of the
    right size is kept on resume; the whole file's SHA-256, sent with the completion,
    catches one whose bytes changed (here: rewritten in place, size and mtime kept, while
    the server was down, so the parts are joined afresh from disk), the file is refused
    before it is recorded, and the next run starts afresh."""
    server = start_server(tmp_path / "data")
    try:
        account = new_account(server.url)
        source = _source(tmp_path / "stack.csv", 4 * PART + 123)
        _kill_after_parts(server.url, account.api_key, source, private_dirs, parts=2)
        server.stop()
        stored = sorted((tmp_path / "data").rglob("*.part"))
        assert len(stored) == 2
        st = stored[0].stat()
        with stored[0].open("r+b") as f:
            f.seek(100)
            f.write(b"#corrupted#")
        os.utime(stored[0], ns=(st.st_atime_ns, st.st_mtime_ns))
        server.start(workers=2)
        with Client(server.url, ApiKey(account.api_key), part_concurrency=4) as aperture:
            with pytest.raises(ProblemError) as refused:
                aperture.upload(source)
            assert 400 <= refused.value.status < 500 and "SHA-256" in str(refused.value)
            assert aperture.files().total == 0  # nothing recorded
            again = aperture.upload(source)
        assert again.resumed_parts == 0 and again.sent_bytes == source.stat().st_size
        assert again.file.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
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
