"""Keeping the warm pool: refilled up to its size within the provisioning limit (one slot
left free for owners) and the platform's cap, never while an owner's store waits; stale and
surplus stores retired, never one an owner has claimed. Real PostgreSQL and NATS."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlmodel import col, select, update

from tests.reaper.test_reaping import load
from tests.support import DEFAULT_SETTINGS, add_pooled_store, claim_pooled_store, create_store
from woostore_reaper.pool import PoolTarget, keep_pool
from woostore_shared import lifecycle
from woostore_shared.db import Database
from woostore_shared.models import DEFAULT_TENANT_ID, Store, StoreStatus, utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.settings import Settings
from woostore_shared.unit_of_work import UnitOfWork

HOUR = timedelta(hours=1)
TARGET = PoolTarget(
    size=2,
    chart_version=Settings().store_chart_version,
    simulated=True,
    base_domain=Settings().base_domain,
    settings=DEFAULT_SETTINGS,
    stores_in_flight=2,
    max_live_stores=50,
)


async def _pool(database: Database) -> dict[StoreStatus, int]:
    async with database.session() as session:
        stores = list(await session.exec(select(Store).where(col(Store.tenant_id).is_(None))))
    counts: dict[StoreStatus, int] = {}
    for store in stores:
        counts[store.status] = counts.get(store.status, 0) + 1
    return counts


async def test_an_empty_pool_is_refilled_to_its_size_once(
    outbox: Outbox, database: Database
) -> None:
    wide = replace(TARGET, stores_in_flight=3)  # room for both refills and an owner's store
    first = await keep_pool(outbox, wide)
    again = await keep_pool(outbox, wide)  # the refills are under way: none more

    assert (first.refills, again.refills) == (2, 0)
    assert await _pool(database) == {StoreStatus.QUEUED: 2}
    async with database.session() as session:
        made = list(await session.exec(select(Store).where(col(Store.tenant_id).is_(None))))
    assert {store.origin for store in made} == {"pool"}
    assert all(store.slug.startswith("pool-") for store in made)


async def test_refills_leave_one_provisioning_slot_free_for_owners(
    outbox: Outbox, database: Database
) -> None:
    """A refill holds its slot for a whole cold store: an owner arriving while the pool fills
    must find a slot, not wait that long before their store even begins."""
    assert (await keep_pool(outbox, TARGET)).refills == 1  # 2 slots: one is kept
    assert (await keep_pool(outbox, replace(TARGET, size=5))).refills == 0
    assert await _pool(database) == {StoreStatus.QUEUED: 1}


async def test_a_single_provisioning_slot_is_the_pools_while_no_owner_waits(
    outbox: Outbox, database: Database
) -> None:
    assert (await keep_pool(outbox, replace(TARGET, stores_in_flight=1))).refills == 1


async def test_refills_yield_to_an_owners_queued_store(outbox: Outbox, database: Database) -> None:
    await create_store(outbox)

    report = await keep_pool(outbox, TARGET)

    assert report.refills == 0
    assert await _pool(database) == {}


async def test_refills_share_the_provisioning_limit_and_the_platforms_cap(
    outbox: Outbox, database: Database
) -> None:
    wide = replace(TARGET, stores_in_flight=3)
    owners = await create_store(outbox)
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.start(uow, owners.id)  # one of the three slots is taken, one is kept

    assert (await keep_pool(outbox, wide)).refills == 1
    assert (await keep_pool(outbox, replace(wide, size=5))).refills == 0  # slots full

    async with UnitOfWork.begin(outbox) as uow:  # both end: the slots are free again
        for store in await _queued_or_provisioning(database):
            if store.status is StoreStatus.QUEUED:
                await lifecycle.start(uow, store.id)
            await lifecycle.fail(uow, store.id, "test")
    # Now only the platform's cap on live stores holds the pool back: one store fits.
    capped = replace(wide, size=5, max_live_stores=1, refill_backoff=timedelta(0))
    assert [(await keep_pool(outbox, capped)).refills for _ in range(2)] == [1, 0]


async def _queued_or_provisioning(database: Database) -> list[Store]:
    async with database.session() as session:
        return list(
            await session.exec(
                select(Store).where(
                    col(Store.status).in_((StoreStatus.QUEUED, StoreStatus.PROVISIONING))
                )
            )
        )


async def test_pooled_stores_on_another_chart_are_retired_and_claimed_ones_never(
    outbox: Outbox, database: Database
) -> None:
    claimed = await add_pooled_store(outbox, chart_version="0.0.1-old")
    # Claimed by an API still on the old chart.
    await claim_pooled_store(outbox, "Owner's", "owners-abc123", chart_version="0.0.1-old")
    stale = await add_pooled_store(outbox, chart_version="0.0.1-old")
    fresh = await add_pooled_store(outbox)

    report = await keep_pool(outbox, TARGET)

    assert report.retired == 1
    assert (await load(outbox.db, stale.id)).status is StoreStatus.DELETING
    assert (await load(outbox.db, fresh.id)).status is StoreStatus.POOLED
    owned = await load(outbox.db, claimed.id)
    assert (owned.status, owned.tenant_id) == (StoreStatus.QUEUED, DEFAULT_TENANT_ID)


async def test_pooled_stores_made_under_another_base_domain_are_retired(
    outbox: Outbox, database: Database
) -> None:
    before = await add_pooled_store(outbox, base_domain="stores.old.example")
    lookalike = await add_pooled_store(outbox, base_domain=f"not{Settings().base_domain}")
    current = await add_pooled_store(outbox)

    report = await keep_pool(outbox, TARGET)

    assert report.retired == 2
    assert (await load(outbox.db, before.id)).status is StoreStatus.DELETING
    assert (await load(outbox.db, lookalike.id)).status is StoreStatus.DELETING
    assert (await load(outbox.db, current.id)).status is StoreStatus.POOLED


async def test_a_smaller_pool_retires_its_newest_stores(outbox: Outbox, database: Database) -> None:
    oldest = await add_pooled_store(outbox)
    newer = [await add_pooled_store(outbox) for _ in range(2)]

    report = await keep_pool(outbox, replace(TARGET, size=1))

    assert report.retired == 2
    assert (await load(outbox.db, oldest.id)).status is StoreStatus.POOLED
    assert {(await load(outbox.db, s.id)).status for s in newer} == {StoreStatus.DELETING}
    assert (await keep_pool(outbox, replace(TARGET, size=0))).retired == 1


async def test_idle_pooled_stores_are_verified_again_in_the_slots_refills_leave(
    outbox: Outbox, database: Database
) -> None:
    idle = await add_pooled_store(outbox)
    recent = await add_pooled_store(outbox)
    async with database.session() as session:
        await session.exec(
            update(Store).where(col(Store.id) == idle.id).values(verified_at=utcnow() - 2 * HOUR)
        )
        await session.commit()

    report = await keep_pool(outbox, replace(TARGET, verify_after=HOUR))

    assert (report.refills, report.verified) == (0, 1)
    assert (await load(outbox.db, idle.id)).status is StoreStatus.PROVISIONING  # claims skip it
    assert (await load(outbox.db, recent.id)).status is StoreStatus.POOLED
    # Verifying takes a provisioning slot: with none free, it waits for the next pass.
    async with database.session() as session:
        await session.exec(
            update(Store).where(col(Store.id) == recent.id).values(verified_at=utcnow() - 2 * HOUR)
        )
        await session.commit()
    assert (
        await keep_pool(outbox, replace(TARGET, verify_after=HOUR, stores_in_flight=1))
    ).verified == 0


async def test_no_refill_for_a_while_after_a_pooled_store_failed(
    outbox: Outbox, database: Database
) -> None:
    """A platform that cannot make stores must not make and fail one after another."""
    assert (await keep_pool(outbox, replace(TARGET, size=1))).refills == 1
    [refill] = [s for s in await _queued_or_provisioning(database)]
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.start(uow, refill.id)
        await lifecycle.fail(uow, refill.id, "helm is missing")

    assert (await keep_pool(outbox, replace(TARGET, size=1))).refills == 0
    assert (
        await keep_pool(outbox, replace(TARGET, size=1, refill_backoff=timedelta(0)))
    ).refills == 1
