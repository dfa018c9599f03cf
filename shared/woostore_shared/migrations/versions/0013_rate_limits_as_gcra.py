"""rate limits as GCRA: one theoretical arrival time per counter, not a count per minute

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The windows hold a minute's counts at most: every counter starts with a full allowance.
    op.drop_table("rate_windows")
    op.create_table(
        "rate_limits",
        sa.Column("counter", sa.String(length=100), nullable=False),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("counter"),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    op.create_table(
        "rate_windows",
        sa.Column("counter", sa.String(length=100), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("counter", "window_start"),
    )
