"""Limits on creating stores: a per-key rate, and caps on live and queued stores.

Both hold across API replicas and under any concurrency, because PostgreSQL does the
counting: the rate is an atomic upsert on the key's current minute, and the caps are checked
while holding a transaction-scoped advisory lock that every store creation takes.
"""

from __future__ import annotations

import math
import uuid
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from woostore_api.problems import Problem
from woostore_shared.lifecycle import LIVE
from woostore_shared.models import RateWindow, Store, StoreStatus, Tenant, utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.settings import Settings

WINDOW = timedelta(minutes=1)
# Any constant works; it only has to differ from the other advisory locks (the reaper's).
CREATE_LOCK = 0x574F_4F53  # "WOOS"
# Live-store caps free up only when someone deletes a store; a queue slot within minutes.
RETRY_CAP_SECONDS = 300
RETRY_QUEUE_SECONDS = 60


def _too_many(limit: str, detail: str, retry_after: int, allowed: int) -> Problem:
    return Problem(
        429, "Limit reached", detail, kind="limit-reached",
        headers={"Retry-After": str(retry_after)}, limit=limit, allowed=allowed,
    )  # fmt: skip


async def count_create(outbox: Outbox, actor: str, settings: Settings) -> None:
    """Count a create request against the actor's minute; refuse it past the rate."""
    now = utcnow()
    window = now.replace(second=0, microsecond=0)
    upsert = (
        insert(RateWindow)
        .values(actor=actor, window_start=window, count=1)
        .on_conflict_do_update(
            index_elements=["actor", "window_start"], set_={"count": RateWindow.count + 1}
        )
        .returning(col(RateWindow.count))
    )
    async with outbox.transaction() as tx:
        count = (await tx.session.exec(upsert)).scalar_one()
        await tx.session.exec(
            delete(RateWindow).where(
                col(RateWindow.actor) == actor, col(RateWindow.window_start) < window
            )
        )
    if count > settings.creates_per_minute:
        retry_after = math.ceil((window + WINDOW - now).total_seconds())
        raise _too_many(
            "creates-per-minute",
            f"this key may create {settings.creates_per_minute} stores a minute",
            retry_after,
            settings.creates_per_minute,
        )


async def check_capacity(session: AsyncSession, tenant_id: uuid.UUID, settings: Settings) -> None:
    """Refuse a new store past any cap. Call inside the creating transaction: the lock
    it takes is held until that transaction ends, so concurrent creations count in turn."""
    await session.exec(select(func.pg_advisory_xact_lock(CREATE_LOCK)))
    rows = await session.exec(
        select(col(Store.tenant_id), col(Store.status), func.count())
        .where(col(Store.status).in_(LIVE))
        .group_by(col(Store.tenant_id), col(Store.status))
    )
    live = tenant_live = queued = 0
    for owner, status, count in rows:
        live += count
        tenant_live += count if owner == tenant_id else 0
        queued += count if status is StoreStatus.QUEUED else 0
    tenant = await session.get(Tenant, tenant_id)
    tenant_limit = settings.tenant_store_limit
    if tenant is not None and tenant.store_limit is not None:
        tenant_limit = tenant.store_limit
    if live >= settings.max_live_stores:
        raise _too_many(
            "platform-stores",
            f"the platform holds its maximum of {settings.max_live_stores} stores",
            RETRY_CAP_SECONDS,
            settings.max_live_stores,
        )
    if tenant_live >= tenant_limit:
        raise _too_many(
            "tenant-stores",
            f"this tenant has its maximum of {tenant_limit} stores; delete one first",
            RETRY_CAP_SECONDS,
            tenant_limit,
        )
    if queued >= settings.max_queued_stores:
        raise _too_many(
            "queued-stores",
            f"{queued} stores are waiting to start; try again shortly",
            RETRY_QUEUE_SECONDS,
            settings.max_queued_stores,
        )
