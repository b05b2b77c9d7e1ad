"""Resumable multipart uploads against `aperture serve` over real HTTP, on the directory
store and on S3 (SeaweedFS): parts re-sent, a connection dropped mid-part and resumed,
verification at completion, and nothing left behind by a refused upload."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.app import LiveServer, register
from tests.support.fixtures import REAL
from tests.support.s3 import S3Server, s3_settings_env, unique_bucket

MIB = 1024 * 1024


@pytest.fixture(scope="module", params=["dir", "s3"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, httpx.Client]]:
    env = {}
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = unique_bucket()
        s3.store(bucket).ensure_bucket()
        env = s3_settings_env(s3, bucket)
    live = LiveServer(tmp_path_factory.mktemp(request.param) / "data", env=env).start()
    client = live.client()
    client.headers.update(register(client))
    try:
        yield live, client
    finally:
        client.close()
        live.stop()


def _csv(size: int, seed: int = 1) -> bytes:
    """`size` bytes of CSV text with content that differs part to part."""
    rng = __import__("random").Random(seed)
    rows = [f"{i},{rng.random():.12f},{rng.randint(0, 10**9)}\n" for i in range(size // 20 + 2)]
    return ("cell,value,count\n" + "".join(rows)).encode()[:size]


def _put(url: str, data: bytes) -> str:
    response = httpx.put(url, content=data, timeout=60)
    assert response.status_code == 200, response.text
    return response.headers["etag"]


def _drop_mid_part(url: str, data: bytes) -> None:
    """Send the headers and half the body of a PUT, then hang up."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=10) as sock:
        head = (
            f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        sock.sendall(head + data[: len(data) // 2])


def _leftovers(live: LiveServer, client: httpx.Client) -> tuple[int, int]:
    """(files listed, bytes in use) for the signed-in user."""
    usage = client.get("/api/v1/files/usage").json()
    return usage["files"], usage["bytes"]


def test_64_mib_with_a_repeated_part_and_a_dropped_connection(server) -> None:  # type: ignore[no-untyped-def]
    _, client = server
    data = _csv(64 * MIB + 12345)
    plan = client.post(
        "/api/v1/files/uploads",
        json={
            "name": "traces.csv",
            "size": len(data),
            "content_type": "text/csv",
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    ).json()
    size, parts = plan["part_size"], plan["parts"]
    assert size == 5 * MIB and len(parts) == 13 == plan["part_count"]
    chunk = {p["number"]: data[(p["number"] - 1) * size : p["number"] * size] for p in parts}
    etags = {}
    for part in parts[:6]:
        etags[part["number"]] = _put(part["url"], chunk[part["number"]])
    _put(parts[2]["url"], b"x" * (5 * MIB))  # a wrong version of part 3 ...
    # SeaweedFS keeps both copies of a re-sent part and stamps them to the second, so
    # its listing can't tell which is newer within one second (AWS S3 replaces the part).
    time.sleep(1.1)
    etags[3] = _put(parts[2]["url"], chunk[3])  # ... replaced by sending it again
    _drop_mid_part(parts[6]["url"], chunk[7])  # the connection drops in part 7
    stored = client.get(f"/api/v1/files/uploads/{plan['id']}").json()
    assert [p["number"] for p in stored["parts"]] == [1, 2, 3, 4, 5, 6]
    assert {p["number"]: p["etag"].strip('"') for p in stored["parts"]} == {
        n: e.strip('"') for n, e in etags.items()
    }
    for part in parts[6:]:  # resume from what the server says is missing
        etags[part["number"]] = _put(part["url"], chunk[part["number"]])
    done = client.post(
        f"/api/v1/files/uploads/{plan['id']}/complete",
        json={"parts": [{"number": n, "etag": etags[n]} for n in sorted(etags)]},
    )
    assert done.status_code == 201, done.text
    record = done.json()
    assert record["size"] == len(data) and record["kind"] == "table"
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with client.stream("GET", f"/api/v1/files/{record['id']}/download") as response:
        for block in response.iter_bytes():
            digest.update(block)
    assert digest.hexdigest() == record["sha256"]
    for header, expected in (
        ("bytes=0-9", data[:10]),
        ("bytes=5242870-5242889", data[5242870:5242890]),
        ("bytes=-7", data[-7:]),
        (f"bytes={len(data) - 3}-", data[-3:]),
    ):
        ranged = client.get(f"/api/v1/files/{record['id']}/download", headers={"Range": header})
        assert ranged.status_code == 206 and ranged.content == expected, header
    bad = client.get(
        f"/api/v1/files/{record['id']}/download", headers={"Range": f"bytes={len(data)}-"}
    )
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(data)}"
    cached = client.get(
        f"/api/v1/files/{record['id']}/download", headers={"If-None-Match": f'"{record["sha256"]}"'}
    )
    assert cached.status_code == 304
    for header in (f'W/"{record["sha256"]}"', "*", f'"x", W/"{record["sha256"]}"'):
        weak = client.get(
            f"/api/v1/files/{record['id']}/download", headers={"If-None-Match": header}
        )
        assert weak.status_code == 304, header
    other = client.get(f"/api/v1/files/{record['id']}/download", headers={"If-None-Match": '"x"'})
    assert other.status_code == 200 and other.content == data
    assert client.get(f"/api/v1/files/uploads/{plan['id']}").json()["status"] == "completed"


def test_a_50_gb_upload_is_planned_without_allocating(server) -> None:  # type: ignore[no-untyped-def]
    live, client = server
    size = 50 * 10**9
    before = _disk_use(live)
    plan = client.post("/api/v1/files/uploads", json={"name": "big.svs", "size": size})
    assert plan.status_code == 201, plan.text
    body = plan.json()
    assert body["part_size"] >= 5 * MIB and body["part_count"] <= 10_000
    assert body["part_size"] * body["part_count"] >= size
    assert body["part_size"] * (body["part_count"] - 1) < size
    assert len(body["parts"]) == body["part_count"]
    assert _disk_use(live) - before < MIB  # a plan, not an allocation
    assert client.delete(f"/api/v1/files/uploads/{body['id']}").status_code == 204
    too_big = client.post("/api/v1/files/uploads", json={"name": "x.svs", "size": 6 * 1024**4})
    assert too_big.status_code == 413
    assert (
        client.post("/api/v1/files/uploads", json={"name": "x.svs", "size": 0}).status_code == 422
    )


def _disk_use(live: LiveServer) -> int:
    return sum(f.stat().st_size for f in live.data_dir.rglob("*") if f.is_file())


def _start(client: httpx.Client, name: str, data: bytes, **extra: object) -> dict:
    plan = client.post("/api/v1/files/uploads", json={"name": name, "size": len(data), **extra})
    assert plan.status_code == 201, plan.text
    return plan.json()


def _refused(live, client, plan: dict, parts: list[dict], status: int, words: str) -> None:  # type: ignore[no-untyped-def]
    before = _leftovers(live, client)
    response = client.post(f"/api/v1/files/uploads/{plan['id']}/complete", json={"parts": parts})
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert _leftovers(live, client) == before


def test_completion_refuses_bad_uploads_and_keeps_nothing(server) -> None:  # type: ignore[no-untyped-def]
    live, client = server
    real = REAL
    text = _csv(1000)
    plan = _start(client, "short.csv", text + b"0" * 10)  # declares 10 bytes more
    etag = _put(plan["parts"][0]["url"], text)
    _refused(live, client, plan, [{"number": 1, "etag": etag}], 422, "declared")
    plan = _start(client, "etag.csv", text)
    _put(plan["parts"][0]["url"], text)
    _refused(live, client, plan, [{"number": 1, "etag": '"0123456789abcdef"'}], 422, "")
    plan = _start(client, "hash.csv", text, sha256="0" * 64)
    etag = _put(plan["parts"][0]["url"], text)
    _refused(live, client, plan, [{"number": 1, "etag": etag}], 422, "SHA-256")
    fake = b"this is just a text file\n" * 10
    plan = _start(client, "scan.svs", fake)
    etag = _put(plan["parts"][0]["url"], fake)
    _refused(live, client, plan, [{"number": 1, "etag": etag}], 415, "content is text")
    tiff = (real / "boxes.tiff").read_bytes()[:3000]
    plan = _start(client, "boxes.tiff", tiff)
    etag = _put(plan["parts"][0]["url"], tiff)
    _refused(live, client, plan, [{"number": 1, "etag": etag}], 415, "truncated")
    # a refused upload is over: it can't be completed again
    again = client.post(
        f"/api/v1/files/uploads/{plan['id']}/complete",
        json={"parts": [{"number": 1, "etag": etag}]},
    )
    assert again.status_code == 409


def test_parts_must_be_complete_and_in_order(server) -> None:  # type: ignore[no-untyped-def]
    _, client = server
    data = _csv(11 * MIB)
    plan = _start(client, "order.csv", data)
    etags = [
        _put(p["url"], data[(p["number"] - 1) * 5 * MIB : p["number"] * 5 * MIB])
        for p in plan["parts"]
    ]
    listed = [{"number": n + 1, "etag": e} for n, e in enumerate(etags)]
    for parts, words in (
        (listed[::-1], "ascending"),
        (listed[:2], "all 3 parts"),
        ([listed[0], listed[0], listed[1], listed[2]], "once each"),
    ):
        response = client.post(
            f"/api/v1/files/uploads/{plan['id']}/complete", json={"parts": parts}
        )
        assert response.status_code == 422 and words in response.json()["detail"]
    ok = client.post(f"/api/v1/files/uploads/{plan['id']}/complete", json={"parts": listed})
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("../evil.csv", 422),
        ("a/b.csv", 422),
        ("x" * 300 + ".csv", 422),
        ("x\x00.csv", 422),
        ("virus.exe", 415),
        ("noextension", 415),
    ],
)
def test_bad_names_are_refused_at_start(server, name: str, status: int) -> None:  # type: ignore[no-untyped-def]
    _, client = server
    response = client.post("/api/v1/files/uploads", json={"name": name, "size": 10})
    assert response.status_code == status, response.text


def test_small_uploads_are_checked_too(server) -> None:  # type: ignore[no-untyped-def]
    live, client = server
    before = _leftovers(live, client)
    real = REAL
    for name, content, status in (
        ("renamed.svs", b"plain text, not a slide\n", 415),
        ("cut.tif", (real / "boxes.tiff").read_bytes()[:3000], 415),
        ("payload.exe", b"MZ", 415),
    ):
        response = client.post("/api/v1/files", files={"file": (name, content)})
        assert response.status_code == status, (name, response.text)
    raw = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="caf\xe9.csv"'
        b"\r\n\r\na,b\r\n--B--\r\n"
    )
    non_utf8 = client.post(
        "/api/v1/files", content=raw, headers={"content-type": "multipart/form-data; boundary=B"}
    )
    assert non_utf8.status_code == 422 and "UTF-8" in non_utf8.json()["detail"]
    assert _leftovers(live, client) == before
    slide = client.post(
        "/api/v1/files", files={"file": ("small.svs", (real / "small.svs").read_bytes())}
    )
    assert slide.status_code == 201 and slide.json()["kind"] == "slide"


