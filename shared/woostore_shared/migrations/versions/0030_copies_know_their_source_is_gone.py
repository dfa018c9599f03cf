"""a copy knows when the backup it is made from can no longer be copied

A copy that failed (its backup found damaged, say) offered `retry` whatever became of its
backup, and the retry was refused (409). The flag is set by the lifecycle as a backup is
found damaged, deleted, or its store's deletion asked for; here, for the copies whose backup
is no longer complete or whose store is gone or going.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "stores",
        sa.Column("from_backup_lost", sa.Boolean(), nullable=False, server_default="false"),
    )
    op.execute(
        "UPDATE stores SET from_backup_lost = true WHERE from_backup_id IN ("
        " SELECT backup.id FROM store_backups AS backup JOIN stores AS source"
        " ON source.id = backup.store_id WHERE backup.status <> 'complete'"
        " OR source.status IN ('deleting', 'deleted') OR source.delete_requested_at IS NOT NULL)"
    )


def downgrade() -> None:
    op.drop_column("stores", "from_backup_lost")
