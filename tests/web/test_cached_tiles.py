"""A cached tile is answered before routing (`web.cached_tiles`) exactly as the tile route
answers it, and only when the route would answer it the same way."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.app import register, signed_in
from tests.web.test_slides_api import API, slide_of, upload
from web.cached_tiles import TILE_PATH, _known_tile, _TileRequest

SAME = ("content-type", "content-length", "etag", "cache-control")


@pytest.fixture(scope="module")
def slide(client: TestClient) -> dict[str, Any]:
    return slide_of(client, upload(client, "small.svs")["id"])


def _tile_url(slide: dict[str, Any], below_top: int = 0) -> str:
    """Tile 0_0 of a level: the full resolution one, or `below_top` levels under it."""
    level = math.ceil(math.log2(max(slide["width"], slide["height"]))) - below_top
    return f"{API}/viewer/{slide['id']}_files/{level}/0_0.jpeg"


def _answered_from_memory(client: TestClient, url: str, headers: dict[str, str]) -> bool:
    """Whether the tile would be answered before routing, asked with `headers`."""
    match = TILE_PATH.fullmatch(url)
    assert match is not None
    raw = [(k.lower().encode(), v.encode()) for k, v in {**client.headers, **headers}.items()]
    scope = {"type": "http", "method": "GET", "path": url, "headers": raw, "app": client.app}
    wanted = _known_tile(scope, match)
    return wanted is not None and wanted.cached() is not None


def test_a_cached_tile_is_answered_as_the_route_answers(
    slide: dict[str, Any], client: TestClient
) -> None:
    url = _tile_url(slide)
    assert not _answered_from_memory(client, url, {})  # nothing rendered yet
    rendered = client.get(url)  # the route renders it
    assert rendered.status_code == 200
    assert _answered_from_memory(client, url, {})
    cached = client.get(url)
    assert cached.status_code == 200 and cached.content == rendered.content
    assert {h: cached.headers[h] for h in SAME} == {h: rendered.headers[h] for h in SAME}
    assert cached.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert cached.headers["x-request-id"] and cached.headers["x-content-type-options"]
    unchanged = client.get(url, headers={"If-None-Match": f"W/{rendered.headers['etag']}"})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["cache-control"] == "private, max-age=31536000, immutable"


def test_only_the_owner_gets_a_cached_tile(
    slide: dict[str, Any], client: TestClient, app_client: TestClient
) -> None:
    url = _tile_url(slide, below_top=1)
    assert client.get(url).status_code == 200
    stranger = signed_in(app_client, register(app_client))
    assert stranger.get(f"{API}/auth/me").status_code == 200  # their principal is cached
    assert not _answered_from_memory(stranger, url, {})
    refused = stranger.get(url)
    assert refused.status_code == 404 and refused.headers["content-type"].startswith(
        "application/problem+json"
    )
    anonymous = app_client.get(url)
    assert anonymous.status_code == 401


def test_a_signed_out_user_is_refused_a_cached_tile(
    slide: dict[str, Any], app_client: TestClient
) -> None:
    from tests.support.app import login

    me = signed_in(app_client, register(app_client))
    email = me.get(f"{API}/auth/me").json()["email"]
    mine = slide_of(me, upload(me, "small.svs")["id"])
    url = _tile_url(mine)
    assert me.get(url).status_code == 200 and _answered_from_memory(me, url, {})
    other_session = login(app_client, email)
    assert app_client.post(f"{API}/auth/logout", headers=dict(me.headers)).status_code == 204
    assert me.get(url).status_code == 401
    assert app_client.get(url, headers=other_session).status_code == 200


def test_a_deleted_slide_has_no_cached_tiles(client: TestClient) -> None:
    doomed = slide_of(client, upload(client, "small.svs")["id"])
    url = _tile_url(doomed)
    assert client.get(url).status_code == 200
    shared = client.app.state.aperture.slides.tiles.files  # type: ignore[attr-defined]
    assert (shared.root / doomed["id"]).is_dir()  # kept for the other web processes too
    assert client.delete(f"{API}/slides/{doomed['id']}").status_code == 204
    assert not _answered_from_memory(client, url, {})
    assert not (shared.root / doomed["id"]).exists()
    assert client.get(url).status_code == 404


def _known(client: TestClient, url: str) -> _TileRequest | None:
    match = TILE_PATH.fullmatch(url)
    assert match is not None
    raw = [(k.lower().encode(), v.encode()) for k, v in client.headers.items()]
    scope = {"type": "http", "method": "GET", "path": url, "headers": raw, "app": client.app}
    return _known_tile(scope, match)


def test_a_cold_tile_of_a_viewed_slide_renders_before_routing_as_the_route_would(
    slide: dict[str, Any], client: TestClient
) -> None:
    assert client.get(_tile_url(slide)).status_code == 200  # the route looked the slide up
    url = _tile_url(slide, below_top=2)
    wanted = _known(client, url)
    assert wanted is not None and wanted.path is not None and wanted.cached() is None
    tile = asyncio.run(wanted.tile())  # rendered off the loop, as the middleware does
    assert tile is not None
    answered = client.get(url)
    assert answered.status_code == 200 and answered.content == tile.content
    assert answered.headers["etag"] == tile.etag
    assert answered.headers["cache-control"] == "private, max-age=31536000, immutable"


def test_a_tile_out_of_range_is_left_to_the_route(
    slide: dict[str, Any], client: TestClient
) -> None:
    assert client.get(_tile_url(slide)).status_code == 200
    url = f"{API}/viewer/{slide['id']}_files/3/99_0.jpeg"
    wanted = _known(client, url)
    assert wanted is not None and asyncio.run(wanted.tile()) is None
    refused = client.get(url)
    assert refused.status_code == 404
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "out of range" in refused.json()["detail"]
