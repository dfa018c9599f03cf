"""Keeping the warm pool: stores made in advance, owned by no tenant, so that a new store is
claimed in seconds (``lifecycle.claim``) instead of made from scratch.

Each pass (the leader's only) retires pooled stores that no longer fit a claim, because
their chart is not the platform's any more, and asks for new ones until the pool holds
``WOOSTORE_WARM_POOL_SIZE``. Refills are ordinary provisioning, in the same global limit,
and they always yield to owners: they leave one provisioning slot free, none is asked for
while an owner's store waits, and one found still queued when an owner's store arrives is
retired unstarted by the provisioner. None is asked for either for five minutes after a
pooled store failed. Pooled stores count against the platform's cap on live stores, and the
pool never grows past it. Idle pooled stores are verified again now and then.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import Counter, Gauge
from sqlalchemy import func
from sqlmodel import col, select

from woostore_shared import lifecycle, tracing
from woostore_shared.lifecycle import (
    LIVE,
    UNFINISHED,
    InvalidTransition,
    StoreNotFound,
    in_the_cold_queue,
)
from woostore_shared.logging import bind_store, get_logger
from woostore_shared.models import Store, StoreStatus, utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.settings import ClusterMode, Settings
from woostore_shared.store_settings import StoreSettings
from woostore_shared.unit_of_work import UnitOfWork

log = get_logger(__name__)

POOL_STORES = Gauge("woostore_pool_stores", "Stores in the warm pool, by status", ["status"])
POOL_REFILLS = Counter("woostore_pool_refills_total", "Stores asked for to refill the warm pool")
POOL_RETIRED = Counter(
    "woostore_pool_retired_total", "Pooled stores retired: a stale chart, or a smaller pool"
)
POOL_VERIFIED = Counter(
    "woostore_pool_verifications_total", "Idle pooled stores sent to be verified again"
)
POOL_NAME = "Warm pool store"
REFILL_BACKOFF = timedelta(minutes=5)
STORE_TYPE = "woocommerce"


@dataclass(frozen=True)
class PoolTarget:
    """What the pool should hold, from the platform's settings."""

    size: int
    chart_version: str  # the platform's: a pooled store on another one is retired
    simulated: bool
    base_domain: str  # a pooled store under another one would keep links to its old host
    settings: StoreSettings  # the platform's defaults; a claim applies the owner's
    stores_in_flight: int  # the global provisioning limit refills share with owners
    max_live_stores: int
    verify_after: timedelta = timedelta(hours=1)  # an idle pooled store is verified again
    # After a pooled store fails, no refill for this long: a platform that cannot make stores
    # (helm missing, images that do not pull) would otherwise make and fail one after another.
    refill_backoff: timedelta = REFILL_BACKOFF

    @classmethod
    def of(cls, settings: Settings) -> PoolTarget:
        return cls(
            size=settings.warm_pool_size,
            # Read only with a pool to keep: without one, every pooled store is retired.
            chart_version=settings.store_chart_version if settings.warm_pool_size else "",
            simulated=settings.cluster_mode is ClusterMode.SIMULATED,
            base_domain=settings.base_domain,
            settings=settings.store_defaults,
            stores_in_flight=settings.max_stores_in_flight,
            max_live_stores=settings.max_live_stores,
            verify_after=timedelta(seconds=settings.warm_pool_verify_seconds),
        )


@dataclass(frozen=True)
class PoolReport:
    refills: int
    retired: int
    verified: int  # idle pooled stores sent to be verified again


async def keep_pool(outbox: Outbox, target: PoolTarget) -> PoolReport:
    retired = await _retire_stale(outbox, target) + await _retire_extra(outbox, target)
    async with outbox.db.session() as session:
        rows = await session.exec(
            select(col(Store.status), func.count())
            .where(col(Store.tenant_id).is_(None), col(Store.status).in_(LIVE))
            .group_by(col(Store.status))
        )
        in_pool = {StoreStatus(status): count for status, count in rows}
        # Cold work (owners' and refills'), not claims: those have a lane of their own.
        cold = (
            await session.exec(
                select(func.count())
                .select_from(Store)
                .where(col(Store.status).in_(UNFINISHED), col(Store.claimed_at).is_(None))
            )
        ).one()
        owners_waiting = (
            await session.exec(select(func.count()).select_from(Store).where(in_the_cold_queue()))
        ).one()
        live = (
            await session.exec(
                select(func.count()).select_from(Store).where(col(Store.status).in_(LIVE))
            )
        ).one()
        last_failure = (
            await session.exec(
                select(func.max(Store.updated_at)).where(
                    col(Store.tenant_id).is_(None), col(Store.status) == StoreStatus.FAILED
                )
            )
        ).one()
    for status in (StoreStatus.QUEUED, StoreStatus.PROVISIONING, StoreStatus.POOLED):
        POOL_STORES.labels(status.value).set(in_pool.get(status, 0))
    missing = target.size - sum(in_pool.values()) + in_pool.get(StoreStatus.DELETING, 0)
    if owners_waiting:
        return PoolReport(refills=0, retired=retired, verified=0)
    slots = target.stores_in_flight - _kept_for_owners(target) - cold
    room = max(min(missing, slots, target.max_live_stores - live), 0)
    if last_failure is not None and last_failure > utcnow() - target.refill_backoff:
        room = 0  # a pooled store failed lately: wait before making another
    for _ in range(room):
        await _refill(outbox, target)
    verified = await _verify_idle(outbox, target, slots - room)
    return PoolReport(refills=room, retired=retired, verified=verified)


