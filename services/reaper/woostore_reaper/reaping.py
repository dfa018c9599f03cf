"""What the reaper repairs on each pass. Level-triggered: each pass compares what should be
with what is, so a pass missed (reaper down) is made up by the next one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import Counter
from sqlmodel import col, select

from woostore_shared.events import Failed
from woostore_shared.lifecycle import transition
from woostore_shared.logging import bind_store, get_logger
from woostore_shared.models import Store, StoreStatus, utcnow
from woostore_shared.outbox import Outbox

log = get_logger(__name__)
RELAY_GRACE = timedelta(seconds=10)  # the writer publishes right after commit; give it time
DEADLINES_ENFORCED = Counter("woostore_deadlines_enforced_total", "Stores failed by a deadline")
EVENTS_RELAYED = Counter("woostore_events_relayed_total", "Events published by the relay")


@dataclass(frozen=True)
class PassReport:
    failed_by_deadline: int
    events_relayed: int


async def enforce_deadlines(outbox: Outbox, deadline: timedelta) -> int:
    """Fail stores provisioning for longer than ``deadline``. The provisioner watching the
    store sees it, stops the step underway and cleans the store's resources up."""
    cutoff = utcnow() - deadline
    async with outbox.db.session() as session:
        overdue = list(
            await session.exec(
                select(Store.id)
                .where(col(Store.status) == StoreStatus.PROVISIONING)
                .where(col(Store.provisioning_started_at) < cutoff)
            )
        )
    failed = 0
    for store_id in overdue:
        async with outbox.transaction() as tx:
            store = await tx.session.get(Store, store_id, with_for_update=True)
            if store is None or store.status is not StoreStatus.PROVISIONING:
                continue  # finished meanwhile
            reason = f"provisioning did not finish within {deadline.total_seconds():.0f} s"
            store.failure_reason = reason
            step = store.step_name
            transition(store, StoreStatus.FAILED)
            tx.emit(store, Failed(reason=reason, step=step))
        with bind_store(store_id):
            log.warning("store failed by its deadline", step=step)
        failed += 1
    DEADLINES_ENFORCED.inc(failed)
    return failed


async def reap_once(outbox: Outbox, deadline: timedelta) -> PassReport:
    failed = await enforce_deadlines(outbox, deadline)
    relayed = await outbox.relay(older_than=RELAY_GRACE)
    EVENTS_RELAYED.inc(relayed)
    return PassReport(failed_by_deadline=failed, events_relayed=relayed)
