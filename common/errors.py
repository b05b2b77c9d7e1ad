"""Domain exceptions, one hierarchy. The web edge maps each `code` to an HTTP status
and an RFC 9457 problem `type`; nothing below `web/` knows about HTTP."""

from __future__ import annotations


class ApertureError(Exception):
    """Base of every error the service reports to a caller on purpose."""

    code = "error"
    default_message = "the request could not be completed"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class NotFound(ApertureError):
    code = "not-found"
    default_message = "no such resource"


class InvalidInput(ApertureError):
    code = "invalid-input"
    default_message = "the input is not valid"


class Conflict(ApertureError):
    code = "conflict"
    default_message = "the resource is not in a state that allows this"


class Forbidden(ApertureError):
    code = "forbidden"
    default_message = "not allowed"


class Unauthorized(ApertureError):
    code = "unauthorized"
    default_message = "authentication is required"


class TooLarge(ApertureError):
    code = "too-large"
    default_message = "the content is larger than allowed"


class QuotaExceeded(ApertureError):
    code = "quota-exceeded"
    default_message = "the storage quota would be exceeded"


class UnknownCapability(NotFound):
    code = "unknown-function"
    default_message = "no such function"


class IllegalTransition(Conflict):
    code = "illegal-transition"
    default_message = "the job cannot move to that status from its current one"


class ObjectNotFound(NotFound):
    code = "object-not-found"
    default_message = "no object under that key"


class InvalidKey(InvalidInput):
    code = "invalid-key"
    default_message = "the object key is not allowed"


class BadSignature(Forbidden):
    code = "bad-signature"
    default_message = "the signed URL is invalid or has expired"


class UnsupportedFile(InvalidInput):
    code = "unsupported-file"
    default_message = "the file is not of a supported type or is corrupt"


class JobCancelled(ApertureError):
    """Raised inside a capability (by `ctx`) to unwind after cancellation was asked for."""

    code = "cancelled"
    default_message = "the job was cancelled"


class RateLimited(ApertureError):
    code = "rate-limited"
    default_message = "too many attempts; try again later"

    def __init__(self, message: str | None = None, *, retry_after_s: int = 60) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RangeNotSatisfiable(ApertureError):
    code = "range-not-satisfiable"
    default_message = "the requested range is outside the file"

    def __init__(self, size: int) -> None:
        super().__init__(f"the range is outside the file's {size} bytes")
        self.size = size
