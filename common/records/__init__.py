"""Records: SQLAlchemy models, engines and migrations (SQLite default, PostgreSQL in production)."""

from common.records.engine import (
    insert_unique,
    make_engine,
    make_sessionmaker,
    normalise_url,
    transaction,
)
from common.records.migrate import migrate
from common.records.models import (
    ApiKey,
    AuditEvent,
    AuthSession,
    Base,
    File,
    Job,
    JobEvent,
    RefreshToken,
    User,
)

__all__ = [
    "ApiKey",
    "AuditEvent",
    "AuthSession",
    "Base",
    "File",
    "Job",
    "JobEvent",
    "RefreshToken",
    "User",
    "insert_unique",
    "make_engine",
    "make_sessionmaker",
    "migrate",
    "normalise_url",
    "transaction",
]
