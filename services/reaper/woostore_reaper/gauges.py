"""What an operator graphs of the stores as a whole, measured by the leading reaper each pass
(one query each, however many stores): stores by status, the shared queue's depth and how
long its oldest store has waited (and the oldest claim from the warm pool), and stores being
provisioned. A reaper that does not lead
(its ``woostore_reaper_leader`` is 0) reports no stores by status and zero for the rest, so
``max()`` across reapers is the platform's figure."""

from __future__ import annotations

from prometheus_client import Gauge
from sqlalchemy import func
from sqlmodel import col, select

from woostore_shared.lifecycle import not_started
from woostore_shared.models import Store, StoreStatus, utcnow
from woostore_shared.outbox import Outbox

LEADER = Gauge("woostore_reaper_leader", "1 while this reaper leads (acts), else 0")
STORES = Gauge("woostore_stores", "Stores by status (deleted ones not counted)", ["status"])
QUEUE_DEPTH = Gauge("woostore_queue_depth", "Owners' stores queued to be made from scratch")
QUEUE_OLDEST = Gauge(
    "woostore_queue_oldest_age_seconds",
    "How long the oldest store waiting to start has waited (0: none): queue=cold, an owner's"
    " store to be made from scratch; queue=claimed, one claimed from the warm pool, to be"
    " personalised",
    ["queue"],
)
IN_FLIGHT = Gauge("woostore_stores_in_flight", "Stores being provisioned now")


async def measure(outbox: Outbox) -> None:
    async with outbox.db.session() as session:
        by_status = dict(
            list(
                await session.exec(
                    select(col(Store.status), func.count())
                    .where(col(Store.status) != StoreStatus.DELETED)
                    .group_by(col(Store.status))
                )
            )
        )
        # A claimed store's queued_at is its making's, for the pool: it waits since its claim.
        claimed = col(Store.claimed_at).is_not(None)
        depth, oldest, oldest_claim = (
            await session.exec(
                select(
                    func.count().filter(~claimed),
                    func.min(Store.queued_at).filter(~claimed),
                    func.min(Store.claimed_at).filter(claimed),
                ).where(not_started())
            )
        ).one()
    for status in StoreStatus:
        if status is not StoreStatus.DELETED:
            STORES.labels(status.value).set(by_status.get(status, 0))
    QUEUE_DEPTH.set(depth)
    now = utcnow()
    QUEUE_OLDEST.labels("cold").set((now - oldest).total_seconds() if oldest else 0)
    QUEUE_OLDEST.labels("claimed").set((now - oldest_claim).total_seconds() if oldest_claim else 0)
    IN_FLIGHT.set(by_status.get(StoreStatus.PROVISIONING, 0))


def forget() -> None:
    """Not leading: the leader's figures are the ones to read."""
    STORES.clear()
    for gauge in (QUEUE_DEPTH, QUEUE_OLDEST.labels("cold"), QUEUE_OLDEST.labels("claimed"),
                  IN_FLIGHT):  # fmt: skip
        gauge.set(0)
