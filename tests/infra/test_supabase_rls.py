"""Row-level security on a real PostgreSQL with a Supabase-compatible `auth` schema: as
role `authenticated` a user sees and changes only their own rows, `anon` sees nothing,
and the API's own connection (the table owner, like Supabase's service role) sees all.

A new owned table joins every test by adding its name to OWNED_TABLES; rows are made
from the models, so no per-table code is needed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Column, Connection, Engine, Table, create_engine, text
from sqlalchemy.engine import make_url

from common.records import make_engine, migrate
from common.records.migrate import downgrade
from common.records.models import Base
from common.records.rls import policy_name
from infra.supabase import install_local_auth

#: Every table row-level security must protect, with its owner column. Add a table here
#: (one line) and every test below covers it.
OWNED_TABLES = {
    "jobs": "owner_id",
    "job_events": "owner_id",
    "files": "owner_id",
    "users": "id",  # an account owns itself
    "api_keys": "owner_id",
    "auth_sessions": "owner_id",
    "events": "owner_id",
    "datasets": "owner_id",
    "uploads": "owner_id",
    "slides": "owner_id",
    "inference_models": "owner_id",
    "inference_services": "owner_id",
    "inference_tasks": "owner_id",
    "inference_callbacks": "owner_id",
}
#: Those the schema has now: a table listed ahead of its migration joins when it lands.
PRESENT = [table for table in OWNED_TABLES if table in Base.metadata.tables]
REALTIME_TABLES = {"jobs", "job_events"}


def _supabase_like(url: str) -> Engine:
    engine = make_engine(url)
    install_local_auth(engine)
    migrate(engine)
    return engine


@pytest.fixture(scope="module")
def supabase_engine(postgres_server_url: str) -> Iterator[Engine]:
    """One migrated Supabase-like database for the module's read-only tests."""
    name = f"aperture_rls_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = _supabase_like(
        make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    )
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _value(
    table: Table, column: Column[Any], owner: uuid.UUID, made: dict[str, dict[str, Any]]
) -> Any:
    """A valid value for a NOT NULL column; foreign keys point at the owner's own rows."""
    if column.name == OWNED_TABLES[table.name]:
        return owner
    for key in column.foreign_keys:
        return made[key.column.table.name][key.column.name]
    kind = getattr(column.type, "impl_instance", column.type).python_type  # TypeDecorators
    values: dict[type, Any] = {
        uuid.UUID: uuid.uuid4(),
        datetime: datetime.now(UTC),
        dict: {},
        list: [],
        bool: False,
        int: 1,
        float: 1.0,
        str: uuid.uuid4().hex[:8],
    }
    if kind not in values:
        raise TypeError(f"no test value for {table.name}.{column.name} of type {kind!r}")
    return values[kind]


def _seed(connection: Connection, owner: uuid.UUID) -> None:
    """One row per owned table for `owner`, parents first (model defaults fill the rest)."""
    made: dict[str, dict[str, Any]] = {}
    for table in Base.metadata.sorted_tables:
        if table.name not in OWNED_TABLES:
            continue
        row = {
            c.name: _value(table, c, owner, made)
            for c in table.columns
            if c.name == OWNED_TABLES[table.name]
            or not (c.nullable or c.default is not None or c.autoincrement is True)
        }
        inserted = connection.execute(table.insert().values(**row).returning(*table.c))
        made[table.name] = dict(inserted.mappings().one())


def _as_role(connection: Connection, role: str, sub: uuid.UUID | None) -> None:
    claims = {"role": role, **({"sub": str(sub)} if sub else {})}
    connection.execute(text(f"SET LOCAL ROLE {role}"))
    connection.execute(
        text("SELECT set_config('request.jwt.claims', :claims, true)"),
        {"claims": json.dumps(claims)},
    )


def _owners(connection: Connection, table: str) -> set[uuid.UUID | None]:
    owner = OWNED_TABLES[table]
    return set(connection.execute(text(f"SELECT {owner} FROM {table}")).scalars())


def _visible(engine: Engine, table: str, role: str, sub: uuid.UUID | None) -> set[uuid.UUID | None]:
    """Owners of the rows `role` with subject `sub` can read, in a transaction of its own."""
    with engine.connect() as connection, connection.begin():
        _as_role(connection, role, sub)
        return _owners(connection, table)


