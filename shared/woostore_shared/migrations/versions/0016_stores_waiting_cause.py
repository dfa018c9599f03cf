"""why a store waits: the plain-language cause of the current step's wait on the cluster

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stores", sa.Column("waiting_cause", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("stores", "waiting_cause")
