"""clone steps apart: a store made from a backup journals its steps as the phase "clone"

A store copied from a backup runs a recipe of its own (CLONE), which journalled its steps as
"provision", the cold recipe's phase. Step times are read by phase and position, so a copy's
steps were taken for a cold store's: its verify (10th) left the cold recipe's 11th step
unmeasured, and its backup steps stood in for the cold recipe's at the same places, until the
next cold store. The copies' steps journalled so far move to their own phase.

A copy under way across the upgrade may have a step journalled under the old phase by a
replica not yet upgraded; an upgraded replica runs that step again (steps are idempotent).
API replicas not yet upgraded answer GET /stores/step-times with an error until they are
replaced (they cannot name the phase; the dashboard shows no estimates meanwhile). From this
version on, a phase the API cannot name is left out of the figures instead.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _move_copies_steps(old: str, new: str) -> None:
    op.execute(
        f"UPDATE store_steps SET phase = '{new}' WHERE phase = '{old}'"  # noqa: S608  (constants)
        " AND store_id IN (SELECT id FROM stores WHERE from_backup_id IS NOT NULL)"
    )


def upgrade() -> None:
    _move_copies_steps("provision", "clone")


def downgrade() -> None:
    _move_copies_steps("clone", "provision")
