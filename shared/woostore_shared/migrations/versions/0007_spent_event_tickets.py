"""spent event tickets: a ticket opens one event stream, once

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "spent_tickets",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_spent_tickets_expires_at", "spent_tickets", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_spent_tickets_expires_at", table_name="spent_tickets")
    op.drop_table("spent_tickets")
