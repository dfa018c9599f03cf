"""store leases and replay counts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stores", sa.Column("lease_owner", sa.String(), nullable=True))
    op.add_column(
        "stores", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("stores", sa.Column("replays", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("stores", "replays")
    op.drop_column("stores", "lease_expires_at")
    op.drop_column("stores", "lease_owner")
