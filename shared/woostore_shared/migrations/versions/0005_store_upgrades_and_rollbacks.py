"""store upgrades and rollbacks: the updating status and the release's version

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # PostgreSQL allows this inside a transaction (12+) as long as nothing uses the value
    # before the commit; nothing here does.
    op.execute("ALTER TYPE store_status ADD VALUE IF NOT EXISTS 'updating' AFTER 'ready'")
    op.add_column("stores", sa.Column("chart_version", sa.String(length=40), nullable=True))
    op.add_column("stores", sa.Column("release_revision", sa.Integer(), nullable=True))
    op.add_column("stores", sa.Column("change", sa.String(length=20), nullable=True))
    op.add_column("stores", sa.Column("rollback_revision", sa.Integer(), nullable=True))


def downgrade() -> None:
    for column in ("rollback_revision", "change", "release_revision", "chart_version"):
        op.drop_column("stores", column)
    # PostgreSQL cannot drop an enum value; 'updating' stays, unused.