@pytest.fixture(scope="module")
def two_users(supabase_engine: Engine) -> tuple[uuid.UUID, uuid.UUID]:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    with supabase_engine.begin() as connection:
        _seed(connection, alice)
        _seed(connection, bob)
    return alice, bob


@pytest.mark.parametrize("table", PRESENT)
def test_a_user_sees_only_their_own_rows(
    supabase_engine: Engine, two_users: Any, table: str
) -> None:
    alice, bob = two_users
    with supabase_engine.connect() as connection:
        assert _owners(connection, table) == {alice, bob}  # the API's connection sees all
    assert _visible(supabase_engine, table, "service_role", None) == {alice, bob}
    assert _visible(supabase_engine, table, "authenticated", alice) == {alice}
    assert _visible(supabase_engine, table, "authenticated", bob) == {bob}
    assert _visible(supabase_engine, table, "authenticated", None) == set()  # no subject
    assert _visible(supabase_engine, table, "anon", None) == set()
    assert _visible(supabase_engine, table, "anon", alice) == set()


@pytest.mark.parametrize("table", PRESENT)
def test_a_user_cannot_change_others_rows(
    supabase_engine: Engine, two_users: Any, table: str
) -> None:
    alice, bob = two_users
    owner = OWNED_TABLES[table]
    with supabase_engine.connect() as connection, connection.begin():
        _as_role(connection, "authenticated", alice)
        changed = connection.execute(
            text(f"UPDATE {table} SET {owner} = {owner} WHERE {owner} = :bob"), {"bob": bob}
        )
        assert changed.rowcount == 0
        deleted = connection.execute(
            text(f"DELETE FROM {table} WHERE {owner} = :bob"), {"bob": bob}
        )
        assert deleted.rowcount == 0
        with pytest.raises(Exception, match="row-level security"):
            connection.execute(
                text(f"UPDATE {table} SET {owner} = :bob WHERE {owner} = :alice"),
                {"bob": bob, "alice": alice},
            )
    with supabase_engine.connect() as connection:
        assert _owners(connection, table) == {alice, bob}


def test_policies_realtime_and_owner_indexes(supabase_engine: Engine) -> None:
    with supabase_engine.connect() as connection:
        secured = set(
            connection.execute(
                text("SELECT relname FROM pg_class WHERE relrowsecurity AND relkind = 'r'")
            ).scalars()
        )
        policies = set(
            connection.execute(
                text("SELECT policyname FROM pg_policies WHERE 'authenticated' = ANY(roles)")
            ).scalars()
        )
        published = set(
            connection.execute(
                text(
                    "SELECT tablename FROM pg_publication_tables "
                    "WHERE pubname = 'supabase_realtime'"
                )
            ).scalars()
        )
        indexed = set(
            connection.execute(
                text("SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%(owner_id)%'")
            ).scalars()
        )
    assert set(PRESENT) <= secured
    assert {
        policy_name(t, op) for t in PRESENT for op in ("select", "insert", "update", "delete")
    } <= policies
    assert published == REALTIME_TABLES
    assert {t for t in PRESENT if OWNED_TABLES[t] == "owner_id"} <= indexed


def test_every_table_with_an_owner_is_covered() -> None:
    """A new owned table must call `enable_owner_rls` in its migration and join
    OWNED_TABLES here."""
    owned = {t.name for t in Base.metadata.sorted_tables if "owner_id" in t.c}
    assert owned <= set(OWNED_TABLES), (
        f"tables with an owner but no RLS test: {sorted(owned - set(OWNED_TABLES))}; add "
        "each to OWNED_TABLES in tests/infra/test_supabase_rls.py and call "
        "common.records.rls.enable_owner_rls in its migration"
    )


def test_plain_postgres_is_left_without_rls(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            secured = connection.execute(
                text("SELECT count(*) FROM pg_class WHERE relrowsecurity")
            ).scalar_one()
        assert secured == 0
    finally:
        engine.dispose()


def test_downgrade_removes_policies_and_publication(postgres_url: str) -> None:
    engine = _supabase_like(postgres_url)
    try:
        downgrade(engine, "0001")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM pg_policies")).scalar_one() == 0
            assert (
                connection.execute(text("SELECT count(*) FROM pg_publication_tables")).scalar_one()
                == 0
            )
            assert (
                connection.execute(
                    text("SELECT count(*) FROM pg_class WHERE relrowsecurity")
                ).scalar_one()
                == 0
            )
        migrate(engine)  # and up again
    finally:
        engine.dispose()
