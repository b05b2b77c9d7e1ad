"""Slides through the real app: upload, the `metadata` job makes the record, then
properties, thumbnails, associated images and Deep Zoom, checked against OpenSlide."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import fromstring

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.app import register, signed_in, wait_for_job
from tests.support.fixtures import REAL

API = "/api/v1"


def upload(client: TestClient, name: str, data: bytes | None = None) -> dict[str, Any]:
    response = client.post(
        f"{API}/files", files={"file": (name, data or (REAL / name).read_bytes())}
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def metadata_job(client: TestClient, file_id: str) -> dict[str, Any]:
    """The file's `metadata` job (the upload of a slide submits it), finished."""
    jobs = client.get(f"{API}/jobs", params={"function": "metadata", "limit": 500}).json()
    job = next((j for j in jobs["items"] if j["params"].get("file_id") == file_id), None)
    assert job is not None, "uploading a slide must submit its metadata job"
    return wait_for_job(client, job["id"], timeout=60)


def slide_of(client: TestClient, file_id: str) -> dict[str, Any]:
    job = metadata_job(client, file_id)
    assert job["status"] == "succeeded", job
    listed = client.get(f"{API}/slides", params={"file_id": file_id}).json()
    assert listed["total"] == 1, listed
    return listed["items"][0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def slides(client: TestClient) -> dict[str, dict[str, Any]]:
    files = {name: upload(client, name) for name in ("boxes.tiff", "small.svs")}
    return {name: slide_of(client, f["id"]) for name, f in files.items()}


def osr(name: str) -> Any:
    import openslide

    return openslide.OpenSlide(str(REAL / name))


def decode(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


def test_metadata_job_records_the_slide(
    slides: dict[str, dict[str, Any]], client: TestClient
) -> None:
    me = client.get(f"{API}/auth/me").json()
    for name, slide in slides.items():
        reference = osr(name)
        assert slide["name"] == name and slide["owner_id"] == me["id"]
        assert slide["dataset_id"] is None and slide["prediction_count"] == 0
        assert slide["vendor"] == reference.properties["openslide.vendor"]
        assert (slide["width"], slide["height"]) == reference.dimensions
        assert slide["level_count"] == reference.level_count
        assert [(lv["width"], lv["height"]) for lv in slide["levels"]] == list(
            reference.level_dimensions
        )
        assert [lv["downsample"] for lv in slide["levels"]] == pytest.approx(
            list(reference.level_downsamples)
        )
        assert slide["tile_width"] == int(reference.properties["openslide.level[0].tile-width"])
        assert slide["properties"] == dict(reference.properties)
        assert [a["name"] for a in slide["associated"]] == list(reference.associated_images)
    boxes, small = slides["boxes.tiff"], slides["small.svs"]
    assert boxes["vendor"] == "generic-tiff" and boxes["level_count"] == 4
    assert small["vendor"] == "aperio" and small["objective_power"] == 20
    assert small["associated"] == [{"name": "thumbnail", "width": 16, "height": 16}]
    assert client.get(f"{API}/slides/{boxes['id']}").json() == boxes


def test_list_filters_and_pages(slides: dict[str, dict[str, Any]], client: TestClient) -> None:
    page = client.get(f"{API}/slides", params={"limit": 1}).json()
    assert page["total"] >= 2 and len(page["items"]) == 1
    assert {"id", "file_id"} <= set(page["items"][0])
    named = client.get(f"{API}/slides", params={"name": "BOXES"}).json()
    assert [s["id"] for s in named["items"]] == [slides["boxes.tiff"]["id"]]
    aperio = client.get(f"{API}/slides", params={"vendor": "aperio"}).json()
    assert slides["small.svs"]["id"] in [s["id"] for s in aperio["items"]]
    assert client.get(f"{API}/slides", params={"limit": 0}).status_code == 422


def test_properties_thumbnail_and_associated(
    slides: dict[str, dict[str, Any]], client: TestClient
) -> None:
    boxes, small = slides["boxes.tiff"]["id"], slides["small.svs"]["id"]
    props = client.get(f"{API}/slides/{small}/properties").json()
    assert props["aperio.AppMag"] == "20" and props["openslide.vendor"] == "aperio"
    for size in (512, 100):
        response = client.get(f"{API}/slides/{boxes}/thumbnail", params={"max": size})
        assert response.headers["content-type"] == "image/jpeg"
        image = decode(response.content)
        assert max(image.size) <= size and image.size == ((300, 250) if size == 512 else (100, 83))
    assert client.get(f"{API}/slides/{boxes}/thumbnail", params={"max": 0}).status_code == 422
    response = client.get(f"{API}/slides/{small}/associated/thumbnail")
    assert response.headers["content-type"] == "image/png"
    assert decode(response.content).size == (16, 16)
    missing = client.get(f"{API}/slides/{small}/associated/label")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_deep_zoom_matches_openslide(slides: dict[str, dict[str, Any]], client: TestClient) -> None:
    from openslide.deepzoom import DeepZoomGenerator

    slide_id = slides["boxes.tiff"]["id"]
    dz = DeepZoomGenerator(osr("boxes.tiff"), tile_size=254, overlap=1, limit_bounds=False)
    assert dz.level_count == 10 and dz.tile_count == 11
    xml = client.get(f"{API}/viewer/{slide_id}.dzi")
    assert xml.headers["content-type"].startswith("application/xml")
    ours, theirs = fromstring(xml.text), fromstring(dz.get_dzi("jpeg"))
    assert ours.attrib == theirs.attrib
    assert [e.attrib for e in ours] == [e.attrib for e in theirs]
    body = client.get(
        f"{API}/viewer/{slide_id}.dzi", headers={"Accept": "application/json"}
    ).json()["Image"]
    assert body["Size"] == {"Width": "300", "Height": "250"} and body["TileSize"] == "254"
    assert body["Url"] == f"{API}/viewer/{slide_id}_files/"
    fetched = 0
    for level in range(dz.level_count):
        cols, rows = dz.level_tiles[level]
        for col in range(cols):
            for row in range(rows):
                for fmt in ("jpeg", "png"):
                    response = client.get(
                        f"{API}/viewer/{slide_id}_files/{level}/{col}_{row}.{fmt}"
                    )
                    assert response.status_code == 200, response.text
                    assert response.headers["content-type"] == f"image/{fmt}"
                    # behind sign-in: the user's browser keeps it, no shared cache
                    cache_control = response.headers["cache-control"]
                    assert cache_control == "private, max-age=31536000, immutable"
                    # get_tile's size, which can be a pixel under get_tile_dimensions'
                    size = decode(response.content).size
                    assert size == dz.get_tile(level, (col, row)).size
                fetched += 1
    assert fetched == dz.tile_count


def test_etag_gives_304(slides: dict[str, dict[str, Any]], client: TestClient) -> None:
    url = f"{API}/viewer/{slides['boxes.tiff']['id']}_files/9/0_0.jpeg"
    first = client.get(url)
    etag = first.headers["etag"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    for header in (f'"other", W/{etag}', "*"):  # RFC 9110: weak comparison, any tag
        assert client.get(url, headers={"If-None-Match": header}).status_code == 304, header
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("{id}_files/10/0_0.jpeg", 404),  # level out of range
        ("{id}_files/9/2_0.jpeg", 404),  # tile out of range
        ("{id}_files/8/0_1.jpeg", 404),
        ("{id}_files/-1/0_0.jpeg", 404),
        ("{id}_files/9/0_0.gif", 404),  # bad format
        ("{id}_files/x/0_0.jpeg", 404),
        ("{unknown}.dzi", 404),  # unknown slide
        ("{unknown}_files/0/0_0.jpeg", 404),
        ("not-a-uuid.dzi", 404),
    ],
)
def test_bad_tile_requests(
    slides: dict[str, dict[str, Any]], client: TestClient, path: str, status: int
) -> None:
    url = f"{API}/viewer/" + path.format(id=slides["boxes.tiff"]["id"], unknown=uuid.uuid4())
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("name", ["unreadable.svs", "unopenable.tiff"])
def test_unreadable_file_fails_its_metadata_job(client: TestClient, name: str) -> None:
    response = client.post(f"{API}/files", files={"file": (name, (REAL / name).read_bytes())})
    if response.status_code != 201:  # refused at upload: a clear 4xx, nothing stored
        assert 400 <= response.status_code < 500 and response.json()["detail"]
        return
    file_id = response.json()["id"]
    if response.json()["kind"] == "slide":
        job = metadata_job(client, file_id)
    else:  # not sniffed as a slide (unopenable.tiff): the user asks for its metadata
        submitted = client.post(
            f"{API}/jobs", json={"function": "metadata", "params": {"file_id": file_id}}
        )
        job = wait_for_job(client, submitted.json()["id"], timeout=60)
    assert job["status"] == "failed"
    assert job["error"]["type"] == "unsupported-file"
    assert name in job["error"]["message"], job["error"]
    assert client.get(f"{API}/slides", params={"file_id": file_id}).json()["total"] == 0
    assert client.get(f"{API}/health").status_code == 200


def test_the_file_says_where_its_slide_is(client: TestClient) -> None:
    """The upload answer names the metadata job; GET /files/{id} shows the slide as
    pending, then ready with its id, or failed with the reason. A TIFF whose codec
    cannot be decoded, or an empty one, is refused at upload with a clear 415."""
    broken = upload(client, "unreadable.svs")
    good = upload(client, "small.svs")
    for body in (broken, good):
        assert body["metadata_job_id"] and body["slide"]["status"] in {"pending", "ready"}
        assert body["details"] is None
    assert metadata_job(client, broken["id"])["id"] == broken["metadata_job_id"]
    failed = client.get(f"{API}/files/{broken['id']}").json()["slide"]
    assert failed["status"] == "failed" and failed["slide_id"] is None
    assert "unreadable.svs" in failed["reason"], failed
    slide = slide_of(client, good["id"])
    ready = client.get(f"{API}/files/{good['id']}").json()
    assert ready["slide"] == {"status": "ready", "slide_id": slide["id"], "reason": None}
    assert ready["metadata_job_id"] == good["metadata_job_id"]
    table = client.post(f"{API}/files", files={"file": ("t.csv", b"a,b\n1,2\n")}).json()
    assert table["slide"] is None and table["metadata_job_id"] is None
    for name, data, words in [
        ("unopenable.tiff", (REAL / "unopenable.tiff").read_bytes(), "cannot be decoded"),
        ("empty.tif", b"", "'empty.tif' is an empty file"),
    ]:
        refused = client.post(f"{API}/files", files={"file": (name, data)})
        assert refused.status_code == 415 and words in refused.json()["detail"], refused.text


def test_another_user_gets_404_everywhere(
    slides: dict[str, dict[str, Any]], client: TestClient
) -> None:
    other = signed_in(client, register(client))
    slide_id = slides["small.svs"]["id"]
    for method, url in [
        ("GET", f"/slides/{slide_id}"),
        ("PATCH", f"/slides/{slide_id}"),
        ("DELETE", f"/slides/{slide_id}"),
        ("GET", f"/slides/{slide_id}/properties"),
        ("GET", f"/slides/{slide_id}/thumbnail"),
        ("GET", f"/slides/{slide_id}/associated/thumbnail"),
        ("GET", f"/viewer/{slide_id}.dzi"),
        ("GET", f"/viewer/{slide_id}_files/0/0_0.jpeg"),
    ]:
        body = {"json": {"name": "mine"}} if method == "PATCH" else {}
        assert other.request(method, API + url, **body).status_code == 404, url
    assert other.get(f"{API}/slides").json()["total"] == 0
    bulk = other.post(f"{API}/slides/bulk-delete", json={"ids": [slide_id]}).json()
    assert bulk == {"deleted": [], "not_found": [slide_id]}
    assert client.get(f"{API}/slides/{slide_id}").status_code == 200


def test_rename_delete_and_bulk_delete(client: TestClient) -> None:
    slides = [slide_of(client, upload(client, "boxes.tiff")["id"]) for _ in range(3)]
    first, second, third = (s["id"] for s in slides)
    renamed = client.patch(f"{API}/slides/{first}", json={"name": "Case 7, H&E"})
    assert renamed.json()["name"] == "Case 7, H&E"
    assert client.patch(f"{API}/slides/{first}", json={"bogus": 1}).status_code == 422
    assert client.get(f"{API}/viewer/{first}_files/9/0_0.jpeg").status_code == 200
    service = client.app.state.aperture.slides  # type: ignore[attr-defined]
    assert first in service.tiles.handles._handles
    assert client.delete(f"{API}/slides/{first}").status_code == 204
    assert first not in service.tiles.handles._handles, "DELETE must evict the open handle"
    assert client.get(f"{API}/slides/{first}").status_code == 404
    assert client.get(f"{API}/viewer/{first}.dzi").status_code == 404
    assert client.get(f"{API}/files/{slides[0]['file_id']}").status_code == 200  # file stays
    missing = str(uuid.uuid4())
    bulk = client.post(f"{API}/slides/bulk-delete", json={"ids": [second, third, missing]})
    assert bulk.json() == {"deleted": [second, third], "not_found": [missing]}
    assert client.get(f"{API}/slides/{second}").status_code == 404


def test_pre_generated_pyramid_is_served_from_storage(client: TestClient) -> None:
    from functions.slides.capability import pyramid_tile_key

    slide = slide_of(client, upload(client, "boxes.tiff")["id"])
    job = client.post(
        f"{API}/jobs",
        json={
            "function": "tiles.pyramid",
            "params": {"file_id": slide["file_id"], "slide_id": slide["id"]},
        },
    ).json()
    assert wait_for_job(client, job["id"], timeout=60)["status"] == "succeeded"
    objects = client.app.state.aperture.runtime.objects  # type: ignore[attr-defined]
    for level, col, row in [(9, 0, 0), (8, 0, 0), (0, 0, 0)]:
        response = client.get(f"{API}/viewer/{slide['id']}_files/{level}/{col}_{row}.jpeg")
        assert response.status_code == 200
        stored = objects.get_bytes(pyramid_tile_key(slide["id"], level, col, row, "jpeg"))
        assert response.content == stored
        again = client.get(
            f"{API}/viewer/{slide['id']}_files/{level}/{col}_{row}.jpeg",
            headers={"If-None-Match": response.headers["etag"]},
        )
        assert again.status_code == 304
    assert client.get(f"{API}/viewer/{slide['id']}_files/10/0_0.jpeg").status_code == 404
    png = client.get(f"{API}/viewer/{slide['id']}_files/9/0_0.png")  # rendered instead
    assert png.status_code == 200 and decode(png.content).size == (255, 250)
    assert client.delete(f"{API}/slides/{slide['id']}").status_code == 204
    assert not objects.exists(pyramid_tile_key(slide["id"], 9, 0, 0, "jpeg"))


def test_a_pyramidal_ome_tiff_upload_is_microscopy_not_a_slide(
    client: TestClient, tmp_path: Path
) -> None:
    from tests.common.test_filekinds import write_pyramidal_ome

    data = write_pyramidal_ome(tmp_path / "pyramid.tif").read_bytes()
    stored = upload(client, "pyramid.tif", data)
    assert stored["kind"] == "microscopy"
    jobs = client.get(f"{API}/jobs", params={"function": "metadata", "limit": 500}).json()
    assert all(j["params"].get("file_id") != stored["id"] for j in jobs["items"])
    assert client.get(f"{API}/slides", params={"file_id": stored["id"]}).json()["total"] == 0
    described = client.post(f"{API}/processing/load-metadata", json={"file_id": stored["id"]})
    assert described.json()["kind"] == "microscopy"
