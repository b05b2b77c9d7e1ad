"""Supabase: the CLI migration file generated from Alembic, and a Supabase-compatible
`auth` schema for plain PostgreSQL (tests, local development)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

HERE = Path(__file__).parent
LOCAL_AUTH_SQL = HERE / "local_auth.sql"


def install_local_auth(engine: Engine) -> None:
    """Create Supabase's roles, `auth.uid()`, default grants and the Realtime publication
    in the engine's database (idempotent), so RLS behaves there as on Supabase."""
    with engine.begin() as connection:
        connection.exec_driver_sql(LOCAL_AUTH_SQL.read_text())
