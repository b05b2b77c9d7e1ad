"""One pure-ASGI middleware: request id, security headers, access log.

Pure ASGI (not BaseHTTPMiddleware) so streamed downloads, SSE and WebSockets pass
through untouched.

A viewer asks for dozens of tiles a second; a log line each would cost more than
serving a cached tile. Successful Deep Zoom tile requests (`.../viewer/..._files/...`,
2xx or 304) are logged at DEBUG, everything else at INFO, and a line whose level is off
is never built.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.logs import request_id_var

log = logging.getLogger("aperture.access")

#: Deep Zoom tiles live under this path (`web.routes.viewer`).
TILE_PREFIX = "/api/v1/viewer/"

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _SAFE_ID.match(given) else _new_request_id()
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": None}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.append((b"x-request-id", request_id.encode()))
                headers += [h for h in SECURITY_HEADERS if h[0] not in present]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            level = _level(scope["path"], status["code"])
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "request",
                    extra={
                        "method": scope.get("method", "WS"),
                        "path": scope["path"],
                        "status": status["code"],
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            request_id_var.reset(token)


#: Request ids: a random prefix per process and a counter, 32 hex digits like a UUID's,
#: unique across processes without a system call for randomness on every request.
_ID_PREFIX = secrets.token_hex(6)
_ID_COUNTER = itertools.count()


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):020x}"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _level(path: str, status: int | None) -> int:
    """DEBUG for a served Deep Zoom tile, INFO for everything else."""
    if status is not None and (200 <= status < 300 or status == 304) and "_files/" in path:
        return logging.DEBUG if path.startswith(TILE_PREFIX) else logging.INFO
    return logging.INFO
