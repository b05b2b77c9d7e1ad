"""The tile route's answer from memory, before routing: a viewer asks for the same tiles
again and again, and for a cached tile FastAPI's routing and dependency solving cost
several times the answer itself.

`CachedTiles` is pure ASGI. For `GET /api/v1/viewer/{slide}_files/{level}/{col}_{row}.{fmt}`
it answers only when everything the route (`web.routes.viewer.read_tile`) would look up
is already in memory, and with the route's own steps: the caller's principal from the
principal cache (`web.auth`), the slide's fresh record from the slide service, the same
ownership check (`visible_to`), no pre-generated pyramid to serve instead, the rendered
tile from the tile cache, and the same response (`image_response`: ETag, 304 on
`If-None-Match`, `Cache-Control: private`). Anything else, an error included, goes on to
the route unchanged, which answers it fully (401, 404, rendering, stored pyramids).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from common.errors import ApertureError
from functions.slides.geometry import parse_tile_format
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
            response = _from_memory(scope, match) if match else None
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _from_memory(scope: Scope, match: re.Match[str]) -> Response | None:
    """The route's answer if every input is in memory, else None (the route decides)."""
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
    tile = service.tiles.cached_tile(str(slide_id), level, col, row, fmt)
    if tile is None:
        return None
    return image_response(replace(tile, cache_control=TILE_CACHE_CONTROL), request)
