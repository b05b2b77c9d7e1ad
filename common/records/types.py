"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ColumnElement, DateTime, Integer, exists, func, literal
from sqlalchemy import select as select_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.types import TypeDecorator

from common.errors import InvalidInput

#: JSON everywhere, JSONB on PostgreSQL (indexable, `@>` containment for tag filters).
JSONType = JSON().with_variant(JSONB(), "postgresql")

#: SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for event logs.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def json_array_has(
    column: InstrumentedAttribute[Any], value: str, dialect: str
) -> ColumnElement[bool]:
    """Whether the JSON array in `column` holds the string `value` (tag filters).

    The value is bound, never spliced into SQL or JSON text: the driver serialises it,
    so quotes, backslashes and control characters are escaped for us."""
    if dialect == "postgresql":
        return column.op("@>")(literal([value], JSONB))
    each = func.json_each(column).table_valued("value")
    return exists(select_(literal(1)).select_from(each).where(each.c.value == value))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in and out, whatever the engine stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = to_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


def to_utc(value: datetime, what: str = "the date") -> datetime:
    """`value` in UTC (a naive one is taken as UTC). InvalidInput when UTC moves it off the
    calendar: `0001-01-01T00:00+14:00` and `9999-12-31T23:59-14:00` have no UTC time
    that `datetime` (or a database column) can hold."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            f"{what} {value.isoformat()} is out of range: in UTC it falls outside the "
            "years 1 to 9999"
        ) from None


def utcnow() -> datetime:
    return datetime.now(UTC)
