"""What the fault tests share: a signed-in user of a live server, waiting for jobs, and
plain-text payloads the upload checks accept."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import httpx

from tests.support.app import PASSWORD

FAULT_CAPABILITIES = '["tests.faults.capabilities"]'
TERMINAL = {"succeeded", "failed", "cancelled"}


def signed_in(url: str) -> httpx.Client:
    """A client of the server at `url`, signed in as a new user (bearer token)."""
    client = httpx.Client(base_url=url, timeout=30)
    email = f"faults-{uuid.uuid4().hex[:8]}@example.org"
    client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    client.cookies.clear()
    client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    return client


def wait_for(predicate: Any, *, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `predicate()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except httpx.TransportError:  # the server is between lives
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def job_status(client: httpx.Client, job_id: str) -> str:
    return str(client.get(f"/api/v1/jobs/{job_id}").json()["status"])


def text_payload(size: int) -> bytes:
    """`size` bytes of plain text (numbered lines), so a .txt upload passes its checks."""
    lines = b"".join(
        b"line %09d of the fault-test payload, plain ASCII text.\n" % i
        for i in range(size // 48 + 1)
    )
    return lines[:size]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resume_parts_and_complete(
    client: httpx.Client, upload_id: str, urls: dict[int, str], payload: bytes, part_size: int
) -> None:
    """After a fault that left only part 1 stored: send parts 2 and 3 again, complete, and
    check the stored file is the payload, byte for byte."""
    for number in (2, 3):
        chunk = payload[(number - 1) * part_size : number * part_size]
        assert httpx.put(urls[number], content=chunk, timeout=30).status_code == 200
    parts = client.get(f"/api/v1/files/uploads/{upload_id}").json()["parts"]
    done = client.post(
        f"/api/v1/files/uploads/{upload_id}/complete",
        json={"parts": [{"number": p["number"], "etag": p["etag"]} for p in parts]},
    )
    assert done.status_code == 201, done.text
    assert done.json()["sha256"] == sha256(payload)
    download = client.get(f"/api/v1/files/{done.json()['id']}/download", follow_redirects=True)
    assert download.content == payload
