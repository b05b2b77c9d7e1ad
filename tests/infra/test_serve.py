"""`aperture serve` as processes: one owner of the data directory, several web processes
sharing one executor, and a public URL that follows the port."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import httpx
import jwt
import pytest

from infra.serve import public_url_for
from tests.support.app import LiveServer, free_port, register, wait_for_job

MIB = 1024 * 1024


def test_a_second_server_on_the_same_data_directory_is_refused(tmp_path: Path) -> None:
    """The second server exits at once with one line, before it touches anything: it
    binds no port and recovers nothing, so the first server's running job runs on."""
    first = LiveServer(tmp_path / "data").start(workers=1)
    try:
        with first.client() as client:
            client.headers.update(register(client))
            job = client.post("/api/v1/jobs", json={"function": "noop", "params": {"sleep_s": 3}})
            job_id = job.json()["id"]
            wait_for_job(client, job_id, statuses={"running"})
            second = LiveServer(tmp_path / "data")
            refused = subprocess.run(
                second.command(workers=1),
                cwd=second.repo,
                env=second.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert refused.returncode == 1
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1, refused.stderr
            assert "is in use by another aperture server" in lines[0]
            assert f"pid {first.process.pid}" in lines[0]  # type: ignore[union-attr]
            with pytest.raises(httpx.ConnectError):
                httpx.get(second.url + "/api/v1/health", timeout=2)
            done = wait_for_job(client, job_id)
            assert done["status"] == "succeeded", done["error"]
    finally:
        first.stop()


def test_web_processes_share_one_executor(tmp_path: Path) -> None:
    """With two web processes, jobs submitted through either run on the serve process's
    one pool, and every process reports that pool's health."""
    server = LiveServer(tmp_path / "data").start(workers=2, web_workers=2)
    try:
        with server.client() as client:
            headers = register(client)
        for _ in range(8):  # new connections: the kernel spreads them over the processes
            with server.client() as fresh:
                fresh.headers.update(headers)
                detail = fresh.get("/api/v1/health").json()["checks"]["executor"]["detail"]
                assert detail["workers"] >= 2 and detail["supervisor"] == "serve process"
                job = fresh.post("/api/v1/jobs", json={"function": "noop"}).json()
                assert wait_for_job(fresh, job["id"])["status"] == "succeeded"
    finally:
        server.stop()
    log = server.log.read_text()
    assert log.count("Application startup complete") == 2
    assert log.count("Application shutdown complete") == 2  # SIGTERM: both stopped cleanly


def test_the_public_url_follows_the_port(tmp_path: Path) -> None:
    """Without APERTURE_PUBLIC_URL the server hands out part URLs and signs tokens for
    the port it serves on, the URLs work, and the start-up log names it."""
    port = free_port()
    server = LiveServer(tmp_path / "data", port=port, public_url=False).start(workers=1)
    expected = f"http://127.0.0.1:{port}"
    try:
        with server.client() as client:
            headers = register(client)
            client.headers.update(headers)
            claims = jwt.decode(
                headers["Authorization"].removeprefix("Bearer "),
                options={"verify_signature": False},
            )
            assert claims["iss"] == f"{expected}/auth/v1"
            body = b"a,b\n" + b"1,2\n" * (2 * MIB)  # parts of 5 MiB and 3 MiB
            plan = client.post(
                "/api/v1/files/uploads", json={"name": "t.csv", "size": len(body)}
            ).json()
            assert plan["part_count"] == 2
            parts = []
            for part in plan["parts"]:
                assert part["url"].startswith(f"{expected}/api/v1/signed/part?"), part["url"]
                start = (part["number"] - 1) * plan["part_size"]
                sent = httpx.put(part["url"], content=body[start : start + plan["part_size"]])
                assert sent.status_code == 200, sent.text
                parts.append({"number": part["number"], "etag": sent.headers["etag"].strip('"')})
            done = client.post(
                f"/api/v1/files/uploads/{plan['id']}/complete", json={"parts": parts}
            )
            assert done.status_code == 201, done.text
            assert done.json()["size"] == len(body)
    finally:
        server.stop()
    assert f"aperture serving at {expected}" in server.log.read_text()


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 9000, "http://127.0.0.1:9000"),
        ("::1", 9001, "http://[::1]:9001"),
        ("lab-server.local", 80, "http://lab-server.local:80"),
    ],
)
def test_public_url_for_an_address(host: str, port: int, url: str) -> None:
    assert public_url_for(host, port) == url


def test_public_url_for_a_wildcard_address_names_the_machine() -> None:
    import socket

    assert public_url_for("0.0.0.0", 8000) == f"http://{socket.gethostname()}:8000"


def test_the_doorbell_carries_submissions_and_cancels() -> None:
    from common.executors.link import (
        CANCEL,
        SUBMIT,
        StatusBoard,
        SupervisorLink,
        doorbell,
        read_doorbell,
    )

    receiver, ringer = doorbell()
    board = StatusBoard()
    link = SupervisorLink(ringer, board)
    try:
        assert read_doorbell(receiver) == []
        job_id = uuid.uuid4()
        link.submit(job_id)
        link.cancel("local:abc:" + str(job_id))
        assert read_doorbell(receiver) == [
            (SUBMIT, job_id.bytes),
            (CANCEL, f"local:abc:{job_id}".encode()),
        ]
        assert link.health()["ok"] is False  # nothing published: no supervisor yet
        board.publish(ok=True, workers=3, busy=1, queued=0)
        assert link.health() | {"supervisor": ""} == {
            "executor": "local",
            "ok": True,
            "workers": 3,
            "busy": 1,
            "queued": 0,
            "supervisor": "",
        }
    finally:
        link.stop()
        receiver.close()
