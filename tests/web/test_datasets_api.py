"""Datasets API: CRUD, listing with filters and pages, adding and removing files (only the
owner's live files), stats with the jobs run on a dataset, ownership and audit."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from common.records import File, Job, transaction
from common.records.types import utcnow
from tests.support.app import make_admin, register, signed_in

API = "/api/v1/datasets"


@pytest.fixture(scope="module")
def other(app_client: TestClient) -> TestClient:
    return signed_in(app_client, register(app_client))


def _runtime(client: TestClient) -> Any:
    return client.app.state.aperture.runtime  # type: ignore[attr-defined]


def _me(client: TestClient) -> str:
    return str(client.get("/api/v1/auth/me").json()["id"])


def _upload(client: TestClient, name: str, data: bytes, kind: str | None = None) -> str:
    response = client.post("/api/v1/files", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    file_id = str(response.json()["id"])
    # Kinds are set here, not sniffed from content: the stats only count them.
    with transaction(_runtime(client).db) as session:
        session.execute(update(File).where(File.id == uuid.UUID(file_id)).values(kind=kind))
    return file_id


def _create(client: TestClient, name: str, **body: Any) -> dict[str, Any]:
    response = client.post(API, json={"name": name, **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _soft_delete(client: TestClient, file_id: str) -> None:
    with transaction(_runtime(client).db) as session:
        session.execute(
            update(File).where(File.id == uuid.UUID(file_id)).values(deleted_at=utcnow())
        )


def _add_job(client: TestClient, owner: str, status: str, **params: Any) -> None:
    now = utcnow()
    with transaction(_runtime(client).db) as session:
        session.add(
            Job(
                id=uuid.uuid4(),
                owner_id=uuid.UUID(owner),
                function="checksum",
                params=params,
                status=status,
                executor="test",
                tags=[],
                created_at=now,
                updated_at=now,
            )
        )


def _audit(client: TestClient, dataset_id: str) -> list[str]:
    events = client.get("/api/v1/events", params={"limit": 500}).json()["items"]
    return [e["action"] for e in events if e["target_id"] == dataset_id]


def test_create_read_update_delete(client: TestClient) -> None:
    created = _create(client, "Run 1", description="time-lapse", tags=["hela", "hela", "gfp"])
    assert created["tags"] == ["hela", "gfp"] and created["file_count"] == 0
    assert client.get(f"{API}/{created['id']}").json() == created
    patched = client.patch(f"{API}/{created['id']}", json={"description": None, "tags": ["x"]})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name"], body["description"], body["tags"]) == ("Run 1", None, ["x"])
    assert body["updated_at"] >= created["updated_at"]
    assert client.patch(f"{API}/{created['id']}", json={"name": None}).status_code == 422
    assert client.patch(f"{API}/{created['id']}", json={"owner_id": None}).status_code == 422
    assert client.delete(f"{API}/{created['id']}").status_code == 204
    assert client.get(f"{API}/{created['id']}").status_code == 404
    assert client.delete(f"{API}/{created['id']}").status_code == 404
    assert _audit(client, created["id"]) == [
        "dataset.deleted",
        "dataset.updated",
        "dataset.created",
    ]


def test_bad_bodies_are_refused(client: TestClient) -> None:
    assert client.post(API, json={}).status_code == 422
    assert client.post(API, json={"name": ""}).status_code == 422
    assert client.post(API, json={"name": "x", "tags": [""]}).status_code == 422
    assert client.post(API, json={"name": "x", "extra": 1}).status_code == 422
    assert client.get(f"{API}/not-a-uuid").status_code == 422


def test_list_filters_and_pages(client: TestClient) -> None:
    marker = uuid.uuid4().hex[:8]
    for i in range(5):
        _create(client, f"{marker} Plate {i}", tags=["odd" if i % 2 else "even", marker])
    page = client.get(API, params={"name": f"{marker} plate", "limit": 2, "offset": 1}).json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    assert [d["name"] for d in page["items"]] == [f"{marker} Plate 3", f"{marker} Plate 2"]
    odd = client.get(API, params={"tag": marker}).json()["total"]
    assert odd == 5
    tagged = client.get(API, params={"name": marker, "tag": "odd"}).json()
    assert sorted(d["name"] for d in tagged["items"]) == [f"{marker} Plate 1", f"{marker} Plate 3"]
    # LIKE wildcards in the filter are plain characters.
    assert client.get(API, params={"name": f"{marker}%"}).json()["total"] == 0
    assert client.get(API, params={"limit": 0}).status_code == 422


def test_add_and_remove_files(client: TestClient, other: TestClient) -> None:
    dataset = _create(client, "with files")
    first = _upload(client, "a.txt", b"a" * 10, kind="tiff")
    second = _upload(client, "b.txt", b"b" * 5)
    theirs = _upload(other, "theirs.txt", b"t")
    url = f"{API}/{dataset['id']}/files"

    # Another user's file, a missing file or a deleted one: 404, and nothing changes.
    for bad in (theirs, str(uuid.uuid4())):
        refused = client.post(url, json={"file_ids": [first, bad]})
        assert refused.status_code == 404, refused.text
    assert client.get(f"{API}/{dataset['id']}").json()["file_count"] == 0
    assert client.post(url, json={"file_ids": []}).status_code == 422

    added = client.post(url, json={"file_ids": [first, second, first]})
    assert added.status_code == 200, added.text
    assert (added.json()["file_count"], added.json()["bytes"]) == (2, 15)
    listed = client.get(url).json()
    assert {f["id"] for f in listed["items"]} == {first, second} and listed["total"] == 2

    removed = client.delete(f"{url}/{second}")
    assert removed.status_code == 200 and removed.json()["file_count"] == 1
    assert client.delete(f"{url}/{second}").status_code == 200  # not in it: idempotent
    assert client.delete(f"{url}/{theirs}").status_code == 404
    assert client.get(f"/api/v1/files/{second}").status_code == 200  # the file stays

    # Adding to another dataset moves the file; deleting a dataset keeps its files.
    moved_to = _create(client, "second home")
    client.post(f"{API}/{moved_to['id']}/files", json={"file_ids": [first]})
    assert client.get(f"{API}/{dataset['id']}").json()["file_count"] == 0
    assert client.delete(f"{API}/{moved_to['id']}").status_code == 204
    assert client.get(f"/api/v1/files/{first}").status_code == 200


def test_deleted_files_are_invisible(client: TestClient) -> None:
    dataset = _create(client, "soft deletes")
    kept, gone = _upload(client, "kept.txt", b"k" * 3), _upload(client, "gone.txt", b"g" * 7)
    url = f"{API}/{dataset['id']}/files"
    assert client.post(url, json={"file_ids": [kept, gone]}).status_code == 200
    _soft_delete(client, gone)
    body = client.get(f"{API}/{dataset['id']}").json()
    assert (body["file_count"], body["bytes"]) == (1, 3)
    assert [f["id"] for f in client.get(url).json()["items"]] == [kept]
    assert client.post(url, json={"file_ids": [gone]}).status_code == 404
    assert client.delete(f"{url}/{gone}").status_code == 404


def test_stats_count_files_kinds_and_jobs(client: TestClient, other: TestClient) -> None:
    me, them = _me(client), _me(other)
    dataset = _create(client, f"stats {uuid.uuid4().hex[:8]}")
    files = [
        _upload(client, "a.txt", b"1" * 4, kind="tiff"),
        _upload(client, "b.txt", b"2" * 6, kind="tiff"),
        _upload(client, "c.txt", b"3"),
    ]
    outside = _upload(client, "outside.txt", b"x")
    client.post(f"{API}/{dataset['id']}/files", json={"file_ids": files})
    _add_job(client, me, "succeeded", file_id=files[0])
    _add_job(client, me, "succeeded", file_ids=[outside, files[2]])
    _add_job(client, me, "failed", dataset_id=dataset["id"])
    _add_job(client, me, "succeeded", file_id=outside)  # not on the dataset
    _add_job(client, them, "succeeded", dataset_id=dataset["id"])  # not the owner's

    page = client.get(f"{API}/stats", params={"name": dataset["name"]}).json()
    assert page["total"] == 1
    stats = page["items"][0]
    assert stats["dataset_id"] == dataset["id"]
    assert (stats["file_count"], stats["bytes"]) == (3, 11)
    assert stats["kinds"] == {"tiff": 2, "": 1}
    assert stats["jobs"] == 3
    assert stats["jobs_by_status"]["succeeded"] == 2
    assert stats["jobs_by_status"]["failed"] == 1
    assert stats["jobs_by_status"]["queued"] == 0


def test_others_datasets_are_404_and_admins_see_all(
    app_client: TestClient, client: TestClient, other: TestClient
) -> None:
    mine = _create(client, f"private {uuid.uuid4().hex[:8]}")
    url = f"{API}/{mine['id']}"
    assert other.get(url).status_code == 404
    assert other.patch(url, json={"name": "mine now"}).status_code == 404
    assert other.delete(url).status_code == 404
    assert other.post(f"{url}/files", json={"file_ids": [str(uuid.uuid4())]}).status_code == 404
    assert other.get(API, params={"name": mine["name"]}).json()["total"] == 0
    assert other.get(f"{API}/stats", params={"name": mine["name"]}).json()["total"] == 0

    admin = signed_in(app_client, make_admin(app_client))
    assert admin.get(url).status_code == 200
    assert admin.get(API, params={"name": mine["name"]}).json()["total"] == 1
    # An admin adding files adds the owner's files, never someone else's.
    owners_file = _upload(client, "owner.txt", b"o")
    admins_file = _upload(admin, "admin.txt", b"a")
    assert admin.post(f"{url}/files", json={"file_ids": [admins_file]}).status_code == 404
    assert admin.post(f"{url}/files", json={"file_ids": [owners_file]}).status_code == 200
    assert client.get(url).json()["file_count"] == 1
