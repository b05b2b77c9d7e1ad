"""Tiles answered before routing: a viewer asks for dozens of tiles a second, and for a
tile FastAPI's routing and dependency solving cost as much CPU as a cached answer many
times over, and a good part of rendering one.

`CachedTiles` is pure ASGI. For `GET /api/v1/viewer/{slide}_files/{level}/{col}_{row}.{fmt}`
it answers only when everything the route (`web.routes.viewer.read_tile`) would look up
is already in memory, and with the route's own steps: the caller's principal from the
principal cache (`web.auth`), the slide's fresh record from the slide service, the same
ownership check (`visible_to`), no pre-generated pyramid to serve instead, and the
slide's local file. The tile then comes from the tile cache, or is rendered off the
event loop by the tile service (`SlideTiles.atile`, as the route renders it); the answer
is the route's (`image_response`: ETag, 304 on `If-None-Match`, `Cache-Control:
private`). Anything else, an error included, goes on to the route unchanged, which
answers it fully (401, 404 with problem details, rendering, stored pyramids).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from common.errors import ApertureError
from functions.slides.geometry import parse_tile_format
from functions.slides.service import Tile
from web.auth import cached_principal
from web.deps import visible_to
from web.http import image_response
from web.slides import TILE_CACHE_CONTROL, SlideService, Unknown

#: The tile route's path (the same converters: uuid, int, int, int, any format).
TILE_PATH = re.compile(
    r"/api/v1/viewer/(?P<slide>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
    r"-[0-9a-fA-F]{12})_files/(?P<level>[0-9]+)/(?P<col>[0-9]+)_(?P<row>[0-9]+)\.(?P<fmt>[^/]+)"
)


class CachedTiles:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = TILE_PATH.fullmatch(scope["path"])
            wanted = _known_tile(scope, match) if match else None
            tile = await wanted.tile() if wanted is not None else None
            if wanted is not None and tile is not None:
                await _answer(tile, wanted.request)(scope, receive, send)
                return
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class _TileRequest:
    """A tile request whose every input but the pixels is in memory."""

    request: Request
    service: SlideService
    slide_id: str
    path: Path | None  # the slide's local file, if this process knows it
    level: int
    col: int
    row: int
    fmt: str

    def cached(self) -> Tile | None:
        return self.service.tiles.cached_tile(
            self.slide_id, self.level, self.col, self.row, self.fmt
        )

    async def tile(self) -> Tile | None:
        """The tile from the cache, else rendered in a worker thread; None when it
        cannot be (the route then answers, errors included)."""
        tile = self.cached()
        if tile is not None or self.path is None:
            return tile
        try:
            return await self.service.tiles.atile(
                self.slide_id, self.path, self.level, self.col, self.row, self.fmt
            )
        except ApertureError:
            return None


def _answer(tile: Tile, request: Request) -> Response:
    return image_response(replace(tile, cache_control=TILE_CACHE_CONTROL), request)


def _known_tile(scope: Scope, match: re.Match[str]) -> _TileRequest | None:
    """The request, if the route's every lookup is in memory and allows it, else None."""
    aperture = getattr(scope["app"].state, "aperture", None)
    if aperture is None:  # not started yet
        return None
    service: SlideService = aperture.slides
    request = Request(scope)
    try:
        principal = cached_principal(request, getattr(scope["app"].state, "principals", None))
        slide_id = uuid.UUID(match["slide"])
        slide = service.fresh_record(slide_id)
        if principal is None or slide is None:
            return None
        visible_to(principal, slide, "slide")
        fmt = parse_tile_format(match["fmt"])
    except ApertureError:
        return None  # the route answers with the right problem details
    known = service.known_pyramid(slide_id)
    if isinstance(known, Unknown) or (known is not None and known.format == fmt):
        return None
    level, col, row = int(match["level"]), int(match["col"]), int(match["row"])
    path = service.known_path(slide_id)
    return _TileRequest(request, service, str(slide_id), path, level, col, row, fmt)
