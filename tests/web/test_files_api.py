"""Minimal files API: streamed multipart upload, info, download, and the directory
backend's signed URLs served by the app."""

from __future__ import annotations

import hashlib
import os
import uuid

from fastapi.testclient import TestClient


def _upload(client: TestClient, name: str, data: bytes, **form: str) -> dict:
    response = client.post("/api/v1/files", files={"file": (name, data, "text/csv")}, data=form)
    assert response.status_code == 201, response.text
    return response.json()


def test_upload_info_download_round_trip(client: TestClient) -> None:
    data = b"".join(b"%d,%s\n" % (i, os.urandom(8).hex().encode()) for i in range(150_000))
    stored = _upload(client, "stack ü.csv", data)
    assert stored["size"] == len(data) and stored["name"] == "stack ü.csv"
    assert stored["sha256"] == hashlib.sha256(data).hexdigest() and stored["kind"] == "table"
    assert client.get(f"/api/v1/files/{stored['id']}").json() == stored
    download = client.get(f"/api/v1/files/{stored['id']}/download")
    assert download.content == data
    assert download.headers["content-type"].startswith("text/csv")
    assert "filename*=UTF-8''stack%20%C3%BC.csv" in download.headers["content-disposition"]


def test_empty_file_is_fine(client: TestClient) -> None:
    stored = _upload(client, "empty.csv", b"")
    assert stored["size"] == 0
    assert client.get(f"/api/v1/files/{stored['id']}/download").content == b""


def test_bad_uploads_are_refused_without_leaving_anything(client: TestClient) -> None:
    objects = client.app.state.aperture.runtime.objects  # type: ignore[attr-defined]
    before = sum(1 for _ in objects.iter_objects("users/"))
    no_file = client.post("/api/v1/files", data={"kind": "x"}, files={"other": ("a.txt", b"x")})
    assert no_file.status_code == 422 and "no file part" in no_file.json()["detail"]
    for name in ("../evil.csv", "a/b.csv", "x" * 300 + ".csv"):
        refused = client.post("/api/v1/files", files={"file": (name, b"data")})
        assert refused.status_code == 422, name
    for raw_name in (b"nul\x00.tif", b"latin1-\xe9.tif"):  # httpx would clean these
        body = (
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="'
            + raw_name
            + b'"\r\n\r\ndata\r\n--B--\r\n'
        )
        refused = client.post(
            "/api/v1/files",
            content=body,
            headers={"content-type": "multipart/form-data; boundary=B"},
        )
        assert refused.status_code == 422, raw_name
    truncated = client.post(
        "/api/v1/files",
        content=b'--B\r\nContent-Disposition: form-data; name="file"; filename="t.csv"\r\n\r\nabc',
        headers={"content-type": "multipart/form-data; boundary=B"},
    )
    assert truncated.status_code == 422 and "ended before" in truncated.json()["detail"]
    not_form = client.post("/api/v1/files", json={"file": "x"})
    assert not_form.status_code == 415 and "multipart/form-data" in not_form.json()["detail"]
    assert sum(1 for _ in objects.iter_objects("users/")) == before


def test_unknown_file_is_404(client: TestClient) -> None:
    assert client.get(f"/api/v1/files/{uuid.uuid4()}").status_code == 404
    assert client.get(f"/api/v1/files/{uuid.uuid4()}/download").status_code == 404


def test_signed_urls_of_the_directory_store(client: TestClient) -> None:
    objects = client.app.state.aperture.runtime.objects  # type: ignore[attr-defined]
    put = objects.presigned_put_url("scratch/signed.bin", expires_s=60)
    assert client.put(put, content=b"signed bytes").status_code == 200
    get = objects.presigned_get_url("scratch/signed.bin", expires_s=60, filename="s.bin")
    response = client.get(get)
    assert response.content == b"signed bytes"
    assert 'filename="s.bin"' in response.headers["content-disposition"]
    assert client.put(get, content=b"overwrite").status_code == 403  # GET URL can't PUT
    assert client.get(get.replace("signed.bin", "other.bin")).status_code == 403
    assert client.get("/api/v1/signed/object?k=scratch/signed.bin").status_code == 403
    upload_id = objects.create_multipart("scratch/multi.bin")
    part = objects.part_url("scratch/multi.bin", upload_id, 1, expires_s=60)
    answer = client.put(part, content=b"part one")
    listed = objects.list_parts("scratch/multi.bin", upload_id)
    assert answer.status_code == 200 and answer.headers["etag"].strip('"') == listed[0].etag
    info = objects.complete_multipart("scratch/multi.bin", upload_id, [(1, answer.headers["etag"])])
    assert objects.get_bytes(info.key) == b"part one"


def test_the_storage_quota_is_checked_at_start_and_at_completion(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.support.app import make_settings, register
    from web.app import create_app

    settings = make_settings(tmp_path / "data", workers=1, storage_quota_bytes=1000)
    with TestClient(create_app(settings), raise_server_exceptions=False) as quota_client:
        quota_client.headers.update(register(quota_client))
        first = quota_client.post("/api/v1/files", files={"file": ("a.csv", b"x," * 300)})
        assert first.status_code == 201
        planned = quota_client.post("/api/v1/files/uploads", json={"name": "b.csv", "size": 500})
        assert planned.status_code == 413 and "quota" in planned.json()["detail"]
        small = quota_client.post("/api/v1/files/uploads", json={"name": "c.csv", "size": 300})
        assert small.status_code == 201
        # the quota is used up meanwhile: completion checks again
        assert (
            quota_client.post("/api/v1/files", files={"file": ("d.csv", b"y," * 150)}).status_code
            == 201
        )
        part = small.json()["parts"][0]["url"]
        etag = quota_client.put(part[part.index("/api/") :], content=b"z," * 150).headers["etag"]
        done = quota_client.post(
            f"/api/v1/files/uploads/{small.json()['id']}/complete",
            json={"parts": [{"number": 1, "etag": etag}]},
        )
        assert done.status_code == 413
        over = quota_client.post("/api/v1/files", files={"file": ("e.csv", b"w," * 100)})
        assert over.status_code == 413
        assert quota_client.get("/api/v1/files/usage").json() == {
            "bytes": 900,
            "files": 2,
            "by_kind": {"table": {"bytes": 900, "files": 2}},
            "by_owner": None,
        }
