"""work orders apart from store events, and the end of a failed store's clean-up

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stores", sa.Column("cleaned_up_at", sa.DateTime(timezone=True), nullable=True))
    # Before this version a failed store was cleaned up as it failed (and the reaper removes
    # any namespace a cleaned-up store left behind), so every failed store counts as done.
    op.execute("UPDATE stores SET cleaned_up_at = updated_at WHERE status = 'failed'")
    op.create_table(
        "work_orders",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("store_id", sa.Uuid(), sa.ForeignKey("stores.id"), nullable=False),
        sa.Column("lane", sa.String(length=20), nullable=False),
        sa.Column("correlation_id", sa.String(length=64), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_work_orders_unpublished",
        "work_orders",
        ["time"],
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_work_orders_unpublished", table_name="work_orders")
    op.drop_table("work_orders")
    op.drop_column("stores", "cleaned_up_at")
