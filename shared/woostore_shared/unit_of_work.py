"""The unit of work: the one place that commits.

``async with UnitOfWork.begin(outbox) as uow:`` opens one database transaction. Inside it a
change is made through ``uow.session``; ``uow.emit`` records the event announcing a store's
change (a fact, ``store_events``; ``uow.announce`` when a statement wrote the change to the
row) and ``uow.dispatch`` the work it asks for (a command, ``work_orders``), and
``uow.audit`` who did it (``audit_log``), all in that same transaction; ``uow.insert`` writes
a new row at once by a plain statement. It commits once, at the end of the block, or rolls
everything back; only after the commit does the outbox publish what was recorded, so nothing
is announced that did not happen.

Store status changes go through ``lifecycle`` (which takes a unit of work); leases, quota
counters, keys and the audit log commit through one too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import psycopg
from sqlalchemy import insert, text
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from woostore_shared import tracing
from woostore_shared.db import as_sqlalchemy_error
from woostore_shared.events import CloudEvent, EventData, make_event
from woostore_shared.models import AuditEntry, Store, utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.transitions import actions_of
from woostore_shared.work import Lane, WorkOrder

# A unit's events as rows, from the parameter ``UnitOfWork.take_events`` makes (a JSON array
# of them): inserted by one plain statement as the unit commits, or by the statement writing
# the change they announce. As ORM objects each was an INSERT of its own, and the ORM's work on
# them cost more than PostgreSQL's: a store's progress writes two events a step
# (docs/benchmarks.md, The cost of a store). Rows travel as one JSON document, not as an array
# a column: psycopg's work on each array parameter cost more than the statement's own.
EVENT_COLUMNS = "store_events (id, store_id, subject, type, time, envelope)"
EVENT_ROWS = (
    "SELECT id, store_id, subject, type, time, envelope"
    " FROM json_populate_recordset(NULL::store_events, CAST(:events AS json))"
)
# The unit's work orders and audit entries go with the events left, in the same statement: a
# create paid a round trip and the ORM's flush for its one order, and the same for its audit
# entry (docs/benchmarks.md, Bursts).
_RECORD = text(
    "WITH orders AS (INSERT INTO work_orders"  # noqa: S608  (fixed text, no input)
    " (id, store_id, lane, correlation_id, time, traceparent, tracestate)"
    " SELECT id, store_id, lane, correlation_id, time, traceparent, tracestate"
    " FROM json_populate_recordset(NULL::work_orders, CAST(:orders AS json))),"
    " audited AS (INSERT INTO audit_log"
    " (time, tenant_id, actor, actor_role, action, target, source_ip, user_agent, details)"
    " SELECT time, tenant_id, actor, actor_role, action, target, source_ip, user_agent, details"
    " FROM json_populate_recordset(NULL::audit_log, CAST(:audited AS json)))"
    f" INSERT INTO {EVENT_COLUMNS} {EVENT_ROWS}"
)


def _as_json(rows: list[dict[str, Any]]) -> str:
    """Rows as the JSON array ``json_populate_recordset`` reads: ids and times as text."""
    return json.dumps(rows, default=str)


class UnitOfWork:
    def __init__(self, session: AsyncSession, source: str) -> None:
        self.session = session
        self.source = source  # the CloudEvent source of the events emitted here
        self.events: list[CloudEvent] = []
        self._written = 0  # how many of the events a statement has written already
        self.work: list[WorkOrder] = []  # written with the events left as the unit commits
        self.audited: list[AuditEntry] = []  # and so are these
        self._once_committed: list[Callable[[], object]] = []
        self._access_withdrawn: str | None = None

    @classmethod
    @asynccontextmanager
    async def begin(cls, outbox: Outbox) -> AsyncIterator[UnitOfWork]:
        async with outbox.db.transaction() as session:
            uow = cls(session, outbox.source)
            try:
                yield uow
                await uow._record()
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
        for callback in uow._once_committed:
            callback()
        await outbox.deliver(uow.events, uow.work)
        if uow._access_withdrawn is not None:
            await outbox.withdraw_access(uow._access_withdrawn)

    def emit(self, store: Store, data: EventData) -> CloudEvent:
        """Record the event announcing ``store``'s change, made through this unit's session
        (its ``updated_at`` becomes the event's time), with the actions the store accepts
        after it; published once this commits."""
        event = self.announce(store, data)
        store.updated_at = event.time
        self.session.add(store)
        return event

    def announce(self, store: Store, data: EventData) -> CloudEvent:
        """Record the event announcing a change a statement of this unit wrote to the store's
        row; ``store`` is the row as that statement left it, ``updated_at`` set by it (a
        moment before the event's time)."""
        event = make_event(
            data.model_copy(update={"actions": actions_of(store)}),
            store_id=store.id,
            tenant_id=store.tenant_id,
            correlation_id=store.correlation_id,
            source=self.source,
        )
        self.events.append(event)
        return event

    async def insert(self, row: SQLModel) -> None:
        """Write a new row at once by one plain statement, and keep it in the session as if
        loaded, so that a change made to it later is an UPDATE as for any row read. The ORM's
        flush of a store cost a create more than PostgreSQL's work on it
        (docs/benchmarks.md, Bursts). Every column is written as the row holds it, None as
        NULL: a column the database would fill in needs a default in the model too. Rows
        added to the session before are written first, as the ORM would (this one may refer
        to them)."""
        if self.session.new:
            await self.session.flush()
        table = type(row).__table__  # type: ignore[attr-defined]
        values = {column.name: getattr(row, column.key) for column in table.columns}
        connection = await self.session.connection()
        await connection.execute(insert(table), values)
        make_transient_to_detached(row)
        self.session.add(row)

    @asynccontextmanager
    async def plain(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """psycopg's own connection under this unit's session, in its transaction: for a
        statement shared with the notifier, which has no SQLAlchemy (``access.spend``). Its
        errors are raised as SQLAlchemy's, as the session's are, so a client is told the
        same (a 503 for a database away, ``problems.py``)."""
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        driver = cast(psycopg.AsyncConnection[Any], raw.driver_connection)
        try:
            yield driver
        except psycopg.Error as error:
            raise as_sqlalchemy_error(error, driver) from error

    def audit(self, entry: AuditEntry) -> None:
        """Add ``entry`` to the audit log as this commits: it is there if the change is."""
        self.audited.append(entry)

    def withdraw_access(self, why: str) -> None:
        """A key stops working with this unit (revoked, its tenant suspended or deleted;
        ``why`` names it: key.revoke, tenant.suspend, tenant.delete): the event streams are
        told once it commits, and end theirs within moments."""
        self._access_withdrawn = why

    def once_committed(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once this has committed: a metric counts what happened, never a
        change rolled back (and perhaps tried again)."""
        self._once_committed.append(callback)

    def dispatch(self, store: Store, lane: Lane) -> WorkOrder:
        """Ask a worker on ``lane`` to look at ``store`` once this commits."""
        trace = tracing.current_carrier()  # the trace of the request asking for the work
        order = WorkOrder(
            id=uuid.uuid4(),
            lane=lane,
            store_id=store.id,
            correlation_id=store.correlation_id,
            time=utcnow(),
            traceparent=trace.get("traceparent"),
            tracestate=trace.get("tracestate"),
        )
        self.work.append(order)
        return order

    def take_events(self) -> dict[str, str]:
        """The events announced and not written yet, as the parameters of ``EVENT_ROWS``, for
        a statement that writes them with the change they announce: one round trip, not two.
        The unit writes them no more, and publishes them after the commit with the others."""
        taken, self._written = self.events[self._written :], len(self.events)
        rows = [
            {"id": event.id, "store_id": event.store_id, "subject": event.nats_subject,
             "type": event.type, "time": event.time, "envelope": event.model_dump(mode="json")}
            for event in taken
        ]  # fmt: skip
        return {"events": _as_json(rows)}

    async def _record(self) -> None:
        """The events not written yet, the work orders and the audit entries, in one statement."""
        if self._written == len(self.events) and not self.work and not self.audited:
            return
        await self.session.flush()  # a store made in this unit exists before its events
        orders = [
            {"id": order.id, "store_id": order.store_id, "lane": order.lane.value,
             "correlation_id": order.correlation_id, "time": order.time,
             "traceparent": order.traceparent, "tracestate": order.tracestate}
            for order in self.work
        ]  # fmt: skip
        audited = [
            {"time": entry.time, "tenant_id": entry.tenant_id, "actor": entry.actor,
             "actor_role": entry.actor_role.value, "action": entry.action,
             "target": entry.target, "source_ip": entry.source_ip,
             "user_agent": entry.user_agent, "details": entry.details}
            for entry in self.audited
        ]  # fmt: skip
        connection = await self.session.connection()
        await connection.execute(
            _RECORD,
            {**self.take_events(), "orders": _as_json(orders), "audited": _as_json(audited)},
        )
