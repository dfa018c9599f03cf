"""stores queued at: a queued store's place counts from when it last entered the queue

A store's place in the cold queue was counted by its ``created_at``. A store retried after
a failure, or a claim that fell back to a cold start, enters the queue again long after it
was made: counted by its age, it was shown ahead of the stores queued before it came back,
while the provisioner takes work orders in the order they were sent. ``queued_at`` is set
each time a store becomes queued (``woostore_shared.lifecycle``), and places are counted
from this index over it, as 0019's index counted them over ``created_at``.

Stores queued now entered the queue at their last change (``updated_at``: made, retried or
fallen back); the others were queued when they were made. The column's default is the time
of the insert, so a store made by a replica not yet upgraded (this runs before the rollout)
still has a place; such a replica's retries keep their old one until it is replaced.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stores", sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE stores SET queued_at = CASE WHEN status = 'queued' THEN updated_at"
        " ELSE created_at END"
    )
    op.alter_column("stores", "queued_at", nullable=False, server_default=sa.func.now())
    op.create_index(
        "ix_stores_status_queued",
        "stores",
        ["status", "queued_at", "id"],
        postgresql_include=["tenant_id", "claimed_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_stores_status_queued", table_name="stores")
    op.drop_column("stores", "queued_at")
