"""step times: each journalled step's place in its recipe and how long it ran

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Steps journalled before were not measured: they keep NULLs, which no estimate counts.
    op.add_column("store_steps", sa.Column("position", sa.Integer(), nullable=True))
    op.add_column("store_steps", sa.Column("seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("store_steps", "seconds")
    op.drop_column("store_steps", "position")
