"""slides: whole-slide image records

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 20:07:26.902881
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from common.records.rls import disable_owner_rls, enable_owner_rls

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "slides",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("vendor", sa.String(length=64), nullable=True),
        sa.Column("width", sa.BigInteger(), nullable=False),
        sa.Column("height", sa.BigInteger(), nullable=False),
        sa.Column("level_count", sa.Integer(), nullable=False),
        sa.Column("levels", JSON, nullable=False),
        sa.Column("tile_width", sa.Integer(), nullable=True),
        sa.Column("tile_height", sa.Integer(), nullable=True),
        sa.Column("mpp_x", sa.Float(), nullable=True),
        sa.Column("mpp_y", sa.Float(), nullable=True),
        sa.Column("objective_power", sa.Float(), nullable=True),
        sa.Column("bounds", JSON, nullable=True),
        sa.Column("background_color", sa.String(length=16), nullable=True),
        sa.Column("quickhash", sa.String(length=128), nullable=True),
        sa.Column("properties", JSON, nullable=False),
        sa.Column("associated", JSON, nullable=False),
        sa.Column("prediction_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("source_job_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["source_job_id"], ["jobs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("file_id", name="uq_slides_file_id"),
    )
    with op.batch_alter_table("slides", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slides_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_slides_dataset_id"), ["dataset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_slides_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_slides_vendor"), ["vendor"], unique=False)
    enable_owner_rls(op, "slides")


def downgrade() -> None:
    disable_owner_rls(op, "slides")
    with op.batch_alter_table("slides", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slides_vendor"))
        batch_op.drop_index(batch_op.f("ix_slides_owner_id"))
        batch_op.drop_index(batch_op.f("ix_slides_dataset_id"))
        batch_op.drop_index(batch_op.f("ix_slides_created_at"))
    op.drop_table("slides")
