"""SIGKILL in the middle of a write, with real processes (`aperture serve`, its worker
processes, the directory store, SQLite):

- a worker killed while it writes a job's result file: the job is retried and succeeds;
  the half-written bytes are never an object, and every file row has its object;
- the server killed while a large upload streams a part: after a restart on the same
  data directory the upload resumes from the parts it stored, and completes with the
  right bytes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.objects.directory import DirectoryStore
from tests.faults.capabilities import result_bytes
from tests.faults.conftest import (
    FAULT_CAPABILITIES,
    TERMINAL,
    job_status,
    resume_parts_and_complete,
    sha256,
    signed_in,
    text_payload,
    wait_for,
)
from tests.support.app import LiveServer

MIB = 1024 * 1024


def _objects(data_dir: Path) -> DirectoryStore:
    return DirectoryStore(data_dir / "objects", public_url="http://unused", signing_key=b"x")


def _writer_pid(client: httpx.Client, job_id: str) -> int | None:
    for event in client.get(f"/api/v1/jobs/{job_id}/logs").json():
        message = event.get("message") or ""
        if message.startswith("writing pid="):
            return int(message.removeprefix("writing pid="))
    return None


@pytest.mark.slow
def test_a_worker_killed_mid_write_leaves_no_partial_object(tmp_path: Path) -> None:
    server = LiveServer(
        tmp_path / "data", env={"APERTURE_EXTRA_CAPABILITIES": FAULT_CAPABILITIES}
    ).start(workers=1)
    client = signed_in(server.url)
    try:
        params = {"size_kib": 4096, "chunk_kib": 256, "delay_s": 0.15}
        job = client.post("/api/v1/jobs", json={"function": "faults.slow_result", "params": params})
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        pid = wait_for(lambda: _writer_pid(client, job_id), timeout=30, what="the write to start")
        spool = tmp_path / "data" / "objects"
        wait_for(
            lambda: any(p.stat().st_size > 0 for p in spool.rglob("w-*.tmp")),
            timeout=10,
            what="bytes of the result on disk",
            interval=0.02,
        )
        os.kill(pid, signal.SIGKILL)  # mid-write: about 1 MiB of 4 written

        final = wait_for(
            lambda: (s := job_status(client, job_id)) in TERMINAL and s, timeout=60, what="the job"
        )
        record = client.get(f"/api/v1/jobs/{job_id}").json()
        assert final == "succeeded", record
        assert record["attempts"] == 2 and record["result"]["attempt_pid"] != pid

        # The retry's file is whole; the killed attempt left no file and no object.
        files = client.get("/api/v1/files", params={"limit": 500}).json()["items"]
        assert [f["id"] for f in files] == [record["result"]["file_id"]]
        download = client.get(f"/api/v1/files/{files[0]['id']}/download")
        assert download.content == result_bytes(4096)
        store = _objects(tmp_path / "data")
        stored = {info.key: info.size for info in store.iter_objects("users/")}
        rows = {f"users/{f['owner_id']}/files/{f['id']}/{f['name']}": f["size"] for f in files}
        assert stored == rows  # every row has its object, every object its row
    finally:
        client.close()
        server.stop()


def _stream_part(url: str, data: bytes, sent: threading.Event, errors: list[BaseException]) -> None:
    """PUT `data` in 256 KiB pieces; `sent` is set once half of it is out."""

    def body() -> Iterator[bytes]:
        for offset in range(0, len(data), 256 * 1024):
            if offset >= len(data) // 2:
                sent.set()
                time.sleep(0.2)
            yield data[offset : offset + 256 * 1024]

    try:
        httpx.put(url, content=body(), timeout=30)
    except httpx.HTTPError as error:  # the server died under it: expected
        errors.append(error)


@pytest.mark.slow
def test_an_upload_resumes_after_the_server_is_killed(tmp_path: Path) -> None:
    payload = text_payload(11 * MIB)  # parts of 5, 5 and 1 MiB
    server = LiveServer(tmp_path / "data").start(workers=1)
    client = signed_in(server.url)
    try:
        plan = client.post(
            "/api/v1/files/uploads",
            json={"name": "big.txt", "size": len(payload), "sha256": sha256(payload)},
        ).json()
        part_size, urls = plan["part_size"], {p["number"]: p["url"] for p in plan["parts"]}
        assert len(urls) == 3
        first = httpx.put(urls[1], content=payload[:part_size], timeout=30)
        assert first.status_code == 200, first.text

        sent, errors = threading.Event(), []  # type: ignore[var-annotated]
        second = payload[part_size : 2 * part_size]
        streaming = threading.Thread(target=_stream_part, args=(urls[2], second, sent, errors))
        streaming.start()
        assert sent.wait(timeout=30)
        server.kill()  # SIGKILL, part 2 half sent
        streaming.join(timeout=30)
        assert errors, "part 2 should have been cut off"

        server.start(workers=1)  # same data directory, same port: the URLs still work
        stored = client.get(f"/api/v1/files/uploads/{plan['id']}").json()
        assert [p["number"] for p in stored["parts"]] == [1]  # the cut part is not a part
        resume_parts_and_complete(client, plan["id"], urls, payload, part_size)
    finally:
        client.close()
        server.stop()
