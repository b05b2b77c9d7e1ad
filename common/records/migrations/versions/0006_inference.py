"""inference: registered ONNX models, external services, tasks and webhook callbacks

Every table is owned (models and tasks by their user, services by the admin who
registered them, callbacks by their task's owner): owner-only row-level security on
Supabase, as for the other owned tables.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 06:11:31.083408
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from common.records.rls import disable_owner_rls, enable_owner_rls

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIME = sa.DateTime(timezone=True)
OWNED = ("inference_models", "inference_services", "inference_tasks", "inference_callbacks")
INDEXES = {
    "inference_services": ("created_at", "owner_id"),
    "inference_models": ("created_at", "owner_id"),
    "inference_tasks": ("created_at", "model_name", "owner_id", "slide_id"),
    "inference_callbacks": ("owner_id", "task_id"),
}


def upgrade() -> None:
    op.create_table(
        "inference_services",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("base_url", sa.String(length=2048), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=False),
        sa.Column("mpp", sa.Float(), nullable=True),
        sa.Column("output", JSON, nullable=False),
        sa.Column("params_schema", JSON, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "inference_callbacks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("predictions_key", sa.String(length=1024), nullable=True),
        sa.Column("predictions_url", sa.Text(), nullable=True),
        sa.Column("received_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "event_id", name="uq_inference_callbacks_task_event"),
    )
    op.create_table(
        "inference_models",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_id", "name", name="uq_inference_models_owner_name"),
    )
    op.create_table(
        "inference_tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("slide_id", sa.Uuid(), nullable=False),
        sa.Column("model_kind", sa.String(length=16), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["slide_id"], ["slides.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    for table, columns in INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)
    for table in OWNED:
        enable_owner_rls(op, table)


def downgrade() -> None:
    for table in OWNED:
        disable_owner_rls(op, table)
    for table, columns in INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
    for table in ("inference_tasks", "inference_models", "inference_callbacks"):
        op.drop_table(table)
    op.drop_table("inference_services")
