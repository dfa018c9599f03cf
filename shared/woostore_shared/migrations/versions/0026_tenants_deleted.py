"""tenants deleted: a tenant can be deleted once its stores are, and its name used again

A tenant's row stays, marked deleted: the audit log's entries and its deleted stores'
rows name it. Its name is unique among the tenants not deleted only, so an operator can
make a tenant of that name again. A deleted tenant holds no live store: a store made for
it as it was deleted (a create already past its key's check) fails at its commit, where
the store counts (0018) would count it against the tenant.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint("tenants_name_key", "tenants", type_="unique")
    op.create_index(
        "ux_tenants_name", "tenants", ["name"], unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )  # fmt: skip
    op.create_check_constraint(
        "ck_tenants_deleted_hold_no_stores", "tenants", "deleted_at IS NULL OR live_stores = 0"
    )


def downgrade() -> None:
    op.drop_constraint("ck_tenants_deleted_hold_no_stores", "tenants", type_="check")
    op.drop_index("ux_tenants_name", table_name="tenants")
    # Every name is unique again: a deleted tenant's takes its id (100 characters at most).
    op.execute(
        "UPDATE tenants SET name = left(name, 53) || ' (deleted ' || id || ')'"
        " WHERE deleted_at IS NOT NULL"
    )
    op.create_unique_constraint("tenants_name_key", "tenants", ["name"])
    op.drop_column("tenants", "deleted_at")
