"""rates refused by the statement taking them

A request's rates were taken by a statement of their own, whose answer the API read before
committing: two round trips more than the work needed. They are now taken by the statement
that writes the request's work as its transaction commits (``UnitOfWork.commit_with``), and
a rate past its allowance makes that statement fail, through this function: SQLSTATE WS430,
the counter as the detail. A create that reads nothing first is then one statement, in a
transaction of its own.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0032"
down_revision: str | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RATE_REFUSED = """
CREATE FUNCTION rate_refused(counter varchar) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a rate is spent' USING ERRCODE = 'WS430', DETAIL = counter;
END
$$
"""


def upgrade() -> None:
    op.execute(RATE_REFUSED)


def downgrade() -> None:
    op.execute("DROP FUNCTION rate_refused(varchar)")