def test_another_user_cannot_touch_my_files_or_uploads(server) -> None:  # type: ignore[no-untyped-def]
    live, client = server
    mine = client.post("/api/v1/files", files={"file": ("mine.csv", b"a,b\n1,2\n")}).json()
    plan = _start(client, "pending.csv", b"a,b\n")
    with live.client() as other:
        other.headers.update(register(other))
        for method, path in (
            ("GET", f"/api/v1/files/{mine['id']}"),
            ("GET", f"/api/v1/files/{mine['id']}/download"),
            ("PATCH", f"/api/v1/files/{mine['id']}"),
            ("DELETE", f"/api/v1/files/{mine['id']}"),
            ("GET", f"/api/v1/files/uploads/{plan['id']}"),
            ("POST", f"/api/v1/files/uploads/{plan['id']}/complete"),
            ("DELETE", f"/api/v1/files/uploads/{plan['id']}"),
        ):
            body = (
                {"json": {"parts": [{"number": 1, "etag": "x"}]}}
                if path.endswith("complete")
                else {"json": {"name": "x.csv"}}
                if method == "PATCH"
                else {}
            )
            response = other.request(method, path, **body)
            assert response.status_code == 404, (method, path, response.text)
        listing = other.get("/api/v1/files").json()
        assert mine["id"] not in {f["id"] for f in listing["items"]}
        deleted = other.post("/api/v1/files/bulk-delete", json={"ids": [mine["id"]]}).json()
        assert deleted == {"deleted": [], "not_found": [mine["id"]]}
    assert client.get(f"/api/v1/files/{mine['id']}").status_code == 200


