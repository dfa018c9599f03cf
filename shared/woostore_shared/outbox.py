"""The one place that commits: a store change and the events announcing it, together.

``Outbox.transaction()`` yields a :class:`Transaction`; events emitted inside it are written
to ``store_events`` in the same database transaction as the change, then published to
JetStream after the commit with ``Nats-Msg-Id`` set to the event id, so a publish retried by
the relay is de-duplicated by the server. If NATS is unreachable the change still stands and
the reaper's relay publishes the events later.
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
from woostore_shared.models import Store, StoreEvent, utcnow
from woostore_shared.topology import STREAM_NAME

log = get_logger(__name__)
# Marks a message that repeats an earlier event (same CloudEvent id) to hand its work out
# again; event followers skip it, work consumers take it.
REPLAY_HEADER = "Woostore-Replay"


class Transaction:
    def __init__(self, session: AsyncSession, source: str) -> None:
        self.session = session
        self.source = source
        self.events: list[CloudEvent] = []

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
        await self.publish(tx.events)

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

    async def replay(self, event: CloudEvent, attempt: int) -> int:
        """Publish ``event`` again as a new message (the original was lost or consumed):
        a message id of its own, so the server's de-duplication does not drop it."""
        ack = await self.js.publish(
            event.nats_subject,
            event.model_dump_json().encode(),
            stream=STREAM_NAME,
            headers={"Nats-Msg-Id": f"{event.id}:replay:{attempt}", REPLAY_HEADER: str(attempt)},
        )
        return ack.seq

    async def relay(self, older_than: timedelta, limit: int = 100) -> int:
        """Publish events whose writer could not (NATS down, process killed after commit)."""
        async with self.db.session() as session:
            rows = await session.exec(
                select(StoreEvent)
                .where(col(StoreEvent.published_at).is_(None))
                .where(col(StoreEvent.time) < utcnow() - older_than)
                .order_by(col(StoreEvent.time))
                .limit(limit)
            )
            events = [CloudEvent.model_validate(row.envelope) for row in rows]
        return await self.publish(events)
