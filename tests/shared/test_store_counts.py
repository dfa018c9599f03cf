"""The counts the store caps read, kept by the database (migration 0018's count_stores
trigger): whatever changes a store's status, owner or claim, however many in a transaction,
they equal a count of the stores by lifecycle's own definitions. A status added to LIVE
without a migration teaching the trigger fails here."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import psycopg
import pytest
from sqlalchemy import func
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.support import DEFAULT_SETTINGS
from woostore_shared.db import Database
from woostore_shared.lifecycle import LIVE, in_the_cold_queue, waits_in_the_cold_queue
from woostore_shared.models import (
    DEFAULT_TENANT_ID,
    PlatformCounts,
    Store,
    StoreStatus,
    Tenant,
    namespace_for,
    utcnow,
)

Counts = tuple[int, int, Counter[uuid.UUID]]


async def recounted(session: AsyncSession) -> Counts:
    live = (await session.exec(select(func.count()).where(col(Store.status).in_(LIVE)))).one()
    queued = (await session.exec(select(func.count()).where(in_the_cold_queue()))).one()
    owners = await session.exec(
        select(Store.tenant_id).where(col(Store.status).in_(LIVE), col(Store.tenant_id).isnot(None))
    )
    return live, queued, Counter(owner for owner in owners if owner is not None)


async def kept(session: AsyncSession) -> Counts:
    counts = (await session.exec(select(PlatformCounts))).one()
    tenants = await session.exec(select(Tenant.id, Tenant.live_stores))
    return counts.live, counts.queued, Counter({t: n for t, n in tenants if n})


def a_store(owner: uuid.UUID | None, status: StoreStatus, claimed: bool) -> Store:
    slug = f"shop-{uuid.uuid4().hex[:8]}"
    return Store(
        tenant_id=owner,
        name="Shop",
        slug=slug,
        namespace=namespace_for(slug),
        status=status,
        simulated=True,
        settings=DEFAULT_SETTINGS.model_dump(mode="json"),
        correlation_id="c0ffee",
        claimed_at=utcnow() if claimed else None,
    )


async def test_the_counts_equal_a_recount_after_any_change_to_any_store(
    database: Database,
) -> None:
    rng = random.Random(18)  # noqa: S311  (seeded: a failure replays exactly)
    async with database.transaction() as session:
        other = Tenant(name="other")
        session.add(other)
        await session.commit()
        owners: list[uuid.UUID | None] = [None, DEFAULT_TENANT_ID, other.id]
        stores = [a_store(o, s, c) for o in owners for s in StoreStatus for c in (False, True)]
        session.add_all(stores)
        await session.commit()
        assert await kept(session) == await recounted(session)
    ids = [store.id for store in stores]

    for change in range(120):
        async with database.transaction() as session:
            for _ in range(rng.choice((1, 1, 2, 3))):  # some transactions change several
                store = await session.get(Store, rng.choice(ids))
                assert store is not None
                store.status = rng.choice(list(StoreStatus))
                if rng.random() < 0.3:
                    store.tenant_id = rng.choice(owners)
                if rng.random() < 0.2:
                    store.claimed_at = None if store.claimed_at else utcnow()
                session.add(store)
                await session.flush()
            if rng.random() < 0.2:
                fresh = a_store(rng.choice(owners), rng.choice(list(StoreStatus)), False)
                session.add(fresh)
                ids.append(fresh.id)
            await session.commit()
            assert await kept(session) == await recounted(session), f"after change {change}"


async def test_the_cold_queue_asked_of_a_store_at_hand_agrees_with_the_database(
    database: Database,
) -> None:
    """The API skips the read of a queue place for a store that is in no queue (one claimed
    from the pool, say) by asking the store itself; the answer must be the database's."""
    async with database.transaction() as session:
        owners = [None, DEFAULT_TENANT_ID]
        stores = [a_store(o, s, c) for o in owners for s in StoreStatus for c in (False, True)]
        session.add_all(stores)
        await session.commit()
        in_queue = set(await session.exec(select(Store.id).where(in_the_cold_queue())))

    assert in_queue  # the owner's unclaimed queued store at least
    assert {store.id for store in stores if waits_in_the_cold_queue(store)} == in_queue


async def hold_to(session: AsyncSession, **caps: int) -> None:
    for name, cap in caps.items():
        await session.exec(select(func.set_config(f"woostore.{name}", str(cap), True)))


@pytest.mark.parametrize(
    ("caps", "limit"),
    [
        ({"tenant_store_limit": 1}, "tenant-stores"),
        ({"max_live_stores": 1}, "platform-stores"),
        ({"max_queued_stores": 1}, "queued-stores"),
    ],
)
async def test_a_commit_past_a_cap_it_holds_to_is_refused_and_writes_nothing(
    database: Database, caps: dict[str, int], limit: str
) -> None:
    async with database.transaction() as session:
        session.add(a_store(DEFAULT_TENANT_ID, StoreStatus.QUEUED, False))
        await session.commit()
        before = await kept(session)

        await hold_to(session, **caps)
        session.add(a_store(DEFAULT_TENANT_ID, StoreStatus.QUEUED, False))
        with pytest.raises(DBAPIError) as refused:
            await session.commit()
        await session.rollback()

        error = refused.value.orig
        assert isinstance(error, psycopg.Error)
        assert error.sqlstate == "WS429"
        assert error.diag.message_primary == limit
        assert error.diag.message_detail == "1"
        assert len((await session.exec(select(Store.id))).all()) == 1
        assert await kept(session) == before


async def test_a_transaction_holding_to_no_caps_is_never_refused(database: Database) -> None:
    """The provisioner and the reaper move stores on past any cap: an admin may have lowered
    a tenant's below what it holds, and a store that was counted must be able to finish."""
    async with database.transaction() as session:
        tenant = Tenant(name="lowered", store_limit=0)
        session.add(tenant)
        await session.commit()
        session.add_all([a_store(tenant.id, StoreStatus.QUEUED, False) for _ in range(3)])
        await session.commit()

        assert (await kept(session))[2][tenant.id] == 3
