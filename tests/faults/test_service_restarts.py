"""Services the server depends on go away and come back, with real processes:

- PostgreSQL restarted while jobs run: the server recovers by itself (no restart of
  its own), every job ends and succeeds (its final write waits out the outage), none
  stays running, and new work runs;
- SeaweedFS stopped in the middle of a multipart upload and started again: the upload
  resumes from the parts S3 kept and completes with the right bytes.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from common.records import migrate, normalise_url
from tests.faults.conftest import (
    TERMINAL,
    resume_parts_and_complete,
    sha256,
    signed_in,
    text_payload,
    wait_for,
)
from tests.support.app import LiveServer
from tests.support.s3 import SeaweedFS, s3_settings_env, unique_bucket

MIB = 1024 * 1024


class RestartablePostgres:
    """A PostgreSQL of this test's own (pgserver), so restarting it disturbs no other
    test; `restart()` is `pg_ctl restart -m fast`: every connection is cut."""

    def __init__(self, directory: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pgserver looks up XDG_RUNTIME_DIR at import
            import pgserver
            from pgserver._commands import pg_ctl

        self._pg_ctl = pg_ctl
        self.server: Any = pgserver.get_server(directory, cleanup_mode="stop")
        self.url = normalise_url(self.server.get_uri())

    def restart(self) -> None:
        self._pg_ctl(
            ["-w", "restart", "-m", "fast"],
            pgdata=self.server.pgdata,
            user=self.server.system_user,
            timeout=60,
        )

    def close(self) -> None:
        self.server.cleanup()


@pytest.fixture
def postgres() -> Iterator[RestartablePostgres]:
    with tempfile.TemporaryDirectory(prefix="aperture-pg-fault-") as directory:
        server = RestartablePostgres(Path(directory))
        try:
            yield server
        finally:
            server.close()


def _statuses(client: httpx.Client, job_ids: list[str]) -> dict[str, str]:
    return {i: client.get(f"/api/v1/jobs/{i}").json()["status"] for i in job_ids}


@pytest.mark.slow
def test_postgres_restarted_while_jobs_run(tmp_path: Path, postgres: RestartablePostgres) -> None:
    engine = create_engine(postgres.url)
    migrate(engine)
    engine.dispose()
    server = LiveServer(
        tmp_path / "data",
        env={"APERTURE_DATABASE_URL": postgres.url, "APERTURE_HEARTBEAT_TIMEOUT_S": "3"},
    ).start(workers=2)
    client = signed_in(server.url)
    try:
        jobs = [
            client.post("/api/v1/jobs", json={"function": "noop", "params": {"sleep_s": 1.0}})
            for _ in range(3)
        ]
        job_ids = [job.json()["id"] for job in jobs]
        wait_for(
            lambda: "running" in _statuses(client, job_ids).values(),
            timeout=30,
            what="a running job",
        )
        postgres.restart()  # mid-run: workers, the executor and the hub lose their connections

        final = wait_for(
            lambda: (s := _statuses(client, job_ids)) and set(s.values()) <= TERMINAL and s,
            timeout=60,
            what="every job to end",
            interval=0.5,
        )
        # The work was done; its outcome outlasted the outage (the final status write
        # waits for the database), so nothing was lost or left running.
        errors = {i: client.get(f"/api/v1/jobs/{i}").json()["error"] for i in final}
        assert set(final.values()) == {"succeeded"}, errors
        after = client.post("/api/v1/jobs", json={"function": "noop"}).json()["id"]
        wait_for(
            lambda: _statuses(client, [after])[after] == "succeeded",
            timeout=30,
            what="a job submitted after the restart",
        )
        assert client.get("/api/v1/health").json()["status"] == "ok"
    finally:
        client.close()
        server.stop()


@pytest.mark.slow
def test_seaweedfs_stopped_mid_upload(tmp_path: Path) -> None:
    (tmp_path / "weed").mkdir()
    weed = SeaweedFS(tmp_path / "weed")
    s3 = weed.start()
    bucket = unique_bucket()
    s3.store(bucket).ensure_bucket()
    payload = text_payload(11 * MIB)  # parts of 5, 5 and 1 MiB
    server = LiveServer(tmp_path / "data", env=s3_settings_env(s3, bucket)).start(workers=1)
    client = signed_in(server.url)
    try:
        plan = client.post(
            "/api/v1/files/uploads",
            json={"name": "big.txt", "size": len(payload), "sha256": sha256(payload)},
        ).json()
        part_size, urls = plan["part_size"], {p["number"]: p["url"] for p in plan["parts"]}
        assert httpx.put(urls[1], content=payload[:part_size], timeout=30).status_code == 200

        weed.stop()  # S3 is gone: the next part cannot be stored
        with pytest.raises(httpx.TransportError):
            httpx.put(urls[2], content=payload[part_size : 2 * part_size], timeout=10)
        weed.start()

        stored = client.get(f"/api/v1/files/uploads/{plan['id']}")
        assert stored.status_code == 200, stored.text
        assert [p["number"] for p in stored.json()["parts"]] == [1]
        resume_parts_and_complete(client, plan["id"], urls, payload, part_size)
    finally:
        client.close()
        server.stop()
        weed.stop()
