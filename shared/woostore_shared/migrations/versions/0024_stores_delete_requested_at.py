"""stores delete requested at: a store asked to be deleted while busy is deleted when its work ends

Deleting a store while an upgrade, a rollback, a backup or a restore ran on it was refused
(409): its owner had to come back and ask again. The deletion is now accepted at once and
starts when the work ends; this column holds when it was asked for, for every deletion.

Stores deleting or deleted before take the time of their latest ``delete_requested`` event,
or else of their deletion, or of their latest change (their events may have been pruned).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "stores", sa.Column("delete_requested_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE stores SET delete_requested_at = COALESCE((SELECT max(time)"
        " FROM store_events WHERE store_events.store_id = stores.id"
        " AND store_events.type = 'io.woostore.store.delete_requested'), deleted_at, updated_at)"
        " WHERE status IN ('deleting', 'deleted')"
    )


def downgrade() -> None:
    op.drop_column("stores", "delete_requested_at")