def _kept_for_owners(target: PoolTarget) -> int:
    """The provisioning slots neither refills nor verifications take: one, where there are
    two or more. A refill holds its slot for a whole cold store (minutes). With every slot
    taken by refills, as when a new platform first fills its pool, an owner arriving meanwhile
    waited that long before their store even began: twice a cold store in all."""
    return 1 if target.stores_in_flight > 1 else 0


async def _refill(outbox: Outbox, target: PoolTarget) -> None:
    # The root of the pooled store's trace, as an owner's request is of a cold store's.
    with tracing.tracer().start_as_current_span("warm pool refill"):
        async with UnitOfWork.begin(outbox) as uow:
            store = await lifecycle.request(
                uow,
                tenant_id=None,
                name=POOL_NAME,
                slug=f"pool-{secrets.token_hex(4)}",
                type=STORE_TYPE,
                simulated=target.simulated,
                settings=target.settings,
            )
    POOL_REFILLS.inc()
    with bind_store(store.id, store.correlation_id):
        log.info("warm pool refill requested")


async def _verify_idle(outbox: Outbox, target: PoolTarget, slots: int) -> int:
    """Send the pooled stores idle longest (past ``verify_after``) to be verified again, in
    the provisioning slots refills leave free."""
    if slots <= 0:
        return 0
    async with outbox.db.session() as session:
        idle = list(
            await session.exec(
                select(Store.id)
                .where(col(Store.tenant_id).is_(None), col(Store.status) == StoreStatus.POOLED)
                .where(col(Store.verified_at) < utcnow() - target.verify_after)
                .order_by(col(Store.verified_at))
                .limit(slots)
            )
        )
    verified = 0
    for store_id in idle:
        try:
            async with UnitOfWork.begin(outbox) as uow:
                await lifecycle.verify_again(uow, store_id)
        except (InvalidTransition, StoreNotFound):
            continue  # claimed or retired meanwhile
        verified += 1
    POOL_VERIFIED.inc(verified)
    return verified


async def _retire_stale(outbox: Outbox, target: PoolTarget) -> int:
    """Retire pooled stores a claim would never take: another chart version, another
    cluster mode (the platform moved from the simulator to a real cluster), or another base
    domain (a claim finds the links to move under the current one, and would move none)."""
    async with outbox.db.session() as session:
        stale = list(
            await session.exec(
                select(Store.id)
                .where(col(Store.tenant_id).is_(None), col(Store.status) == StoreStatus.POOLED)
                .where(
                    (col(Store.chart_version) != target.chart_version)
                    | col(Store.chart_version).is_(None)
                    | (col(Store.simulated) != target.simulated)
                    | ~lifecycle.made_under(target.base_domain)
                )
            )
        )
    retired = 0
    for store_id in stale:
        retired += await _retire(outbox, store_id)
    POOL_RETIRED.inc(retired)
    return retired


async def _retire_extra(outbox: Outbox, target: PoolTarget) -> int:
    """Retire the newest pooled stores past the pool's size (the operator made it smaller)."""
    async with outbox.db.session() as session:
        pooled = list(
            await session.exec(
                select(Store.id)
                .where(col(Store.tenant_id).is_(None), col(Store.status) == StoreStatus.POOLED)
                .order_by(col(Store.created_at))
            )
        )
    retired = 0
    for store_id in pooled[target.size :]:
        retired += await _retire(outbox, store_id)
    POOL_RETIRED.inc(retired)
    return retired


async def _retire(outbox: Outbox, store_id: uuid.UUID) -> bool:
    try:
        async with UnitOfWork.begin(outbox) as uow:
            await lifecycle.retire(uow, store_id)
    except (InvalidTransition, StoreNotFound):
        return False  # claimed meanwhile: its owner's now
    with bind_store(store_id):
        log.info("pooled store retired")
    return True
