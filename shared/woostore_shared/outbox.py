"""The one place that commits: a store change, the events announcing it and the work it
asks for, together.

``Outbox.transaction()`` yields a :class:`Transaction`. Events emitted inside it (facts) are
written to ``store_events``, and work orders dispatched inside it (commands, see ``work.py``)
to ``work_orders``, in the same database transaction as the change. After the commit they
are published to JetStream, the events first, with ``Nats-Msg-Id`` set to their id, so a
publish retried by the relay is de-duplicated by the server. If NATS is unreachable the
change still stands and the reaper's relay publishes them later.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

from nats.aio.client import Client
from nats.errors import Error as NatsError
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from woostore_shared.db import Database
from woostore_shared.events import CloudEvent, EventData, make_event
from woostore_shared.logging import get_logger
from woostore_shared.models import Store, StoreEvent, WorkOrderRecord, utcnow
from woostore_shared.topology import STREAM_NAME, WORK_STREAM
from woostore_shared.work import Lane, WorkOrder

log = get_logger(__name__)


class Transaction:
    def __init__(self, session: AsyncSession, source: str) -> None:
        self.session = session
        self.source = source
        self.events: list[CloudEvent] = []
        self.work: list[WorkOrder] = []

    def emit(self, store: Store, data: EventData) -> CloudEvent:
        event = make_event(
            data,
            store_id=store.id,
            tenant_id=store.tenant_id,
            correlation_id=store.correlation_id,
            source=self.source,
        )
        store.updated_at = event.time
        self.session.add(store)
        self.session.add(
            StoreEvent(
                id=event.id,
                store_id=store.id,
                subject=event.nats_subject,
                type=event.type,
                time=event.time,
                envelope=event.model_dump(mode="json"),
            )
        )
        self.events.append(event)
        return event

    def dispatch(self, store: Store, lane: Lane) -> WorkOrder:
        """Ask a worker on ``lane`` to look at ``store`` once this commits."""
        order = WorkOrder(
            id=uuid.uuid4(),
            lane=lane,
            store_id=store.id,
            correlation_id=store.correlation_id,
            time=utcnow(),
        )
        self.session.add(WorkOrderRecord(**order.model_dump()))
        self.work.append(order)
        return order


class Outbox:
    def __init__(self, db: Database, nats: Client, source: str) -> None:
        self.db = db
        self.nats = nats
        self.js = nats.jetstream()
        self.source = source

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.db.session() as session:
            tx = Transaction(session, self.source)
            try:
                yield tx
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
        if await self.publish(tx.events) == len(tx.events):
            # A worker's first progress event must not overtake the event asking for it.
            await self.send(tx.work)

    async def publish(self, events: Sequence[CloudEvent]) -> int:
        """Publish in order; stop at the first failure (the relay keeps the order)."""
        published: dict[uuid.UUID, int] = {}
        if events and not self.nats.is_connected:
            # Waiting for the publish timeout would only slow the caller; the relay will do it.
            log.warning("nats unreachable: events deferred to relay", events=len(events))
            return 0
        for event in events:
            try:
                ack = await self.js.publish(
                    event.nats_subject,
                    event.model_dump_json().encode(),
                    stream=STREAM_NAME,
                    headers={"Nats-Msg-Id": str(event.id)},
                )
            except (NatsError, TimeoutError) as error:
                log.warning(
                    "event publish deferred to relay", event_id=str(event.id), error=repr(error)
                )
                break
            published[event.id] = ack.seq
        if published:
            async with self.db.session() as session:
                now = utcnow()
                for event_id, sequence in published.items():
                    await session.exec(
                        update(StoreEvent)
                        .where(col(StoreEvent.id) == event_id)
                        .values(published_at=now, stream_sequence=sequence)
                    )
                await session.commit()
        return len(published)

    async def send(self, orders: Sequence[WorkOrder]) -> int:
        """Publish work orders; stop at the first failure (the relay sends the rest)."""
        sent: list[uuid.UUID] = []
        if orders and not self.nats.is_connected:
            log.warning("nats unreachable: work deferred to relay", orders=len(orders))
            return 0
        for order in orders:
            try:
                await self.js.publish(
                    order.subject,
                    order.model_dump_json().encode(),
                    stream=WORK_STREAM,
                    headers={"Nats-Msg-Id": str(order.id)},
                )
            except (NatsError, TimeoutError) as error:
                log.warning("work deferred to relay", order_id=str(order.id), error=repr(error))
                break
            sent.append(order.id)
        if sent:
            async with self.db.session() as session:
                await session.exec(
                    update(WorkOrderRecord)
                    .where(col(WorkOrderRecord.id).in_(sent))
                    .values(published_at=utcnow())
                )
                await session.commit()
        return len(sent)

    async def relay(self, older_than: timedelta, limit: int = 100) -> int:
        """Publish the events and work orders whose writer could not (NATS down, process
        killed after commit); returns how many were published."""
        cutoff = utcnow() - older_than
        async with self.db.session() as session:
            rows = await session.exec(
                select(StoreEvent)
                .where(col(StoreEvent.published_at).is_(None))
                .where(col(StoreEvent.time) < cutoff)
                .order_by(col(StoreEvent.time))
                .limit(limit)
            )
            events = [CloudEvent.model_validate(row.envelope) for row in rows]
            records = await session.exec(
                select(WorkOrderRecord)
                .where(col(WorkOrderRecord.published_at).is_(None))
                .where(col(WorkOrderRecord.time) < cutoff)
                .order_by(col(WorkOrderRecord.time))
                .limit(limit)
            )
            orders = [WorkOrder.model_validate(record, from_attributes=True) for record in records]
        published = await self.publish(events)
        if published < len(events):
            return published  # the orders wait for the events asking for them
        return published + await self.send(orders)
