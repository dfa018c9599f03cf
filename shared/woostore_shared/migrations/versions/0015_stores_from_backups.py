"""stores made from a backup, and traced work: the backup a new store (a clone) starts
from, and the trace a work order continues

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No foreign key: store_backups already refers to stores, and a backup's row is never
    # deleted (it says "deleted").
    op.add_column("stores", sa.Column("from_backup_id", sa.Uuid(), nullable=True))
    op.add_column("work_orders", sa.Column("traceparent", sa.String(length=55), nullable=True))
    op.add_column("work_orders", sa.Column("tracestate", sa.String(length=512), nullable=True))


def downgrade() -> None:
    op.drop_column("work_orders", "tracestate")
    op.drop_column("work_orders", "traceparent")
    op.drop_column("stores", "from_backup_id")
