"""store backups and restores: statuses for a store being backed up or restored, a row per
backup, and the backup a restore returns a store to

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE store_status ADD VALUE IF NOT EXISTS 'backing_up' AFTER 'updating'")
    op.execute("ALTER TYPE store_status ADD VALUE IF NOT EXISTS 'restoring' AFTER 'backing_up'")
    op.add_column("store_changes", sa.Column("backup_id", sa.Uuid(), nullable=True))
    op.create_table(
        "store_backups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("store_id", sa.Uuid(), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("chart_version", sa.String(length=40), nullable=True),
        sa.Column("wordpress_version", sa.String(length=20), nullable=True),
        sa.Column("woocommerce_version", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_store_backups_store_id", "store_backups", ["store_id"])


def downgrade() -> None:
    op.drop_column("store_changes", "backup_id")
    op.drop_index("ix_store_backups_store_id", table_name="store_backups")
    op.drop_table("store_backups")
    # PostgreSQL cannot drop an enum value; 'backing_up' and 'restoring' stay, unused.
