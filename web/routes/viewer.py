"""Deep Zoom for the viewer: the `.dzi` descriptor and tiles of a slide.

Tiles render off the event loop (the tile service's async variants). A slide with a
finished pre-generated pyramid (`tiles.pyramid`, same tile settings) has its tiles
served from storage: streamed from the directory store, or a redirect to a presigned
URL with S3.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from common.errors import InvalidInput, NotFound
from functions.slides.capability import pyramid_tile_key
from functions.slides.geometry import parse_tile_format
from functions.slides.render import MEDIA_TYPES
from functions.slides.service import Tile
from web.deps import State
from web.http import image, image_response, not_modified, presigned_redirect, quoted
from web.slides import TILE_CACHE_CONTROL, SlideServiceDep, ViewedSlide

router = APIRouter(prefix="/viewer", tags=["viewer"])

Responses = dict[int | str, dict[str, Any]]
DZI_RESPONSES: Responses = {200: {"content": {"application/xml": {}, "application/json": {}}}}
TILE_RESPONSES: Responses = {
    200: {"content": {"image/jpeg": {}, "image/png": {}}},
    304: {"description": "Not modified (If-None-Match)"},
}


@router.get("/{slide_id:uuid}.dzi", responses=DZI_RESPONSES)
async def read_dzi(slide: ViewedSlide, service: SlideServiceDep, request: Request) -> Response:
    """The slide's Deep Zoom descriptor: XML, or JSON with `Accept: application/json`."""
    descriptor = await service.apyramid(slide.id)
    if descriptor is None:
        path = await service.apath(slide)
        descriptor = await service.tiles.adescriptor(str(slide.id), path)
    if "application/json" in request.headers.get("accept", ""):
        tiles_url = request.url.path.removesuffix(".dzi") + "_files/"
        return JSONResponse(descriptor.to_json(tiles_url))
    return Response(descriptor.to_xml(), media_type="application/xml")


@router.get(
    "/{slide_id:uuid}_files/{level:int}/{col:int}_{row:int}.{fmt}", responses=TILE_RESPONSES
)
async def read_tile(
    slide: ViewedSlide,
    level: int,
    col: int,
    row: int,
    fmt: str,
    service: SlideServiceDep,
    state: State,
    request: Request,
) -> Response:
    """One Deep Zoom tile (JPEG or PNG), with an ETag and `Cache-Control: private`;
    `If-None-Match` gives 304."""
    try:
        fmt = parse_tile_format(fmt)
    except InvalidInput:  # the URL names no tile
        raise NotFound(f"no tile format {fmt!r}: tiles are .jpeg or .png") from None
    pyramid = await service.apyramid(slide.id)
    if pyramid is not None and pyramid.format == fmt:
        return await _stored_tile(state, slide.id, level, col, row, fmt, request)
    tile = service.tiles.cached_tile(str(slide.id), level, col, row, fmt)
    if tile is None:
        path = await service.apath(slide)
        tile = await service.tiles.atile(str(slide.id), path, level, col, row, fmt)
    return image_response(replace(tile, cache_control=TILE_CACHE_CONTROL), request)


async def _stored_tile(
    state: State, slide_id: uuid.UUID, level: int, col: int, row: int, fmt: str, request: Request
) -> Response:
    objects = state.runtime.objects
    key = pyramid_tile_key(str(slide_id), level, col, row, fmt)
    try:
        if objects.kind == "s3":
            await run_in_threadpool(objects.head, key)
            ttl = state.settings.signed_url_ttl_s
            return await run_in_threadpool(presigned_redirect, objects, key, expires_s=ttl)
        info = await run_in_threadpool(objects.head, key)
        etag = quoted(info.etag)
        unchanged = not_modified(etag, request, cache_control=TILE_CACHE_CONTROL)
        if unchanged is not None:
            return unchanged
        content = await run_in_threadpool(objects.get_bytes, key)
    except NotFound:
        raise NotFound(f"no tile {level}/{col}_{row} in this slide's pyramid") from None
    return image(Tile(content, MEDIA_TYPES[fmt], etag, TILE_CACHE_CONTROL))
