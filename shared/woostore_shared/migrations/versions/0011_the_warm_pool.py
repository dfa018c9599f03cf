"""the warm pool: stores owned by no tenant until claimed, each with its own namespace name

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # PostgreSQL allows this inside a transaction (12+) as long as nothing uses the value
    # before the commit; nothing here does.
    op.execute("ALTER TYPE store_status ADD VALUE IF NOT EXISTS 'pooled' AFTER 'ready'")
    # A pooled store belongs to no tenant until it is claimed.
    op.alter_column("stores", "tenant_id", nullable=True)
    # A claimed store takes its owner's slug but keeps the namespace it was made in: the
    # namespace is no longer derived from the slug. Every store so far was in "store-<slug>".
    op.add_column("stores", sa.Column("namespace", sa.String(length=63), nullable=True))
    op.execute("UPDATE stores SET namespace = 'store-' || slug")
    op.alter_column("stores", "namespace", nullable=False)
    op.create_unique_constraint("uq_stores_namespace", "stores", ["namespace"])
    op.add_column(
        "stores",
        sa.Column("origin", sa.String(length=10), nullable=False, server_default="cold"),
    )
    op.alter_column("stores", "origin", server_default=None)
    op.add_column("stores", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    # A claimed store's release has revisions from the pool: a rollback never returns to one.
    op.add_column("stores", sa.Column("first_revision", sa.Integer(), nullable=True))
    # When a pooled store last passed its verification: idle ones are verified again.
    op.add_column("stores", sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
    # What the pool keeper and a claim look for: pooled stores, oldest first.
    op.create_index(
        "ix_stores_unowned",
        "stores",
        ["created_at"],
        postgresql_where=sa.text("tenant_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_stores_unowned", table_name="stores")
    # Stores still in the pool have no owner to return to: they are forgotten (the reaper of
    # the older version removes their namespaces, which no store names any more).
    pooled = "SELECT id FROM stores WHERE tenant_id IS NULL"
    for table in ("store_steps", "store_events", "work_orders", "store_changes"):
        op.execute(f"DELETE FROM {table} WHERE store_id IN ({pooled})")  # noqa: S608  (fixed names)
    op.execute("DELETE FROM stores WHERE tenant_id IS NULL")
    op.alter_column("stores", "tenant_id", nullable=False)
    op.drop_column("stores", "verified_at")
    op.drop_column("stores", "first_revision")
    op.drop_column("stores", "claimed_at")
    op.drop_column("stores", "origin")
    op.drop_constraint("uq_stores_namespace", "stores", type_="unique")
    op.drop_column("stores", "namespace")
    # PostgreSQL cannot drop an enum value; 'pooled' stays, unused.
