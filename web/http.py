"""HTTP helpers every router uses the same way: entity tags and `If-None-Match`
(RFC 9110 weak comparison, `*`), image responses with their caching headers,
redirects to presigned object URLs, and the 202 answer of every route that creates a
job."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from common.objects import ObjectStore
from functions.slides.service import Tile


def quoted(etag: str) -> str:
    """An object store's bare etag as an HTTP entity tag."""
    return f'"{etag}"'


def etag_matches(etag: str, if_none_match: str | None) -> bool:
    """Whether an `If-None-Match` header names `etag`: `*` matches anything, and tags
    compare weakly (RFC 9110 §13.1.2: `W/"x"` and `"x"` are the same entity)."""
    if not if_none_match:
        return False
    tags = {tag.strip() for tag in if_none_match.split(",")}
    return "*" in tags or _opaque(etag) in {_opaque(tag) for tag in tags if tag}


def _opaque(tag: str) -> str:
    return tag.removeprefix("W/")


def not_modified(
    etag: str, request: Request, *, cache_control: str | None = None
) -> Response | None:
    """A 304 when the request's If-None-Match names `etag`, else None (so a caller can
    skip reading the content)."""
    if not etag_matches(etag, request.headers.get("if-none-match")):
        return None
    headers = {"ETag": etag}
    if cache_control is not None:
        headers["Cache-Control"] = cache_control
    return Response(status_code=304, headers=headers)


def image(tile: Tile) -> Response:
    """An image with its ETag and caching headers (the caller checked If-None-Match)."""
    headers = {"ETag": tile.etag, "Cache-Control": tile.cache_control}
    return Response(tile.content, media_type=tile.media_type, headers=headers)


def image_response(tile: Tile, request: Request) -> Response:
    """An image with its ETag and caching headers; 304 when the client has it."""
    unchanged = not_modified(tile.etag, request, cache_control=tile.cache_control)
    return unchanged if unchanged is not None else image(tile)


def presigned_redirect(
    objects: ObjectStore, key: str, *, expires_s: int, filename: str | None = None
) -> RedirectResponse:
    """A 307 to a presigned GET URL of `key` that lives `expires_s` seconds (a lifetime
    from the settings: `signed_url_ttl_s`, `download_url_ttl_s`)."""
    url = objects.presigned_get_url(key, expires_s=expires_s, filename=filename)
    return RedirectResponse(url, status_code=307)


#: Route options of every route that creates a job: `@router.post(path, **JOB_ACCEPTED)`.
JOB_ACCEPTED: dict[str, Any] = {
    "status_code": 202,
    "responses": {
        202: {
            "description": "Accepted: the job exists and runs in the background.",
            "headers": {
                "Location": {
                    "description": "The job's record (GET it, or follow its /events).",
                    "schema": {"type": "string"},
                }
            },
        }
    },
}


def job_location(request: Request, response: Response, job_id: uuid.UUID) -> None:
    """Point a job-creating route's 202 answer at the job's record (`Location`)."""
    response.headers["Location"] = request.url_for("read_job", job_id=str(job_id)).path
