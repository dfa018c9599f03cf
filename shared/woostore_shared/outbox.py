"""The outbox: what a unit of work recorded (``unit_of_work.py``), published to JetStream.

Events (facts, ``store_events``) go to the stream STORES and work orders (commands,
``work_orders``) to WORK, each with ``Nats-Msg-Id`` set to its id, so a publish retried by
the relay is de-duplicated by the server. They are published right after the commit, the
events first; if NATS is unreachable the change still stands and the reaper's relay
publishes them later.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from nats.aio.client import Client
from nats.errors import Error as NatsError
from sqlmodel import col, select, update

from woostore_shared.db import Database
from woostore_shared.events import CloudEvent
from woostore_shared.logging import get_logger
from woostore_shared.models import StoreEvent, WorkOrderRecord, utcnow
from woostore_shared.topology import STREAM_NAME, WORK_STREAM
from woostore_shared.work import WorkOrder

log = get_logger(__name__)


class Outbox:
    def __init__(self, db: Database, nats: Client, source: str) -> None:
        self.db = db
        self.nats = nats
        self.js = nats.jetstream()
        self.source = source

    async def deliver(self, events: Sequence[CloudEvent], orders: Sequence[WorkOrder]) -> int:
        """Publish ``events`` in order, then, once all are out, ``orders`` (a worker's first
        progress event must not overtake the event asking for it); stop at the first failure,
        which the relay carries on from. Marks what went out in one transaction; returns how
        many went out."""
        published = await self._publish(events)
        sent = await self._send(orders) if len(published) == len(events) else []
        if published or sent:
            now = utcnow()
            async with self.db.session() as session:
                for event_id, sequence in published.items():
                    await session.exec(
                        update(StoreEvent)
                        .where(col(StoreEvent.id) == event_id)
                        .values(published_at=now, stream_sequence=sequence)
                    )
                if sent:
                    await session.exec(
                        update(WorkOrderRecord)
                        .where(col(WorkOrderRecord.id).in_(sent))
                        .values(published_at=now)
                    )
                await session.commit()
        return len(published) + len(sent)

    async def _publish(self, events: Sequence[CloudEvent]) -> dict[uuid.UUID, int]:
        """Each event published, with its stream sequence."""
        published: dict[uuid.UUID, int] = {}
        if events and not self.nats.is_connected:
            # Waiting for the publish timeout would only slow the caller; the relay will do it.
            log.warning("nats unreachable: events deferred to relay", events=len(events))
            return published
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
        return published

    async def _send(self, orders: Sequence[WorkOrder]) -> list[uuid.UUID]:
        """Each work order sent."""
        sent: list[uuid.UUID] = []
        if orders and not self.nats.is_connected:
            log.warning("nats unreachable: work deferred to relay", orders=len(orders))
            return sent
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
        return sent

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
        return await self.deliver(events, orders)
