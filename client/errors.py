"""The client's exceptions: one hierarchy.

Errors the server answers are `ProblemError`s carrying the RFC 9457 problem details
(`status`, `type`, `title`, `detail`); the subclass says which HTTP status it was, so a
script can `except NotFound`. Errors found on this side (parameters that do not match a
function's schema, bytes that changed on the way) have their own classes.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

PROBLEM_PREFIX = "urn:aperture:problem:"


class ApertureError(Exception):
    """Base of every error the client raises on purpose."""


class ProblemError(ApertureError):
    """The server refused a request; its problem details say why."""

    def __init__(
        self,
        status: int,
        type: str,
        title: str,
        detail: str,
        *,
        method: str = "",
        url: str = "",
        body: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.method = method
        self.url = url
        self.body = body or {}
        where = f" ({method} {url})" if method else ""
        super().__init__(f"{status} {title}: {detail}{where}")

    @property
    def code(self) -> str:
        """The stable short code, e.g. `not-found` for `urn:aperture:problem:not-found`."""
        return self.type.removeprefix(PROBLEM_PREFIX)


class BadRequest(ProblemError):
    """400: the request was malformed."""


class Unauthorized(ProblemError):
    """401: no valid credentials (after one refresh, where the credential can refresh)."""


class Forbidden(ProblemError):
    """403: signed in, but not allowed."""


class NotFound(ProblemError):
    """404: no such resource (or not yours)."""


class Conflict(ProblemError):
    """409: the resource is not in a state that allows this."""


class TooLarge(ProblemError):
    """413: larger than allowed, or over the storage quota."""


class UnsupportedFile(ProblemError):
    """415: the file is not of a supported type, or is corrupt."""


class InvalidInput(ProblemError):
    """422: the input is not valid."""


class RateLimited(ProblemError):
    """429: too many requests."""


class ServerError(ProblemError):
    """5xx: the server failed."""


_BY_STATUS: dict[int, type[ProblemError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    415: UnsupportedFile,
    422: InvalidInput,
    429: RateLimited,
}


def problem_from_response(response: httpx.Response) -> ProblemError:
    """The typed error for a non-2xx answer, from its problem details (or, where a proxy
    answered with something else, from its status and text)."""
    status = response.status_code
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, httpx.ResponseNotRead):
        body = None
    if not isinstance(body, dict):
        text = response.text[:500] if response.is_stream_consumed else ""
        body = {"detail": text.strip() or response.reason_phrase}
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ProblemError)
    return cls(
        status,
        str(body.get("type") or "about:blank"),
        str(body.get("title") or response.reason_phrase),
        str(body.get("detail") or ""),
        method=response.request.method,
        url=str(response.request.url.copy_with(query=None)),
        body=body,
    )


class ParamsInvalid(ApertureError, ValueError):
    """Parameters that do not match the function's published JSON Schema; raised before
    anything is uploaded or submitted."""

    def __init__(self, function: str, problems: list[str]) -> None:
        self.function = function
        self.problems = problems
        super().__init__(f"params for {function!r} are not valid: " + "; ".join(problems))


class IntegrityError(ApertureError):
    """The bytes stored (or downloaded) are not the bytes that were sent (or listed)."""


class JobFailed(ApertureError):
    """A job ended without succeeding; `job` holds its record (status, error)."""

    def __init__(self, job: Any) -> None:
        self.job = job
        reason = f": {job.error.type}: {job.error.message}" if job.error else ""
        super().__init__(f"job {job.id} ({job.function}) {job.status}{reason}")


class NotSignedIn(ApertureError):
    """No server or credential configured: run `aperture login` or set APERTURE_URL."""
