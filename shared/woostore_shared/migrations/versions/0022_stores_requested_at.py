"""stores requested at: a store's owner's wait counts from their latest request

A store's time to ready (``ready_in_seconds``) and the dashboard's time elapsed counted from
``created_at``. A failed store retried days later then read as ready in days. The column
holds when its owner last asked for it: made, claimed from the warm pool, or retried (each
writes a ``requested`` event).

Stores made before take the time of their latest ``requested`` event, or their making if
their events are gone (pruned after the retention period). The column's default is the time
of the insert, so a store made by a replica not yet upgraded (this runs before the rollout)
counts from its making, as before; such a replica's retries keep the earlier request.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stores", sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True))
    # GREATEST skips a NULL: a store whose events are gone keeps its making.
    op.execute(
        "UPDATE stores SET requested_at = GREATEST(created_at, (SELECT max(time)"
        " FROM store_events WHERE store_events.store_id = stores.id"
        " AND store_events.type = 'io.woostore.store.requested'))"
    )
    op.alter_column("stores", "requested_at", nullable=False, server_default=sa.func.now())


def downgrade() -> None:
    op.drop_column("stores", "requested_at")
