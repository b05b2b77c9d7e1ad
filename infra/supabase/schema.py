"""The Supabase CLI migration file, generated from the Alembic migrations.

    uv run python -m infra.supabase.schema        # rewrite the file after a new migration

The file holds the whole schema up to the newest revision, in Alembic's offline SQL
(including `alembic_version`), so a project created from it with `supabase db push` or
`supabase db reset` is also at head for `aperture migrate`. Existing projects upgrade with
`aperture migrate`. A test regenerates the file and compares, so it cannot go stale.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from common.records.migrate import MIGRATIONS_DIR

HERE = Path(__file__).parent
#: Supabase CLI migrations are named `<timestamp>_<name>.sql`; the timestamp is fixed
#: so regenerating rewrites the same file.
MIGRATION_FILE = HERE / "migrations" / "20261122190000_aperture.sql"
HEADER = """\
-- Aperture schema for Supabase, generated from the Alembic migrations in
-- common/records/migrations by `uv run python -m infra.supabase.schema`. Do not edit.
-- Row-level security, owner policies and Realtime publication are applied by guarded
-- DO blocks (see common/records/rls.py).

"""


def render() -> str:
    """The migrations from base to head as PostgreSQL statements."""
    buffer = io.StringIO()
    config = Config(output_buffer=buffer)
    config.set_main_option("path_separator", "os")
    config.set_main_option("script_location", str(HERE / "alembic_offline"))
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    command.upgrade(config, "head", sql=True)
    return HEADER + buffer.getvalue().strip() + "\n"


def main() -> int:
    MIGRATION_FILE.parent.mkdir(parents=True, exist_ok=True)
    MIGRATION_FILE.write_text(render())
    print(f"wrote {MIGRATION_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
