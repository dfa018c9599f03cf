"""What the leading reaper measures of the stores as a whole, each pass: stores by status,
the shared queue's depth and its oldest store's wait, stores in flight. Real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY
from sqlmodel import col, update

from tests.support import create_store
from woostore_reaper import gauges
from woostore_shared import lifecycle
from woostore_shared.models import Store, utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.unit_of_work import UnitOfWork


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_stores_by_status_the_queue_and_those_in_flight_are_measured(
    outbox: Outbox,
) -> None:
    waiting, _, making, claimed = [await create_store(outbox) for _ in range(4)]
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.start(uow, making.id)
        await uow.session.exec(
            update(Store)
            .where(col(Store.id) == waiting.id)
            .values(queued_at=utcnow() - timedelta(minutes=10))  # its wait since it was queued
        )
        # Claimed from the warm pool 5 minutes ago, and made (queued) long before, for it.
        await uow.session.exec(
            update(Store)
            .where(col(Store.id) == claimed.id)
            .values(claimed_at=utcnow() - timedelta(minutes=5),
                    queued_at=utcnow() - timedelta(hours=3))
        )  # fmt: skip

    await gauges.measure(outbox)

    assert value("woostore_stores", status="queued") == 3
    assert value("woostore_stores", status="provisioning") == 1
    assert value("woostore_stores", status="ready") == 0
    assert value("woostore_queue_depth") == 2  # the claimed store is not in the one queue
    oldest = value("woostore_queue_oldest_age_seconds", queue="cold")
    assert oldest is not None
    assert 600 <= oldest < 660
    oldest_claim = value("woostore_queue_oldest_age_seconds", queue="claimed")
    assert oldest_claim is not None
    assert 300 <= oldest_claim < 360  # since its claim, not since its making
    assert value("woostore_stores_in_flight") == 1

    gauges.forget()  # another reaper leads now
    assert value("woostore_queue_depth") == 0
    assert value("woostore_queue_oldest_age_seconds", queue="claimed") == 0
    assert value("woostore_stores", status="queued") is None
