"""The directory store's disk fills up (a 16 MiB tmpfs under the objects directory of a
real `aperture serve`): uploads get a 507 problem, what was already stored stays whole,
no half-written bytes stay behind, and aborting an upload gives its space back.

Mounting needs root (the suite runs as root here and in CI); elsewhere the test is
skipped and says why.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.conftest import sha256, signed_in, text_payload
from tests.support.app import LiveServer

MIB = 1024 * 1024
DISK = 16 * MIB
#: What the store's own bookkeeping may hold after a refused write (sidecars, records).
SLACK = 256 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "objects"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK // MIB}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _used(mount: Path) -> int:
    return shutil.disk_usage(mount).used


def _assert_insufficient_storage(response: httpx.Response) -> None:
    assert response.status_code == 507, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:aperture:problem:insufficient-storage"
    assert "full" in body["detail"]


@pytest.mark.slow
def test_a_full_disk_is_507_and_corrupts_nothing(tmp_path: Path, small_disk: Path) -> None:
    server = LiveServer(tmp_path / "data", env={"APERTURE_OBJECTS_DIR": str(small_disk)})
    server.start(workers=1)
    client = signed_in(server.url)
    try:
        kept = text_payload(MIB)
        first = client.post("/api/v1/files", files={"file": ("kept.txt", kept)})
        assert first.status_code == 201, first.text
        baseline = _used(small_disk)

        # One request larger than the disk: refused, and its spool file is gone.
        too_big = text_payload(DISK)
        _assert_insufficient_storage(
            client.post("/api/v1/files", files={"file": ("big.txt", too_big)})
        )
        assert _used(small_disk) <= baseline + SLACK

        # A multipart upload fills the disk part by part; aborting it frees the space.
        payload = text_payload(20 * MIB)
        plan = client.post(
            "/api/v1/files/uploads", json={"name": "parts.txt", "size": len(payload)}
        ).json()
        part_size = plan["part_size"]
        answers = [
            httpx.put(
                part["url"],
                content=payload[(part["number"] - 1) * part_size : part["number"] * part_size],
                timeout=30,
            )
            for part in plan["parts"]
        ]
        assert answers[0].status_code == 200
        refused = [a for a in answers if a.status_code != 200]
        assert refused, "the parts should not all fit"
        _assert_insufficient_storage(refused[0])
        assert _used(small_disk) > baseline + 5 * MIB  # the stored parts hold space
        assert client.delete(f"/api/v1/files/uploads/{plan['id']}").status_code == 204
        assert _used(small_disk) <= baseline + SLACK

        # Nothing corrupt: the earlier file is whole, and it is the only one.
        files = client.get("/api/v1/files").json()["items"]
        assert [f["name"] for f in files] == ["kept.txt"] and files[0]["sha256"] == sha256(kept)
        assert client.get(f"/api/v1/files/{files[0]['id']}/download").content == kept
        # And with the space back, uploads work again.
        again = client.post("/api/v1/files", files={"file": ("again.txt", text_payload(MIB))})
        assert again.status_code == 201, again.text
    finally:
        client.close()
        server.stop()
