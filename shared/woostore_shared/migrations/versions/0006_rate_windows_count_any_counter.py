"""rate windows count any counter (a key's, a tenant's), not only an actor's

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows of the old naming are a minute's worth of counts at most: the reaper forgets them.
    op.alter_column("rate_windows", "actor", new_column_name="counter")


def downgrade() -> None:
    op.alter_column("rate_windows", "counter", new_column_name="actor")
