"""store events by time: the reaper prunes the oldest across every store

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_store_events_time", "store_events", ["time"])


def downgrade() -> None:
    op.drop_index("ix_store_events_time", table_name="store_events")
