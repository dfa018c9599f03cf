"""Limits on what stores are asked for: create rates per key and per tenant, a change
(upgrade or rollback) rate per tenant, and caps on live and queued stores.

All hold across API replicas and under any concurrency, because PostgreSQL does the
counting: a rate is GCRA (the generic cell rate algorithm, a token bucket kept as one
timestamp) updated by one conditional upsert, and the caps are checked while holding a
transaction-scoped advisory lock that every store creation takes. A store claimed from the
warm pool counts against its tenant's cap; it was already counted against the platform's
while pooled.

A rate of N a minute allows N at once, then one every 60/N seconds as the allowance refills.
A fixed one-minute window, as before, let 2N through in a moment across a minute's end.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from woostore_api.problems import limit_reached
from woostore_shared.access import Principal
from woostore_shared.lifecycle import LIVE
from woostore_shared.models import RateLimit, Store, StoreStatus, Tenant, utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.settings import Settings
from woostore_shared.unit_of_work import UnitOfWork

PERIOD = timedelta(minutes=1)  # rates are counted per minute
# Any constant works; it only has to differ from the other advisory locks (the reaper's).
CREATE_LOCK = 0x574F_4F53  # "WOOS"
# Live-store caps free up only when someone deletes a store; a queue slot within minutes.
RETRY_CAP_SECONDS = 300
RETRY_QUEUE_SECONDS = 60


@dataclass(frozen=True)
class Rate:
    """Requests one counter allows per minute, and how a refusal names the limit."""

    counter: str  # what is counted, e.g. "key/wsk_3f9a1c2b7d4e/creates"
    allowed: int
    limit: str
    detail: str

    @property
    def interval(self) -> timedelta:
        """How often the allowance gains one request."""
        return PERIOD / self.allowed

    @property
    def burst(self) -> timedelta:
        """How far ahead of now the counter's next arrival may be and still admit one: a
        full allowance is ``allowed`` requests at once."""
        return self.interval * (self.allowed - 1)


async def take(outbox: Outbox, *rates: Rate, now: datetime | None = None) -> None:
    """Count a request against every rate, in one transaction; past any of them it is
    refused and counted against none (a client waiting out Retry-After then gets in)."""
    now = now or utcnow()
    async with UnitOfWork.begin(outbox) as uow:
        for rate in rates:
            # GCRA: the counter's theoretical arrival time (tat) moves one interval on per
            # request admitted; a request is admitted while tat is at most ``burst`` ahead.
            arrival = func.greatest(RateLimit.tat, now)
            admitted = (
                insert(RateLimit)
                .values(counter=rate.counter, tat=now + rate.interval)
                .on_conflict_do_update(
                    index_elements=["counter"],
                    set_={"tat": arrival + rate.interval},
                    where=arrival - now <= rate.burst,
                )
                .returning(col(RateLimit.tat))
            )
            if (await uow.session.exec(admitted)).first() is None:
                tat = (await uow.session.exec(
                    select(RateLimit.tat).where(col(RateLimit.counter) == rate.counter)
                )).one()  # fmt: skip
                wait = (tat - rate.burst - now).total_seconds()
                raise limit_reached(rate.limit, rate.allowed, rate.detail, max(1, math.ceil(wait)))


async def count_create(outbox: Outbox, principal: Principal, settings: Settings) -> None:
    """Count a store creation against the key's rate and its tenant's: a tenant's keys share
    one, so minting more keys does not buy more creations."""
    await take(
        outbox,
        Rate(
            f"key/{principal.actor}/creates",
            settings.creates_per_minute,
            "creates-per-minute",
            f"this key may create {settings.creates_per_minute} stores a minute",
        ),
        Rate(
            f"tenant/{principal.tenant_id}/creates",
            settings.tenant_creates_per_minute,
            "tenant-creates-per-minute",
            f"this tenant may create {settings.tenant_creates_per_minute} stores a minute",
        ),
    )


async def count_change(outbox: Outbox, principal: Principal, settings: Settings) -> None:
    """Count an upgrade or a rollback against the caller's tenant's rate: all tenants share
    the provisioners that carry them out."""
    await take(
        outbox,
        Rate(
            f"tenant/{principal.tenant_id}/changes",
            settings.tenant_changes_per_minute,
            "tenant-changes-per-minute",
            f"this tenant may upgrade or roll back {settings.tenant_changes_per_minute} "
            "stores a minute",
        ),
    )


@dataclass(frozen=True)
class Capacity:
    """The platform's live stores and its queue of cold ones, counted under the creation
    lock; what a new store (not one claimed from the warm pool) must still find room in."""

    live: int
    queued: int
    settings: Settings

    def check_room_for_a_new_store(self) -> None:
        settings = self.settings
        if self.live >= settings.max_live_stores:
            raise limit_reached(
                "platform-stores",
                settings.max_live_stores,
                f"the platform holds its maximum of {settings.max_live_stores} stores",
                RETRY_CAP_SECONDS,
            )
        if self.queued >= settings.max_queued_stores:
            raise limit_reached(
                "queued-stores",
                settings.max_queued_stores,
                f"{self.queued} stores are waiting to start; try again shortly",
                RETRY_QUEUE_SECONDS,
            )


async def check_capacity(
    session: AsyncSession, tenant_id: uuid.UUID, settings: Settings
) -> Capacity:
    """Refuse a store past the tenant's cap, and count what the platform's caps need. Call
    inside the creating transaction: the lock it takes is held until that transaction ends,
    so concurrent creations count in turn. Stores in the warm pool count against the
    platform's cap only; a claimed one is its owner's."""
    await session.exec(select(func.pg_advisory_xact_lock(CREATE_LOCK)))
    rows = await session.exec(
        select(
            col(Store.tenant_id), col(Store.status), col(Store.claimed_at).is_(None), func.count()
        )
        .where(col(Store.status).in_(LIVE))
        .group_by(col(Store.tenant_id), col(Store.status), col(Store.claimed_at).is_(None))
    )
    live = tenant_live = queued = 0
    for owner, status, cold, count in rows:
        live += count
        tenant_live += count if owner == tenant_id else 0
        # The queue is owners' cold stores: refills yield to them, claims have their own lane.
        queued += count if status is StoreStatus.QUEUED and owner is not None and cold else 0
    tenant = await session.get(Tenant, tenant_id)
    tenant_limit = settings.tenant_store_limit
    if tenant is not None and tenant.store_limit is not None:
        tenant_limit = tenant.store_limit
    if tenant_live >= tenant_limit:
        raise limit_reached(
            "tenant-stores",
            tenant_limit,
            f"this tenant has its maximum of {tenant_limit} stores; delete one first",
            RETRY_CAP_SECONDS,
        )
    return Capacity(live=live, queued=queued, settings=settings)
