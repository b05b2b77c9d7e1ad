"""The client against `aperture serve`: credentials and their renewal, typed errors,
uploads (simple, multipart, duplicates), jobs by SSE and by polling, artefacts."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from client import (
    ApiKey,
    AsyncClient,
    Client,
    JobFailed,
    NotFound,
    ParamsInvalid,
    PasswordLogin,
    Tokens,
    Unauthorized,
)
from tests.client.conftest import Account
from tests.support.app import LiveServer

MIB = 1024 * 1024


def csv_file(path: Path, size: int, seed: int = 0) -> Path:
    """A CSV-looking file of exactly `size` bytes (the server checks types by content)."""
    row = f"{seed},{os.urandom(8).hex()}\n".encode()
    path.write_bytes(b"a,b\n" + (row * (size // len(row) + 1))[: size - 4])
    return path


def test_password_login_renews_before_expiry_and_after_a_401(
    server: LiveServer, account: Account
) -> None:
    seen: list[Tokens] = []
    credential = PasswordLogin(account.email, account.password, on_tokens=seen.append)
    with Client(server.url, credential) as aperture:
        assert aperture.me()["email"] == account.email
        assert len(seen) == 1  # logged in once
        first = seen[-1]
        # About to expire: the next request renews first, with the refresh token.
        credential.tokens = Tokens(first.access_token, first.refresh_token, time.time() + 5)
        aperture.jobs(limit=1)
        assert len(seen) == 2 and seen[-1].refresh_token != first.refresh_token
        # Refused (a forged token): renewed once, and the request goes through.
        credential.tokens = Tokens("not-a-token", seen[-1].refresh_token, time.time() + 600)
        assert aperture.jobs(limit=1).total >= 0
        assert len(seen) == 3


def test_a_refused_api_key_is_a_typed_error_with_the_problem_details(
    server: LiveServer, account: Account
) -> None:
    with Client(server.url, ApiKey(account.api_key, as_bearer=True)) as aperture:
        assert aperture.me()["email"] == account.email
    with (
        Client(server.url, ApiKey("ak_wrong" + "x" * 30)) as aperture,
        pytest.raises(Unauthorized) as refused,
    ):
        aperture.jobs()
    assert refused.value.status == 401 and refused.value.type.startswith("urn:aperture:problem:")
    assert refused.value.detail


def test_params_are_checked_locally_before_anything_is_sent(
    server: LiveServer, account: Account
) -> None:
    with Client(server.url, ApiKey(account.api_key)) as aperture:
        before = aperture.jobs().total
        with pytest.raises(ParamsInvalid, match="file_id") as bad:
            aperture.submit("checksum", {"file_id": "not-a-uuid", "extra": 1})
        assert len(bad.value.problems) == 2  # both mistakes, named
        assert aperture.jobs().total == before  # nothing reached the server
        with pytest.raises(NotFound) as missing:
            aperture.job("00000000-0000-4000-8000-000000000000")
        assert missing.value.code == "not-found" and missing.value.status == 404


def test_uploads_small_and_multipart_skip_duplicates_unless_forced(
    server: LiveServer, account: Account, tmp_path: Path
) -> None:
    small = csv_file(tmp_path / "small.csv", 1000)
    large = csv_file(tmp_path / "large.csv", 12 * MIB + 17, seed=1)
    progress: list[tuple[int, int]] = []
    with Client(server.url, ApiKey(account.api_key), part_concurrency=3) as aperture:
        first = aperture.upload(small)
        assert first.file.sha256 == hashlib.sha256(small.read_bytes()).hexdigest()
        again = aperture.upload(small)
        assert again.skipped and again.file.id == first.file.id and again.sent_bytes == 0
        forced = aperture.upload(small, force=True)
        assert not forced.skipped and forced.file.id != first.file.id

        big = aperture.upload(large, progress=lambda done, total: progress.append((done, total)))
        assert big.file.size == large.stat().st_size and big.sent_bytes == big.file.size
        assert big.file.sha256 == hashlib.sha256(large.read_bytes()).hexdigest()
        assert [d for d, _ in progress] == sorted(d for d, _ in progress)
        assert progress[-1] == (big.file.size, big.file.size) and len(progress) == 3  # 3 parts
        assert aperture.upload(large).skipped

        copy = aperture.download(big.file.id, tmp_path / "back.csv")
        assert copy.read_bytes() == large.read_bytes()


def test_wait_by_sse_and_by_polling_see_the_same_events(
    server: LiveServer, account: Account, tmp_path: Path
) -> None:
    source = csv_file(tmp_path / "in.csv", 3000)
    with Client(server.url, ApiKey(account.api_key)) as aperture:
        file_id = aperture.upload(source).file.id
        job = aperture.submit("test.slowfile", {"file_id": file_id, "seconds": 0.5})
        by_sse: list[int] = []
        done = aperture.wait(job.id, on_event=lambda e: by_sse.append(e.seq))
        by_poll: list[int] = []
        polled = aperture.wait(job.id, use_sse=False, on_event=lambda e: by_poll.append(e.seq))
    assert done.status == polled.status == "succeeded"
    assert by_sse == by_poll == sorted(set(by_sse)) and len(by_sse) >= 4


def test_run_raises_job_failed_with_the_reason(server: LiveServer, account: Account) -> None:
    with (
        Client(server.url, ApiKey(account.api_key)) as aperture,
        pytest.raises(JobFailed, match="refused on purpose") as failed,
    ):
        aperture.run("test.fail", {})
    assert failed.value.job.status == "failed" and failed.value.job.error is not None


def test_cancel_logs_and_artefacts(server: LiveServer, account: Account, tmp_path: Path) -> None:
    source = csv_file(tmp_path / "in.csv", 2000)
    with Client(server.url, ApiKey(account.api_key)) as aperture:
        file_id = aperture.upload(source).file.id
        slow = aperture.submit("test.slowfile", {"file_id": file_id, "seconds": 30})
        assert aperture.cancel(slow.id).status in ("cancelled", "cancelling")
        assert aperture.wait(slow.id, timeout=30).status == "cancelled"

        made = aperture.run("test.artefacts", {"file_id": file_id, "copies": 2})
        assert list(aperture.logs(made.id)) == ["read 2000 bytes"]
        paths = aperture.download_artefacts(made, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["copy-0.txt", "copy-1.txt", "report.txt"]  # not the input itself
    assert (tmp_path / "out" / "copy-1.txt").read_bytes() == source.read_bytes()[::-1]
    assert (tmp_path / "out" / "report.txt").read_text() == "in.csv 2000\n"


def test_the_async_client_is_the_same_client(
    server: LiveServer, account: Account, tmp_path: Path
) -> None:
    sources = [csv_file(tmp_path / f"f{i}.csv", 500 + i, seed=i) for i in range(4)]

    async def main() -> list[str]:
        async with AsyncClient(server.url, ApiKey(account.api_key)) as aperture:
            uploaded = await asyncio.gather(*(aperture.upload(p) for p in sources))
            jobs = await asyncio.gather(
                *(aperture.run("checksum", {"file_id": u.file.id}) for u in uploaded)
            )
            return [str((j.result or {})["sha256"]) for j in jobs]

    hashes = asyncio.run(main())
    assert hashes == [hashlib.sha256(p.read_bytes()).hexdigest() for p in sources]
