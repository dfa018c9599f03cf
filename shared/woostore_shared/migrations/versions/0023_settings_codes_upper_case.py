"""settings codes in upper case: a store's currency, country and state as ISO writes them

The API took "eur" or "de" as readily as "EUR" and "DE" (pycountry finds either) and kept
them as typed, but WooCommerce and the store image take only the upper-case codes: such a
store claimed from the warm pool failed its personalise step and was made again cold, and
its currency was set as "eur". The API now keeps the codes in upper case; this writes the
stores made before it the same way, so that a retry or a copy of one gets codes that work.
Only the three codes change, and only where they are not upper case already.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CODES = ("currency", "country", "state")


def upgrade() -> None:
    for code in _CODES:
        # A JSON null or a missing key is left alone: jsonb_typeof is then 'null' or NULL.
        op.execute(
            sa.text(
                "UPDATE stores SET settings = jsonb_set(settings, ARRAY[:code],"
                " to_jsonb(upper(settings->>:code)))"
                " WHERE jsonb_typeof(settings->:code) = 'string'"
                " AND settings->>:code <> upper(settings->>:code)"
            ).bindparams(code=code)
        )


def downgrade() -> None:
    """Nothing to undo: upper-case codes are what every version reads."""
