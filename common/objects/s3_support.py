"""Shared pieces of the S3 backend: botocore error translation and presign limits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from botocore.exceptions import ClientError

from common.errors import InvalidInput, NotFound, ObjectNotFound

DEFAULT_CONTENT_TYPE = "application/octet-stream"
#: SigV4 presigned URLs cannot live longer than a week.
MAX_PRESIGN_S = 7 * 24 * 3600

#: Codes meaning "no such object" (HEAD answers carry only the status as the code).
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_BAD_COMPLETION = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall"})


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def translate(err: ClientError, key: str) -> Exception:
    """Our error for a botocore ClientError, or the error itself when there is none."""
    code = error_code(err)
    message = str(err.response.get("Error", {}).get("Message") or err)
    if code in NOT_FOUND_CODES:
        return ObjectNotFound(f"no object under key {key!r}")
    if code == "NoSuchUpload":
        return NotFound(f"no multipart upload for key {key!r}: {message}")
    if code == "NoSuchBucket":
        return NotFound(f"the bucket does not exist: {message}")
    if code in _BAD_COMPLETION:
        return InvalidInput(message)
    if code == "InvalidRange":
        return InvalidInput(f"the requested range of {key!r} is not satisfiable")
    return err


def raise_translated(err: ClientError, key: str) -> NoReturn:
    translated = translate(err, key)
    if translated is err:
        raise err
    raise translated from err


@contextmanager
def translated(key: str) -> Iterator[None]:
    """Raise our domain errors instead of botocore's ClientError for `key`."""
    try:
        yield
    except ClientError as err:
        raise_translated(err, key)


def check_expiry(expires_s: int) -> int:
    if not 1 <= expires_s <= MAX_PRESIGN_S:
        raise InvalidInput(f"expires_s must be between 1 and {MAX_PRESIGN_S}, got {expires_s}")
    return expires_s
