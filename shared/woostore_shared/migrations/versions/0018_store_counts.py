"""store counts: the caps are counted by the database as each store changes, at commit

Creates used to serialise on one platform-wide advisory lock while they counted every live
store. Now a trigger keeps the counts (each tenant's live stores on its row, the platform's
live and queued stores in a one-row table) and runs deferred, at COMMIT: the platform's row
is locked only while PostgreSQL commits, not while the API builds the rest of the store.

A transaction that asks for the caps to hold names them first (``set_config`` of the
``woostore.*`` settings below, what ``woostore_api.stores.quotas.counted`` does); if
its changes would take a count past one, its COMMIT fails with SQLSTATE WS429, the limit's
name as the message and the cap as the detail. Counts only ever
fall without a check, so freeing a store never fails.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# woostore_shared.lifecycle.LIVE as of this revision; tests/shared/test_store_counts.py
# fails if the two part (a new status needs a migration replacing this function). Compared
# as text: upgrading from before 'backing_up' existed, one transaction adds it and counts.
LIVE = "('queued', 'provisioning', 'updating', 'backing_up', 'restoring', 'deleting', "
LIVE += "'ready', 'pooled')"
# An owner's cold store waiting to start: woostore_shared.lifecycle.in_the_cold_queue.
QUEUED = "{row}.status::text = 'queued' AND {row}.tenant_id IS NOT NULL"
QUEUED += " AND {row}.claimed_at IS NULL"

COUNT_STORES = f"""
CREATE FUNCTION count_stores() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_live boolean := TG_OP = 'UPDATE' AND OLD.status::text IN {LIVE};
    is_live boolean := NEW.status::text IN {LIVE};
    was_queued boolean := TG_OP = 'UPDATE' AND {QUEUED.format(row="OLD")};
    is_queued boolean := {QUEUED.format(row="NEW")};
    moved boolean := TG_OP = 'UPDATE' AND NEW.tenant_id IS DISTINCT FROM OLD.tenant_id;
    -- The tenant cap of a tenant without its own; null where nothing asked for caps.
    tenant_default integer := nullif(current_setting('woostore.tenant_store_limit', true), '');
    platform_cap integer := nullif(current_setting('woostore.max_live_stores', true), '');
    queue_cap integer := nullif(current_setting('woostore.max_queued_stores', true), '');
    counted tenants;
    platform store_counts;
BEGIN
    IF was_live AND OLD.tenant_id IS NOT NULL AND (moved OR NOT is_live) THEN
        UPDATE tenants SET live_stores = live_stores - 1 WHERE id = OLD.tenant_id;
    END IF;
    IF is_live AND NEW.tenant_id IS NOT NULL AND (moved OR NOT was_live) THEN
        UPDATE tenants SET live_stores = live_stores + 1 WHERE id = NEW.tenant_id
            RETURNING * INTO counted;
        IF tenant_default IS NOT NULL
                AND counted.live_stores > coalesce(counted.store_limit, tenant_default) THEN
            RAISE EXCEPTION 'tenant-stores' USING ERRCODE = 'WS429',
                DETAIL = coalesce(counted.store_limit, tenant_default)::text;
        END IF;
    END IF;
    IF is_live = was_live AND is_queued = was_queued THEN
        RETURN NULL;
    END IF;
    UPDATE store_counts
        SET live = live + is_live::int - was_live::int,
            queued = queued + is_queued::int - was_queued::int
        RETURNING * INTO platform;
    IF is_live AND NOT was_live AND platform.live > platform_cap THEN
        RAISE EXCEPTION 'platform-stores' USING ERRCODE = 'WS429', DETAIL = platform_cap::text;
    END IF;
    IF is_queued AND NOT was_queued AND platform.queued > queue_cap THEN
        RAISE EXCEPTION 'queued-stores' USING ERRCODE = 'WS429', DETAIL = queue_cap::text;
    END IF;
    RETURN NULL;
END
$$
"""  # noqa: S608  (fixed text, no input)


def upgrade() -> None:
    op.add_column(
        "tenants", sa.Column("live_stores", sa.Integer(), nullable=False, server_default="0")
    )
    op.create_table(
        "store_counts",
        sa.Column("one_row", sa.Boolean(), primary_key=True, server_default=sa.true()),
        sa.Column("live", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.CheckConstraint("one_row", name="ck_store_counts_one_row"),
    )
    # Services of the previous version may still be making stores: none may slip in between
    # counting and counting on.
    op.execute("LOCK TABLE stores IN SHARE ROW EXCLUSIVE MODE")
    live, queued = f"status::text IN {LIVE}", QUEUED.format(row="stores")
    op.execute(
        "INSERT INTO store_counts (live, queued) SELECT "  # noqa: S608  (fixed text)
        f"count(*) FILTER (WHERE {live}), count(*) FILTER (WHERE {queued}) FROM stores"
    )
    op.execute(
        "UPDATE tenants SET live_stores = (SELECT count(*) FROM stores "  # noqa: S608
        f"WHERE stores.tenant_id = tenants.id AND stores.{live})"
    )
    op.execute(COUNT_STORES)
    op.execute(
        "CREATE CONSTRAINT TRIGGER count_stores "
        "AFTER INSERT OR UPDATE OF status, tenant_id, claimed_at ON stores "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION count_stores()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER count_stores ON stores")
    op.execute("DROP FUNCTION count_stores()")
    op.drop_table("store_counts")
    op.drop_column("tenants", "live_stores")
