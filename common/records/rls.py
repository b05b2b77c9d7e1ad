"""Row-level security and Realtime for owned tables, as small Alembic helpers.

A Supabase frontend reads its own rows straight from the database (PostgREST, Realtime)
as role `authenticated`; the API connects with the service role and enforces ownership in
code. These helpers give every owned table per-operation policies for `authenticated`
(`(select auth.uid()) = owner_id`, the sub-select so the uid is computed once per query,
not per row), an index on the owner column, and Realtime publication where it exists.

Each guard is evaluated *in the database* (`DO` blocks), not in Python, so the same
migration works online and in Alembic's offline `--sql` mode (the Supabase CLI file):

- SQLite: nothing (no roles, no RLS).
- PostgreSQL without Supabase's `authenticated` role or `auth.uid()` (a plain server):
  nothing but the index, since the policies could not be created, and enabling RLS with
  no policy would only lock out a non-owner application role.
- Supabase (or a server with a compatible `auth` schema): RLS on, policies created.

Later migrations call these for their own tables (slides, datasets, ...):

    from common.records.rls import add_to_realtime, enable_owner_rls
    enable_owner_rls(op, "slides")
"""

from __future__ import annotations

from typing import Any

#: Operations that get a policy each, with the clauses Postgres accepts for them.
_OPERATIONS: dict[str, tuple[str, ...]] = {
    "select": ("USING",),
    "insert": ("WITH CHECK",),
    "update": ("USING", "WITH CHECK"),
    "delete": ("USING",),
}
ROLE = "authenticated"
PUBLICATION = "supabase_realtime"
_SUPABASE_AUTH = (
    f"EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') "
    "AND to_regprocedure('auth.uid()') IS NOT NULL"
)


def _is_postgres(op: Any) -> bool:
    return bool(op.get_context().dialect.name == "postgresql")


def _identifier(name: str) -> str:
    """Table and column names come from our own migrations; refuse anything odd anyway,
    since they are spliced into DDL."""
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def policy_name(table: str, operation: str) -> str:
    return f"{table}_owner_{operation}"


def enable_owner_rls(
    op: Any, table: str, *, owner_column: str = "owner_id", index: bool = True
) -> None:
    """Index `owner_column` (unless `index=False`, e.g. when it is the primary key); on
    Supabase also enable RLS with owner-only policies."""
    if not _is_postgres(op):
        return
    table, owner = _identifier(table), _identifier(owner_column)
    if index:
        op.execute(f'CREATE INDEX IF NOT EXISTS "ix_{table}_{owner}" ON "{table}" ("{owner}")')
    condition = f"(SELECT auth.uid()) = {owner}"
    statements = [f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY;']
    for operation, clauses in _OPERATIONS.items():
        name = policy_name(table, operation)
        checks = " ".join(f"{clause} ({condition})" for clause in clauses)
        statements += [
            f'DROP POLICY IF EXISTS "{name}" ON "{table}";',
            f'CREATE POLICY "{name}" ON "{table}" AS PERMISSIVE FOR {operation.upper()} '
            f"TO {ROLE} {checks};",
        ]
    op.execute(_guarded(_SUPABASE_AUTH, statements))


def disable_owner_rls(op: Any, table: str) -> None:
    """Undo `enable_owner_rls` (the owner index stays: the table's model declares it)."""
    if not _is_postgres(op):
        return
    table = _identifier(table)
    statements = [
        f'DROP POLICY IF EXISTS "{policy_name(table, operation)}" ON "{table}";'
        for operation in _OPERATIONS
    ]
    statements.append(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY;')
    op.execute(_guarded("TRUE", statements))


def add_to_realtime(op: Any, table: str) -> None:
    """Publish the table's changes to Supabase Realtime when the publication exists."""
    if not _is_postgres(op):
        return
    table = _identifier(table)
    op.execute(
        _guarded(
            f"EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '{PUBLICATION}') "
            f"AND NOT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = '{PUBLICATION}' "
            f"AND schemaname = current_schema() AND tablename = '{table}')",
            [f'ALTER PUBLICATION {PUBLICATION} ADD TABLE "{table}";'],
        )
    )


def remove_from_realtime(op: Any, table: str) -> None:
    if not _is_postgres(op):
        return
    table = _identifier(table)
    op.execute(
        _guarded(
            f"EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = '{PUBLICATION}' "
            f"AND schemaname = current_schema() AND tablename = '{table}')",
            [f'ALTER PUBLICATION {PUBLICATION} DROP TABLE "{table}";'],
        )
    )


def _guarded(condition: str, statements: list[str]) -> str:
    body = "\n    ".join(statements)
    return f"DO $$\nBEGIN\n  IF {condition} THEN\n    {body}\n  END IF;\nEND\n$$"
