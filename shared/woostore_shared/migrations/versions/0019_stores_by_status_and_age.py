"""stores by status and age: a queued store's place is counted from an index

A queued store's place in the queue was numbered by ``row_number()`` over the whole queue,
sorted at each read: about 8 ms at 9,000 queued stores, for every create and every page
showing a queued store. It is now the count of queued stores made before the oldest one
asked for, plus their numbers from there to the newest one asked for, both read from this
index (its status, then its age, with the two columns the queue also tests carried along):
about 3 ms at 9,000. Lists filtered by status are served by it too, so it replaces the index
on status alone.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_stores_status_created",
        "stores",
        ["status", "created_at", "id"],
        postgresql_include=["tenant_id", "claimed_at"],
    )
    op.drop_index("ix_stores_status", table_name="stores")


def downgrade() -> None:
    op.create_index("ix_stores_status", "stores", ["status"])
    op.drop_index("ix_stores_status_created", table_name="stores")
