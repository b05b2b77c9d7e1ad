"""Argument rules every backend applies the same way, following S3's semantics.

Checking these before talking to a server gives callers the same error and message
from either backend, whatever a particular S3 implementation would have said.
"""

from __future__ import annotations

import itertools

from common.errors import InvalidInput

#: S3: every part but the last must be at least this large.
MIN_PART_SIZE = 5 * 1024 * 1024
#: S3: part numbers run from 1 to this.
MAX_PART_NUMBER = 10_000
#: S3: a single PUT or CopyObject can carry at most this much.
MAX_SINGLE_PUT = 5 * 1024**3
#: S3 returns at most this many keys per listing page.
MAX_LIST_LIMIT = 1000


def check_range(start: int, end: int | None) -> None:
    """Reject byte ranges no backend could serve: negative or reversed."""
    if start < 0:
        raise InvalidInput(f"range start must be >= 0, got {start}")
    if end is not None and end < start:
        raise InvalidInput(f"range end ({end}) is before its start ({start})")


def range_unsatisfiable(start: int, size: int) -> InvalidInput:
    """The error for a range starting at or after the end of the object (S3: 416)."""
    return InvalidInput(
        f"range starting at byte {start} is not satisfiable for an object of {size} bytes"
    )


def check_part_number(number: int) -> int:
    if not 1 <= number <= MAX_PART_NUMBER:
        raise InvalidInput(f"part number must be between 1 and {MAX_PART_NUMBER}, got {number}")
    return number


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
    return limit


def normalize_etag(etag: str) -> str:
    """ETags without the quotes S3 puts around them, so callers can compare them."""
    return etag.strip().strip('"')


def check_completion(parts: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The part list of a completion: non-empty, valid numbers, strictly ascending."""
    if not parts:
        raise InvalidInput("completing a multipart upload needs at least one part")
    numbers = [check_part_number(number) for number, _ in parts]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise InvalidInput("the list of parts must be in strictly ascending part-number order")
    return [(number, normalize_etag(etag)) for number, etag in parts]
