"""The constrained types every request model and query parameter uses, declared once so
the published schema says what the server enforces:

- text: `Label` (one line: names, emails, filters), `Text` (descriptions), `Email`,
  `Tag`; none admits NUL or control characters, and labels no bidi overrides
  (`common.text`);
- `Timestamp`: an RFC 3339 date-time, in UTC once parsed, never a bare number, never
  one whose UTC time falls off the calendar;
- `Limit` / `Offset`: pagination, bounded so a count never overflows a database integer;
- `BigCount` / `Seq`: other integers a query compares with a BIGINT / INTEGER column.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator, BeforeValidator, Field

from common.errors import InvalidInput
from common.records.types import to_utc
from common.text import (
    ABSOLUTE_PATH_PATTERN,
    EMAIL_PATTERN,
    TEXT_PATTERN,
    Label,
    label_error,
    text_error,
)

#: The largest count or size we take: a BIGINT holds more, but 2**53 - 1 is the largest
#: integer every JSON reader (JavaScript's numbers, a float64) keeps exact, so a bound at
#: 2**63 - 1 would be read back as 2**63 and a value just above it would pass as equal.
MAX_BIGINT = 2**53 - 1
#: The largest value of a PostgreSQL INTEGER column (event sequence numbers).
MAX_INT = 2**31 - 1
#: Deeper pages than this are not a listing any more; it also keeps offsets far from
#: the database's integer range.
MAX_OFFSET = 1_000_000_000
MAX_PAGE = 500


def _text(value: str) -> str:
    if (why := text_error(value)) is not None:
        raise ValueError(why)
    return value


def _email(value: str) -> str:
    if (why := label_error(value)) is not None:
        raise ValueError(why)
    if re.match(EMAIL_PATTERN, value) is None:
        raise ValueError(
            "must be an email address: name@domain.tld without spaces, control or "
            "bidirectional-override characters, at most 64 characters before the @"
        )
    return value


#: Several lines of text: descriptions.
Text = Annotated[str, AfterValidator(_text), Field(json_schema_extra={"pattern": TEXT_PATTERN})]
Email = Annotated[
    str,
    AfterValidator(_email),
    Field(min_length=3, max_length=320, json_schema_extra={"pattern": EMAIL_PATTERN}),
]
Tag = Annotated[Label, Field(min_length=1, max_length=64)]
#: A name of something the user made (a dataset, a key, a display name).
Name = Annotated[Label, Field(min_length=1, max_length=255)]

#: A search filter in the query string.
#: A path on the server's disk, absolute (the import roots decide which are allowed).
ServerPath = Annotated[
    Label,
    Field(
        min_length=1,
        max_length=4096,
        json_schema_extra={"pattern": ABSOLUTE_PATH_PATTERN},
        description="Absolute path under the import roots.",
    ),
]
LabelQuery = Annotated[Label | None, Query(max_length=255)]


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _no_nul(value: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL's JSONB holds no NUL character, in a key or a string anywhere."""
    if _has_nul(value):
        raise ValueError("must not contain NUL characters (U+0000) in any key or string")
    return value


#: A JSON object from a client that is stored as it is (job params).
JsonObject = Annotated[dict[str, Any], AfterValidator(_no_nul)]

_BARE_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")
_DATE_HELP = "an RFC 3339 date-time such as 2024-05-01T12:00:00Z (no offset: UTC)"


def _no_bare_number(value: Any) -> Any:
    """Pydantic reads numbers (and strings of digits) as Unix times; `created_before=0.5`
    is a mistake, not 1970."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or _BARE_NUMBER.fullmatch(value):
        raise ValueError(f"must be {_DATE_HELP}, not a number")
    return value


def _utc(value: datetime) -> datetime:
    try:
        return to_utc(value)
    except InvalidInput as error:
        raise ValueError(error.message) from None


#: A date-time from a client, in UTC.
Timestamp = Annotated[
    datetime,
    BeforeValidator(_no_bare_number),
    AfterValidator(_utc),
    Field(description=f"{_DATE_HELP[0].upper()}{_DATE_HELP[1:]}."),
]
TimestampQuery = Annotated[Timestamp | None, Query()]

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]
#: A count or size compared with a BIGINT column.
BigCount = Annotated[int, Field(ge=0, le=MAX_BIGINT)]
#: A number compared with an INTEGER column.
Seq = Annotated[int, Field(ge=0, le=MAX_INT)]
