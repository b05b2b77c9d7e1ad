"""The Supabase CLI migration file is the Alembic migrations rendered as SQL: it matches
a fresh rendering, and applied to a real PostgreSQL it builds the same schema that
`aperture migrate` builds (with RLS where Supabase's auth schema exists)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from common.records import make_engine, migrate
from common.records.migrate import MIGRATIONS_DIR
from common.records.models import Base
from infra.supabase import install_local_auth
from infra.supabase.schema import MIGRATION_FILE, render


def test_the_migration_file_is_in_sync_with_alembic() -> None:
    assert MIGRATION_FILE.read_text() == render(), (
        "infra/supabase/migrations is stale: run `uv run python -m infra.supabase.schema`"
    )


@pytest.mark.parametrize("supabase", [True, False], ids=["supabase", "plain"])
def test_the_file_builds_the_migrated_schema(postgres_url: str, supabase: bool) -> None:
    engine = make_engine(postgres_url)
    try:
        if supabase:
            install_local_auth(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql(MIGRATION_FILE.read_text())
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
            version = connection.execute(text("SELECT version_num FROM alembic_version"))
            secured = set(
                connection.execute(
                    text("SELECT relname FROM pg_class WHERE relrowsecurity")
                ).scalars()
            )
        head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        assert version.scalar_one() == head
        assert ({"jobs", "job_events", "files"} <= secured) is supabase
        migrate(engine)  # `aperture migrate` afterwards finds nothing to do
    finally:
        engine.dispose()
