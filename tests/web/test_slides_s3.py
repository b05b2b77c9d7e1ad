"""Slides with the S3 backend (a real SeaweedFS server), through `aperture serve`: the
metadata job and the tile service read a local copy (OpenSlide opens files by name), and
a finished pre-generated pyramid's tiles are redirects to presigned URLs."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from tests.support.app import LiveServer, register, wait_for_job
from tests.support.fixtures import REAL
from tests.support.s3 import S3Server, s3_settings_env, unique_bucket


@pytest.fixture(scope="module")
def server(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, httpx.Client]]:
    bucket = unique_bucket()
    s3_server.store(bucket).ensure_bucket()
    live = LiveServer(
        tmp_path_factory.mktemp("s3") / "data",
        env={**s3_settings_env(s3_server, bucket), "APERTURE_TILES_PYRAMID_CHECK_S": "0"},
    ).start()
    client = live.client()
    client.headers.update(register(client))
    try:
        yield live, client
    finally:
        client.close()
        live.stop()


def test_slide_on_s3_renders_and_serves_its_pyramid(
    server: tuple[LiveServer, httpx.Client],
) -> None:
    live, client = server
    stored = client.post(
        "/api/v1/files", files={"file": ("boxes.tiff", (REAL / "boxes.tiff").read_bytes())}
    ).json()
    jobs = client.get("/api/v1/jobs", params={"function": "metadata"}).json()["items"]
    job = next(j for j in jobs if j["params"]["file_id"] == stored["id"])
    assert wait_for_job(client, job["id"], timeout=60)["status"] == "succeeded"
    slide = client.get("/api/v1/slides", params={"file_id": stored["id"]}).json()["items"][0]
    assert slide["level_count"] == 4

    tile = client.get(f"/api/v1/viewer/{slide['id']}_files/9/1_0.jpeg")
    assert tile.status_code == 200
    assert Image.open(io.BytesIO(tile.content)).size == (47, 250)
    copies = list((live.data_dir / "cache" / "slides").glob("*/boxes.tiff"))
    assert [p.stat().st_size for p in copies] == [stored["size"]]

    built = client.post(
        "/api/v1/jobs",
        json={
            "function": "tiles.pyramid",
            "params": {"file_id": stored["id"], "slide_id": slide["id"]},
        },
    ).json()
    assert wait_for_job(client, built["id"], timeout=60)["status"] == "succeeded"
    redirect = client.get(f"/api/v1/viewer/{slide['id']}_files/9/1_0.jpeg")
    assert redirect.status_code == 307
    presigned = httpx.get(redirect.headers["location"], timeout=30)
    assert presigned.status_code == 200
    assert Image.open(io.BytesIO(presigned.content)).size == (47, 250)
    assert client.get(f"/api/v1/viewer/{slide['id']}_files/10/0_0.jpeg").status_code == 404
    assert client.delete(f"/api/v1/slides/{slide['id']}").status_code == 204
    assert httpx.get(redirect.headers["location"], timeout=30).status_code == 404
