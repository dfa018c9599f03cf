"""tenants suspended: an operator stops a tenant's keys for a while and keeps its stores

A suspended tenant's keys are refused (its sessions and event streams end with them) until an
admin resumes it; its stores keep serving their shoppers and are not touched.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("tenants", "suspended_at")
