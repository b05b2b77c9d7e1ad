"""Alembic environment for offline (`--sql`) rendering of the migrations as PostgreSQL,
used to generate the Supabase CLI migration file. No database connection is made."""

from __future__ import annotations

from alembic import context

from common.records.models import Base

context.configure(
    dialect_name="postgresql",
    target_metadata=Base.metadata,
    literal_binds=True,
    # The Supabase CLI runs each migration file in a transaction of its own.
    transactional_ddl=False,
)
with context.begin_transaction():
    context.run_migrations()
