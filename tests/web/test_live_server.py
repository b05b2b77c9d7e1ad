"""`aperture serve` in its own process over real HTTP: 200 concurrent submissions, a
worker that dies, and a server killed while jobs run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.support.app import TERMINAL, LiveServer, register, wait_for_job

N_JOBS = 200


async def _submit_all(url: str, n: int, headers: dict[str, str]) -> list[dict]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(
        base_url=url, timeout=60, limits=limits, headers=headers
    ) as client:
        responses = await asyncio.gather(
            *[
                client.post(
                    "/api/v1/jobs", json={"function": "noop", "tags": ["burst"], "name": f"job-{i}"}
                )
                for i in range(n)
            ]
        )
    assert all(r.status_code == 202 for r in responses), {r.status_code for r in responses}
    return [r.json() for r in responses]


def _wait_all_terminal(client: httpx.Client, tag: str, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        stats = client.get("/api/v1/jobs/stats", params={"tag": tag}).json()
        if sum(stats["by_status"][s] for s in TERMINAL) == total:
            return
        assert time.monotonic() < deadline, stats
        time.sleep(0.25)


def test_200_concurrent_submissions_all_finish_with_consistent_events(
    live_server: LiveServer,
) -> None:
    with live_server.client() as client:
        client.headers.update(register(client))
        jobs = asyncio.run(_submit_all(live_server.url, N_JOBS, dict(client.headers)))
        assert len({j["id"] for j in jobs}) == N_JOBS
        _wait_all_terminal(client, "burst", N_JOBS, timeout=240)
        stats = client.get("/api/v1/jobs/stats", params={"tag": "burst"}).json()
        assert stats["total"] == N_JOBS and stats["by_status"]["succeeded"] == N_JOBS
        page = client.get("/api/v1/jobs", params={"tag": "burst", "limit": 500}).json()
        assert page["total"] == N_JOBS
        for job in page["items"][:: max(1, N_JOBS // 40)]:
            events = client.get(f"/api/v1/jobs/{job['id']}/logs").json()
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert [e["status"] for e in events if e["kind"] == "status"] == [
                "queued",
                "running",
                "succeeded",
            ]


def test_a_dying_worker_fails_its_job_and_the_server_keeps_serving(
    live_server: LiveServer,
) -> None:
    with live_server.client() as client:
        client.headers.update(register(client))
        crashed = client.post("/api/v1/jobs", json={"function": "test.exit"}).json()
        failed = wait_for_job(client, crashed["id"])
        assert failed["status"] == "failed"
        assert "worker process died (exited with code 3)" in failed["error"]["message"]
        assert client.get("/api/v1/health").json()["status"] == "ok"
        after = client.post("/api/v1/jobs", json={"function": "noop"}).json()
        assert wait_for_job(client, after["id"])["status"] == "succeeded"


def test_jobs_end_terminal_after_the_server_is_killed_and_restarted(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = LiveServer(data_dir).start(workers=2)
    with server.client() as client:
        headers = register(client)
        client.headers.update(headers)
        ids = [
            client.post("/api/v1/jobs", json={"function": "noop", "params": {"sleep_s": 3}}).json()[
                "id"
            ]
            for _ in range(5)
        ]
        deadline = time.monotonic() + 30
        while client.get("/api/v1/jobs", params={"status": "running"}).json()["total"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    server.kill()
    restarted = LiveServer(data_dir, port=server.port).start(workers=2)  # same URL
    try:
        with restarted.client() as client:
            client.headers.update(headers)  # tokens are signed with the data dir's key
            finals = [wait_for_job(client, job_id, timeout=60) for job_id in ids]
        statuses = [job["status"] for job in finals]
        assert statuses.count("failed") == 2, statuses  # the two that were running
        assert statuses.count("succeeded") == 3, statuses  # the queued ones ran later
        lost = [job for job in finals if job["status"] == "failed"]
        assert all("server stopped" in job["error"]["message"] for job in lost)
    finally:
        restarted.stop()
