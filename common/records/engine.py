"""Engines and sessions for the embedded SQLite default and for PostgreSQL (Supabase)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from common.errors import Conflict

log = logging.getLogger("aperture.records")

T = TypeVar("T")


def normalise_url(url: str) -> str:
    """`postgres://` and `postgresql://` (as Supabase prints them) use the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url, **kwargs)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN IMMEDIATE below is honoured.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and
        # then writes can fail with SQLITE_BUSY without waiting, under concurrent writers.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits together on success and rolls back on error."""
    with factory() as session, session.begin():
        yield session


def insert_unique(factory: sessionmaker[Session], row: Any, conflict: str) -> None:
    """Insert `row`; Conflict(`conflict`) when a unique constraint already holds it."""
    try:
        with transaction(factory) as session:
            session.add(row)
    except IntegrityError:
        raise Conflict(conflict) from None


def connection_lost(error: BaseException) -> bool:
    """Whether `error` says the database could not be reached (a restart, a failover, a
    dropped connection) rather than that the statement was wrong."""
    return isinstance(error, DBAPIError) and (
        error.connection_invalidated or isinstance(error, OperationalError)
    )


def outlasting_outages(call: Callable[[], T], *, within_s: float = 30.0) -> T:
    """`call()`, again while the database is unreachable, for up to `within_s` seconds
    (backing off from 0.1 to 2 s); any other error is raised at once. For writes that
    must not be lost to a blip: a job's final status."""
    deadline, delay = time.monotonic() + within_s, 0.1
    while True:
        try:
            return call()
        except DBAPIError as error:
            if not connection_lost(error) or time.monotonic() + delay > deadline:
                raise
            log.warning("database unreachable (%s); retrying", type(error.orig).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
