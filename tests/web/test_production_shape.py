"""The same app on PostgreSQL + S3 (SeaweedFS): upload, a checksum job in a worker
process, download, and a presigned URL straight from S3."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from common.objects.s3 import S3Store
from tests.support.app import make_settings, register, wait_for_job
from tests.support.s3 import S3Server, unique_bucket
from web.app import create_app


@pytest.fixture
def pg_s3_client(tmp_path: Path, postgres_url: str, s3_server: S3Server) -> Iterator[TestClient]:
    bucket = unique_bucket()
    s3_server.store(bucket).ensure_bucket()
    settings = make_settings(
        tmp_path / "data",
        database_url=postgres_url,
        object_store="s3",
        s3_endpoint_url=s3_server.endpoint,
        s3_bucket=bucket,
        s3_region=s3_server.region,
        s3_path_style=True,
        s3_access_key_id=s3_server.access_key,
        s3_secret_access_key=s3_server.secret_key,
        workers=1,
    )
    with TestClient(create_app(settings, migrate_on_start=True)) as client:
        client.headers.update(register(client))
        yield client


def test_jobs_and_files_on_postgres_and_s3(pg_s3_client: TestClient) -> None:
    client = pg_s3_client
    health = client.get("/api/v1/health").json()
    assert health["checks"]["database"]["detail"]["dialect"] == "postgresql"
    assert health["checks"]["objects"]["detail"]["kind"] == "s3"
    data = b"".join(b"%d,%s\n" % (i, os.urandom(6).hex().encode()) for i in range(140_000))
    stored = client.post("/api/v1/files", files={"file": ("x.csv", data)}).json()
    job = client.post(
        "/api/v1/jobs",
        json={"function": "checksum", "params": {"file_id": stored["id"]}, "tags": ["pg"]},
    ).json()
    done = wait_for_job(client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.get(f"/api/v1/files/{stored['id']}/download").content == data
    assert client.get("/api/v1/jobs", params={"tag": "pg"}).json()["total"] == 1
    objects: S3Store = client.app.state.aperture.runtime.objects  # type: ignore[attr-defined]
    record = client.app.state.aperture.runtime.files.get(  # type: ignore[attr-defined]
        __import__("uuid").UUID(stored["id"])
    )
    url = objects.presigned_get_url(record.key, expires_s=60)
    assert httpx.get(url).content == data
