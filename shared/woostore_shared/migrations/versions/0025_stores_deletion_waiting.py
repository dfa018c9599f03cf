"""stores deletion waiting: the reaper finds the deletions held up by copies by an index

A deletion asked for while a store was being made from one of the store's backups waits
for it, and each reaper pass looks for the ones free to start. It read every ready and
failed store to find them: 2.3 ms at 10,000 stores, growing with them. This partial index
holds only the stores whose deletion waits, so the look is as long as they are few.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_stores_deletion_waiting",
        "stores",
        ["delete_requested_at"],
        postgresql_where=sa.text(
            "delete_requested_at IS NOT NULL AND status IN ('ready', 'failed')"
        ),
    )


def downgrade() -> None:
    op.drop_index("ix_stores_deletion_waiting", table_name="stores")
