"""RFC 9457 problem details: the only place domain errors become HTTP answers."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common import errors
from common.logs import request_id_var

log = logging.getLogger("aperture.web")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:aperture:problem:"

#: Domain error -> HTTP status; the most specific class wins (checked in MRO order).
STATUS_OF: dict[type[errors.ApertureError], int] = {
    errors.NotFound: 404,
    errors.InvalidKey: 400,
    errors.InvalidInput: 422,
    errors.UnsupportedFile: 415,
    errors.Conflict: 409,
    errors.Forbidden: 403,
    errors.BadSignature: 403,
    errors.Unauthorized: 401,
    errors.TooLarge: 413,
    errors.QuotaExceeded: 413,
    errors.RateLimited: 429,
    errors.RangeNotSatisfiable: 416,
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
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_of(error: errors.ApertureError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400


async def _domain_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.ApertureError)  # registered for this class only
    response = problem(status_of(error), error.code, error.message, request)
    if isinstance(error, errors.RateLimited):
        response.headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, errors.RangeNotSatisfiable):
        response.headers["Content-Range"] = f"bytes */{error.size}"
    return response


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = error.errors()
    if any(item.get("type") == "json_invalid" for item in details):
        return problem(400, "malformed-json", "the request body is not valid JSON", request)
    items = [
        {
            "loc": [str(p) for p in item.get("loc", ())],
            "msg": item.get("msg", ""),
            "type": item.get("type", ""),
        }
        for item in details
    ]
    summary = "; ".join(f"{'.'.join(i['loc'])}: {i['msg']}" for i in items[:5])
    return problem(
        422,
        "validation",
        f"the request is not valid: {summary}",
        request,
        errors=json.loads(json.dumps(items, default=str)),
    )


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http")
    detail = error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
    response = problem(error.status_code, code, detail, request)
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem(500, "internal", "an unexpected error occurred; it has been logged", request)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.ApertureError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
