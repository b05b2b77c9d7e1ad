"""RFC 9457 problem details: the only place domain errors become HTTP answers.

A refused request (4xx) is the caller's mistake, logged at info with its type; only an
unexpected error (500) is logged at error, with its traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from email.message import Message
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from common import errors
from common.logs import request_id_var

log = logging.getLogger("aperture.web")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:aperture:problem:"

#: Domain error -> HTTP status; the most specific class wins (checked in MRO order).
STATUS_OF: dict[type[errors.ApertureError], int] = {
    errors.NotFound: 404,
    errors.InvalidKey: 400,
    errors.MalformedRequest: 400,
    errors.InvalidInput: 422,
    errors.UnsupportedFile: 415,
    errors.UnsupportedMediaType: 415,
    errors.Conflict: 409,
    errors.Forbidden: 403,
    errors.BadSignature: 403,
    errors.Unauthorized: 401,
    errors.TooLarge: 413,
    errors.QuotaExceeded: 413,
    errors.RateLimited: 429,
    errors.RangeNotSatisfiable: 416,
    errors.InsufficientStorage: 507,
}


def problem(
    status: int, code: str, detail: str, request: Request | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    if request_id := request_id_var.get():
        body["request_id"] = request_id
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status < 500:
        log.info("request refused", extra={"status": status, "problem": code, "detail": detail})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_of(error: errors.ApertureError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400


async def _domain_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.ApertureError)  # registered for this class only
    status = status_of(error)
    if status >= 500:
        log.error("request failed: %s", error.message, extra={"problem": error.code})
    response = problem(status, error.code, error.message, request)
    if isinstance(error, errors.RateLimited):
        response.headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, errors.RangeNotSatisfiable):
        response.headers["Content-Range"] = f"bytes */{error.size}"
    return response


def _is_json(content_type: str | None) -> bool:
    """What FastAPI parses as JSON: application/json or application/*+json."""
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _json_position(error: dict[str, Any], document: Any) -> str:
    """ "line L, column C" of a JSON decode error (FastAPI gives the offset)."""
    loc = error.get("loc", ())
    offset = loc[-1] if loc and isinstance(loc[-1], int) else None
    if offset is None or not isinstance(document, str):
        return "an unknown position"
    line = document.count("\n", 0, offset) + 1
    column = offset - (document.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _body_problem(request: Request, error: RequestValidationError) -> JSONResponse | None:
    """Malformed JSON (400, with where) and a body that is not JSON at all (415)."""
    details = error.errors()
    broken = next((item for item in details if item.get("type") == "json_invalid"), None)
    if broken is not None:
        reason = (broken.get("ctx") or {}).get("error", "invalid JSON")
        where = _json_position(broken, error.body)
        detail = f"the request body is not valid JSON: {reason} at {where}"
        return problem(400, "malformed-json", detail, request)
    content_type = request.headers.get("content-type")
    # FastAPI leaves a body it did not parse as JSON (another media type) as bytes.
    if isinstance(error.body, bytes) and error.body and not _is_json(content_type):
        sent = f"not {content_type}" if content_type else "no Content-Type was sent"
        return problem(
            415,
            "unsupported-media-type",
            f"this operation reads a JSON body: send it with Content-Type: application/json "
            f"({sent})",
            request,
        )
    return None


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    if (answer := _method_not_allowed(request)) is not None:
        return answer
    if (answer := _body_problem(request, error)) is not None:
        return answer
    items = [
        {
            "loc": [str(p) for p in item.get("loc", ())],
            "msg": item.get("msg", ""),
            "type": item.get("type", ""),
        }
        for item in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(i['loc'])}: {i['msg']}" for i in items[:5])
    return problem(
        422,
        "validation",
        f"the request is not valid: {summary}",
        request,
        errors=json.loads(json.dumps(items, default=str)),
    )


@functools.cache
def _compiled(path: str) -> re.Pattern[str]:
    return compile_path(path)[0]


def allowed_methods(request: Request) -> list[str]:
    """Every method the resource at the request's path serves (Starlette's 405 names only
    the first route that matched the path, not all of them).

    The resource is what the most literal matching routes name: `/datasets/stats` is the
    stats, though `/datasets/{dataset_id}` matches it too."""
    by_params: dict[int, set[str]] = {}
    for route in iter_route_contexts(request.app.routes):
        if route.methods and route.path and _compiled(route.path).match(request.url.path):
            by_params.setdefault(route.path.count("{"), set()).update(route.methods)
    return sorted(by_params[min(by_params)]) if by_params else []


def _method_not_allowed(request: Request) -> JSONResponse | None:
    """A 405 when the request's path names a resource that does not serve its method,
    though a route with a parameter matched it (PATCH /datasets/stats is not a PATCH
    of a dataset whose id is "stats")."""
    allowed = allowed_methods(request)
    if not allowed or request.method in allowed:
        return None
    allow = ", ".join(allowed)
    detail = f"{request.method} is not allowed here; this resource allows {allow}"
    response = problem(405, "method-not-allowed", detail, request)
    response.headers["Allow"] = allow
    return response


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http")
    detail = error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
    allow = ", ".join(allowed_methods(request)) if error.status_code == 405 else None
    if allow is not None:
        detail = f"{request.method} is not allowed here; this resource allows {allow}"
    response = problem(error.status_code, code, detail, request)
    if error.headers:
        response.headers.update(error.headers)
    if allow is not None:
        response.headers["Allow"] = allow
    return response


async def _os_error(request: Request, error: Exception) -> JSONResponse:
    """A full disk under a store write is 507 (the write cleaned up after itself); any
    other OSError is unexpected."""
    if (full := errors.insufficient_storage(error)) is not None:
        return await _domain_error(request, full)
    raise error


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem(500, "internal", "an unexpected error occurred; it has been logged", request)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.ApertureError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OSError, _os_error)
    app.add_exception_handler(Exception, _unexpected)
