"""stores count their complete backups: a restore is offered only to a store with one

A store's actions offered `restore` whenever its status allowed one, to a store never backed
up too; a client had to read its backups to learn that nothing could be restored. The count
is counted by the lifecycle at every change of a backup's status; the stores here start
from what their backups are (a deleted store, whose backups are gone, from none).

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "stores",
        sa.Column("complete_backups", sa.Integer(), nullable=False, server_default="0"),
    )
    op.execute(
        "UPDATE stores SET complete_backups = counted.complete"
        " FROM (SELECT store_id, count(*) AS complete FROM store_backups"
        " WHERE status = 'complete' GROUP BY store_id) AS counted"
        " WHERE counted.store_id = stores.id AND stores.status <> 'deleted'"
    )


def downgrade() -> None:
    op.drop_column("stores", "complete_backups")
