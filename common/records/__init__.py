"""Records: SQLAlchemy models, engines and migrations (SQLite default, PostgreSQL in production)."""

from common.records.engine import make_engine, make_sessionmaker, normalise_url, transaction
from common.records.migrate import migrate
from common.records.models import Base, File, Job, JobEvent

__all__ = [
    "Base",
    "File",
    "Job",
    "JobEvent",
    "make_engine",
    "make_sessionmaker",
    "migrate",
    "normalise_url",
    "transaction",
]
