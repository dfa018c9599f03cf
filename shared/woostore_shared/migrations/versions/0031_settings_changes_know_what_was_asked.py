"""a settings change knows which settings were asked for

A settings change set every setting in the shop, whichever was asked for: a currency or a
country the owner had changed in WooCommerce went back to the store's recorded one when only
the language was asked for. The change now records the settings asked for, the ones its
recipe sets (and a failed one puts back); a change recorded before this sets them all.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("store_changes", sa.Column("settings_asked", JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("store_changes", "settings_asked")
