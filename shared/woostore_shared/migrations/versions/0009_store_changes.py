"""store changes: each upgrade or rollback with its outcome, not a ready store's failure

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "store_changes",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("store_id", sa.Uuid(), sa.ForeignKey("stores.id"), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=20), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("chart_version", sa.String(length=40), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=True),
    )
    op.create_index(
        "ix_store_changes_store_requested", "store_changes", ["store_id", "requested_at"]
    )
    # A ready store kept the reason its last change failed in failure_reason: that becomes
    # the change's outcome (its kind read from the change_failed event), and the store's
    # failure_reason is again only why a store failed.
    op.execute(
        """
        INSERT INTO store_changes (id, store_id, kind, requested_at, finished_at, result, reason)
        SELECT gen_random_uuid(), s.id,
               COALESCE(e.envelope -> 'data' ->> 'change', 'upgrade'),
               COALESCE(e.time, s.updated_at), COALESCE(e.time, s.updated_at),
               'failed', s.failure_reason
        FROM stores s
        LEFT JOIN LATERAL (
            SELECT time, envelope FROM store_events
            WHERE store_id = s.id AND type = 'io.woostore.store.change_failed'
            ORDER BY time DESC LIMIT 1
        ) e ON true
        WHERE s.status IN ('ready', 'updating') AND s.failure_reason IS NOT NULL
        """
    )
    op.execute("UPDATE stores SET failure_reason = NULL WHERE status IN ('ready', 'updating')")


def downgrade() -> None:
    op.drop_index("ix_store_changes_store_requested", table_name="store_changes")
    op.drop_table("store_changes")
