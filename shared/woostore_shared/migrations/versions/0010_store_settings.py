"""store settings: currency, country and state, language, admin email, sample products

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What every store got before owners could choose.
_BEFORE = (
    '{"currency": "INR", "country": "IN", "state": "KA", "language": "en_US",'
    ' "admin_email": null, "sample_products": true}'
)


def upgrade() -> None:
    op.add_column(
        "stores",
        sa.Column(
            "settings",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text(f"'{_BEFORE}'::jsonb"),
        ),
    )
    op.alter_column("stores", "settings", server_default=None)


def downgrade() -> None:
    op.drop_column("stores", "settings")
