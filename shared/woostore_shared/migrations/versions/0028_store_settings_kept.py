"""store settings that change: a settings change keeps those it replaces, a backup its own

A store's settings (currency, country, language, admin email) can be changed once it is made:
the store's row holds the new ones while the change runs, and a change that fails puts back
the ones it kept (store_changes.settings_before). A backup records the settings the store had
(store_backups.settings): a restore gives them back, and a copy is made with them.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("store_changes", sa.Column("settings_before", JSONB(), nullable=True))
    op.add_column("store_backups", sa.Column("settings", JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("store_backups", "settings")
    op.drop_column("store_changes", "settings_before")
