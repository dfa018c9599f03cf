"""The outbox: what a unit of work recorded (``unit_of_work.py``), published to JetStream.

Events (facts, ``store_events``) go to the stream STORES and work orders (commands,
``work_orders``) to WORK, each with ``Nats-Msg-Id`` set to its id, so a publish retried by
the relay is de-duplicated by the server. They are published right after the commit, the
events first; if NATS is unreachable the change still stands and the reaper's relay
publishes them later. A store's events go out in the order they happened, and its work
orders too: once one could not go out, its writer sends that store's next ones only after
those still waiting (read again from the database, wherever the relay has got to).

What went out is marked in the database (``published_at``) a moment later, by one writer
for all the process's deliveries in that moment: a transaction for each delivery's marks
cost the platform about a fifth of its CPU a store. A mark the process dies before writing
only makes the relay publish that message again, which the server de-duplicates (within
its duplicate window, two minutes: far longer than the relay's grace).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from nats.aio.client import Client
from nats.errors import Error as NatsError
from sqlalchemy import text
from sqlmodel import col, select

from woostore_shared.db import Database
from woostore_shared.events import CloudEvent
from woostore_shared.logging import get_logger
from woostore_shared.messaging import RETRY_SECONDS, require_connected
from woostore_shared.models import StoreEvent, WorkOrderRecord, utcnow
from woostore_shared.topology import ACCESS_WITHDRAWN, STREAM_NAME, WORK_STREAM
from woostore_shared.work import WorkOrder

log = get_logger(__name__)

# Far below the relay's grace (10 s), so a message is marked long before the relay would look
# at it. Every 0.05 s, a busy provisioner wrote about three marks a store: a tenth of the
# platform's CPU a store (docs/benchmarks.md, The cost of a store).
MARK_DELAY_SECONDS = 1.0


# The marks, as statements whose text is the same however many messages they mark: psycopg
# parses a statement's text once and caches it, except a long one or one of more than 50
# parameters. Built as a VALUES list, one pair of parameters a message, the statement was
# parsed again at each mark: a thirtieth of the provisioner's CPU (py-spy, while stores were
# made). An id gone meanwhile (pruned) is skipped.
_MARK_EVENTS = text(
    "UPDATE store_events SET published_at = :now, stream_sequence = marks.sequence"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:sequences AS bigint[])) AS marks (id, sequence)"
    " WHERE store_events.id = marks.id"
)
_MARK_ORDERS = text(
    "UPDATE work_orders SET published_at = :now WHERE id = ANY(CAST(:ids AS uuid[]))"
)


class Outbox:
    def __init__(
        self,
        db: Database,
        nats: Client,
        source: str,
        mark_delay: float = MARK_DELAY_SECONDS,
    ) -> None:
        self.db = db
        self.nats = nats
        self.js = nats.jetstream()
        self.source = source
        self.mark_delay = mark_delay
        # Published and not marked yet: events with their stream sequences, and work orders.
        self._events: dict[uuid.UUID, int] = {}
        self._orders: set[uuid.UUID] = set()
        self._marking: asyncio.Task[None] | None = None
        # Stores with an event or work order this process could not publish, which none of
        # their later ones may overtake (a consumer takes a store's status from its newest
        # event). Another process's are not held back by it.
        self._behind: set[uuid.UUID] = set()
        # Asks the server until it answers, once a publish went unanswered (``_unanswered``).
        self._asking: asyncio.Task[None] | None = None
        # One mark at a time: two transactions updating the same rows could deadlock.
        self._one_mark = asyncio.Lock()
        self._closed = False

    async def withdraw_access(self, why: str) -> None:
        """Tell the notifiers a key stopped working (``ACCESS_WITHDRAWN``, saying ``why``): at
        most once, and never in the caller's way, since their sweep finds it anyway."""
        try:
            await self.nats.publish(ACCESS_WITHDRAWN, why.encode())
        except NatsError as error:
            log.info(
                "notifiers not told of a withdrawn key: their sweep finds it", error=repr(error)
            )

    async def deliver(self, events: Sequence[CloudEvent], orders: Sequence[WorkOrder]) -> int:
        """Publish ``events`` in order, then, once all are out, ``orders`` (a worker's first
        progress event must not overtake the event asking for it); stop at the first failure,
        which the relay carries on from. What went out is marked within ``mark_delay``
        seconds, with whatever else went out by then (``mark``), or at once after ``close``;
        returns how many went out."""
        sending, ordering = await self._after_those_waiting(events, orders)
        published = await self._publish(sending)
        all_out = all(event.id in published for event in (*sending, *events))
        sent = await self._send(ordering) if all_out else []
        stores = {e.store_id for e in (*sending, *events)} | {o.store_id for o in orders}
        left = {e.store_id for e in (*sending, *events) if e.id not in published}
        left |= {order.store_id for order in (*ordering, *orders) if order.id not in sent}
        self._behind = (self._behind - stores) | left
        self._events.update(published)
        self._orders.update(sent)
        if self._closed:  # a straggler of a stopping process: no round would come
            await self.mark()
        elif (published or sent) and (self._marking is None or self._marking.done()):
            self._marking = asyncio.create_task(self._mark_soon())
        return len(published) + len(sent)

    async def mark(self) -> None:
        """Mark what went out and is not marked yet, in one transaction. If that fails, the
        relay publishes those messages again, and the server drops the copies that come
        within its duplicate window (``topology.py``)."""
        async with self._one_mark:
            events, orders = dict(self._events), set(self._orders)
            if not events and not orders:
                return
            try:
                await self._write_marks(events, orders)
            except Exception as error:  # whatever it was, the relay covers what is left
                log.warning(
                    "published messages not marked: the relay sends them again",
                    events=len(events), orders=len(orders), error=repr(error),
                )  # fmt: skip
            # Marked, or left to the relay; those delivered meanwhile wait for the next round.
            for event_id in events:
                self._events.pop(event_id, None)
            self._orders -= orders

    async def close(self) -> None:
        """Mark at once what went out, and from now on each delivery as it goes out."""
        self._closed = True
        for task in (self._asking, self._marking):  # a round cut short keeps its marks
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.mark()

    async def _mark_soon(self) -> None:
        while self._events or self._orders:
            await asyncio.sleep(self.mark_delay)
            await self.mark()

    async def _write_marks(self, events: dict[uuid.UUID, int], orders: set[uuid.UUID]) -> None:
        now = utcnow()
        async with self.db.transaction() as session:
            connection = await session.connection()
            if events:
                await connection.execute(
                    _MARK_EVENTS,
                    {"now": now, "ids": list(events), "sequences": list(events.values())},
                )
            if orders:
                await connection.execute(_MARK_ORDERS, {"now": now, "ids": list(orders)})
            await session.commit()

    async def _after_those_waiting(
        self, events: Sequence[CloudEvent], orders: Sequence[WorkOrder]
    ) -> tuple[Sequence[CloudEvent], Sequence[WorkOrder]]:
        """``events`` and ``orders``, each after the unpublished ones of those of their stores
        this process could not publish to, in the order they were written (each older than
        the first of this delivery of its store). If those cannot be read, ``events`` from
        the first of those stores' on, and ``orders``, are left to the relay too: the change
        is committed, and its caller must not be told it failed."""
        written = [(e.time, e.store_id) for e in events] + [(o.time, o.store_id) for o in orders]
        behind = {store_id for _, store_id in written} & self._behind
        if not behind or not self._answering():
            return events, orders
        first: dict[uuid.UUID, datetime] = {}
        for time, store_id in sorted(written):
            first.setdefault(store_id, time)
        # Sent already (unmarked yet), or in this delivery: none is sent twice here.
        known = {*self._events, *self._orders, *(e.id for e in events), *(o.id for o in orders)}
        try:
            async with self.db.session() as session:
                event_rows = await session.exec(
                    select(StoreEvent)
                    .where(col(StoreEvent.published_at).is_(None))
                    .where(col(StoreEvent.store_id).in_(behind))
                    .order_by(col(StoreEvent.time))
                )
                waiting = [
                    CloudEvent.model_validate(row.envelope)
                    for row in event_rows
                    if row.id not in known and row.time < first[row.store_id]
                ]
                order_rows = await session.exec(
                    select(WorkOrderRecord)
                    .where(col(WorkOrderRecord.published_at).is_(None))
                    .where(col(WorkOrderRecord.store_id).in_(behind))
                    .order_by(col(WorkOrderRecord.time))
                )
                waiting_work = [
                    WorkOrder.model_validate(row, from_attributes=True)
                    for row in order_rows
                    if row.id not in known and row.time < first[row.store_id]
                ]
        except Exception as error:  # the database away a moment after the commit, say
            log.warning("events left to the relay: those before them unread", error=repr(error))
            held = (n for n, event in enumerate(events) if event.store_id in behind)
            return events[: next(held, len(events))], []
        return [*waiting, *events], [*waiting_work, *orders]

    async def _publish(self, events: Sequence[CloudEvent]) -> dict[uuid.UUID, int]:
        """Each event published, with its stream sequence."""
        published: dict[uuid.UUID, int] = {}
        if events and not self._answering():
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
                self._unanswered(error)
                log.warning(
                    "event publish deferred to relay",
                    event_id=str(event.id),
                    store_id=str(event.store_id),
                    error=repr(error),
                )
                break
            published[event.id] = ack.seq
        return published

    async def _send(self, orders: Sequence[WorkOrder]) -> list[uuid.UUID]:
        """Each work order sent."""
        sent: list[uuid.UUID] = []
        if orders and not self._answering():
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
                self._unanswered(error)
                log.warning("work deferred to relay", order_id=str(order.id),
                            store_id=str(order.store_id), error=repr(error))  # fmt: skip
                break
            sent.append(order.id)
        return sent

    def _answering(self) -> bool:
        """Connected, and no publish unanswered since the server last answered."""
        return self.nats.is_connected and (self._asking is None or self._asking.done())

    def _unanswered(self, error: Exception) -> None:
        """After a publish that timed out, the server is taken as not answering, and what
        comes next goes to the relay at once, until it answers again (asked every second).
        Hung, or its node lost, it leaves the client connected until two pings go
        unanswered (40-60 s): each write waited out the publish timeout meanwhile, 5 s (a
        fault review)."""
        if isinstance(error, TimeoutError) and self._answering() and not self._closed:
            self._asking = asyncio.create_task(self._until_answered())

    async def _until_answered(self) -> None:
        while True:
            try:
                await require_connected(self.nats)
            except (ConnectionError, TimeoutError, NatsError):
                await asyncio.sleep(RETRY_SECONDS)
            else:
                log.info("nats answers again: deliveries go out at once")
                return

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
            # A batch of events cut short leaves newer events waiting: only the work orders
            # older than its last go with it (a work order comes after the event asking for
            # it, in the same unit of work), so none overtakes its event.
            until = cutoff if len(events) < limit else min(cutoff, events[-1].time)
            records = await session.exec(
                select(WorkOrderRecord)
                .where(col(WorkOrderRecord.published_at).is_(None))
                .where(col(WorkOrderRecord.time) < until)
                .order_by(col(WorkOrderRecord.time))
                .limit(limit)
            )
            orders = [WorkOrder.model_validate(record, from_attributes=True) for record in records]
        relayed = await self.deliver(events, orders)
        await self.mark()  # the next pass must not find them again
        return relayed
