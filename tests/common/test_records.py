"""The schema, on SQLite and PostgreSQL: migrations apply, match the models, go down and
up again, and the column types round-trip."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from common.records import File, Job, make_engine, make_sessionmaker, migrate, transaction
from common.records.migrate import downgrade
from common.records.models import Base


@pytest.fixture
def engine(database_url: str) -> Engine:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_migrations_create_the_core_tables(engine: Engine) -> None:
    assert {"jobs", "job_events", "files", "alembic_version"} <= set(
        inspect(engine).get_table_names()
    )


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_migrate_is_idempotent_and_reversible(engine: Engine) -> None:
    migrate(engine)
    downgrade(engine, "base")
    assert "jobs" not in inspect(engine).get_table_names()
    migrate(engine)
    assert "jobs" in inspect(engine).get_table_names()


def test_types_round_trip(engine: Engine) -> None:
    db = make_sessionmaker(engine)
    owner = uuid.uuid4()
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    job = Job(
        id=uuid.uuid4(),
        owner_id=owner,
        function="noop",
        status="queued",
        params={"nested": {"list": [1, 2.5, "ü"]}},
        tags=["a", "b"],
        executor="local",
        progress=0.0,
        attempts=0,
        max_attempts=1,
        event_seq=0,
        created_at=moment,
        updated_at=moment,
    )
    with transaction(db) as session:
        session.add(job)
        session.add(
            File(
                id=uuid.uuid4(),
                owner_id=owner,
                name="ä.tif",
                key="k/ä.tif",
                size=2**40,
                created_at=moment,
                updated_at=moment,
            )
        )
    with db() as session:
        stored = session.get(Job, job.id)
        assert stored is not None
        assert stored.owner_id == owner
        assert stored.params == {"nested": {"list": [1, 2.5, "ü"]}}
        assert stored.created_at == moment and stored.created_at.tzinfo is not None
        assert session.query(File).one().size == 2**40


def test_sqlite_uses_wal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
