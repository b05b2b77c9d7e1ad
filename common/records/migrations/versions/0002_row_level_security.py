"""row-level security and realtime for jobs, job_events, files

On Supabase: RLS with owner-only policies for role `authenticated`, and `jobs` /
`job_events` in the `supabase_realtime` publication. Elsewhere each step is a guarded
no-op (see common/records/rls.py), so SQLite and plain PostgreSQL are unchanged.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 19:50:00
"""

from collections.abc import Sequence

from alembic import op

from common.records.rls import (
    add_to_realtime,
    disable_owner_rls,
    enable_owner_rls,
    remove_from_realtime,
)

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNED = ("jobs", "job_events", "files")
REALTIME = ("jobs", "job_events")


def upgrade() -> None:
    for table in OWNED:
        enable_owner_rls(op, table)
    for table in REALTIME:
        add_to_realtime(op, table)


def downgrade() -> None:
    for table in REALTIME:
        remove_from_realtime(op, table)
    for table in OWNED:
        disable_owner_rls(op, table)