def test_list_rename_delete_and_usage(server) -> None:  # type: ignore[no-untyped-def]
    _, client = server
    a = client.post("/api/v1/files", files={"file": ("alpha-run.csv", b"x,y\n1,2\n")}).json()
    b = client.post("/api/v1/files", files={"file": ("beta.csv", b"x,y\n3,4\n")}).json()
    found = client.get("/api/v1/files", params={"name": "alpha", "kind": "table"}).json()
    assert [f["id"] for f in found["items"]] == [a["id"]]
    renamed = client.patch(f"/api/v1/files/{a['id']}", json={"name": "gamma.csv"}).json()
    assert renamed["name"] == "gamma.csv"
    assert client.patch(f"/api/v1/files/{a['id']}", json={"name": "../x"}).status_code == 422
    usage = client.get("/api/v1/files/usage").json()
    assert usage["by_kind"]["table"]["files"] >= 2
    bulk = client.post("/api/v1/files/bulk-delete", json={"ids": [a["id"], b["id"]]}).json()
    assert sorted(bulk["deleted"]) == sorted([a["id"], b["id"]])
    assert client.get(f"/api/v1/files/{a['id']}").status_code == 404
    after = client.get("/api/v1/files/usage").json()
    assert after["files"] == usage["files"] - 2


def test_import_from_allowed_roots_only(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    root.mkdir()
    (root / "stack.csv").write_text("t,v\n0,1\n")
    (tmp_path / "secret.csv").write_text("no,no\n")
    (root / "escape.csv").symlink_to(tmp_path / "secret.csv")
    live = LiveServer(tmp_path / "data", env={"APERTURE_IMPORT_ROOTS": f'["{root}"]'}).start(
        workers=1
    )
    try:
        with live.client() as client:
            client.headers.update(register(client))
            ok = client.post("/api/v1/files/import", json={"path": str(root / "stack.csv")})
            assert ok.status_code == 201 and ok.json()["name"] == "stack.csv"
            assert client.get(f"/api/v1/files/{ok.json()['id']}/download").text == "t,v\n0,1\n"
            for path in (
                str(tmp_path / "secret.csv"),
                str(root / "escape.csv"),
                str(root / ".." / "secret.csv"),
            ):
                refused = client.post("/api/v1/files/import", json={"path": path})
                assert refused.status_code == 403, refused.text
                assert "outside the allowed import roots" in refused.json()["detail"]
            assert client.get("/api/v1/files/usage").json()["files"] == 1
    finally:
        live.stop()
