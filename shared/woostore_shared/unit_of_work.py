"""The unit of work: the one place that commits.

``async with UnitOfWork.begin(outbox) as uow:`` opens one database transaction. Inside it a
change is made through ``uow.session``; ``uow.emit`` records the event announcing a store's
change (a fact, ``store_events``; ``uow.announce`` when a statement wrote the change to the
row) and ``uow.dispatch`` the work it asks for (a command, ``work_orders``), and
``uow.audit`` who did it (``audit_log``), all in that same transaction; ``uow.insert`` adds
a new row. It commits once, at the end of the block, or rolls everything back; only after
the commit does the outbox publish what was recorded, so nothing is announced that did not
happen.

The unit's new rows, events, work orders and audit entries, and what other modules add to it
(``commit_with``: a request's rates), are written by one statement as it commits. A unit that
read and wrote nothing before (a new store) sends only that statement, in a transaction of
its own: one round trip where BEGIN, the statements and COMMIT took six
(docs/benchmarks.md, Bursts).

Store status changes go through ``lifecycle`` (which takes a unit of work); leases, quota
counters, keys and the audit log commit through one too.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import psycopg
from sqlalchemy import Table, text
from sqlalchemy.dialects import postgresql
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from woostore_shared import tracing
from woostore_shared.db import Database, as_sqlalchemy_error
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
# The WITH queries of a unit's commit statement writing its work orders and audit entries. A
# create paid a round trip and the ORM's flush for each (docs/benchmarks.md, Bursts).
_ORDERS = (
    "orders AS (INSERT INTO work_orders"
    " (id, store_id, lane, correlation_id, time, traceparent, tracestate)"
    " SELECT id, store_id, lane, correlation_id, time, traceparent, tracestate"
    " FROM json_populate_recordset(NULL::work_orders, CAST(:orders AS json)))"
)
_AUDITED = (
    "audited AS (INSERT INTO audit_log"
    " (time, tenant_id, actor, actor_role, action, target, source_ip, user_agent, details)"
    " SELECT time, tenant_id, actor, actor_role, action, target, source_ip, user_agent, details"
    " FROM json_populate_recordset(NULL::audit_log, CAST(:audited AS json)))"
)
_EVENTS = f"events AS (INSERT INTO {EVENT_COLUMNS} {EVENT_ROWS})"
_PSYCOPG = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


@functools.cache
def _new_rows(table: Table) -> str:
    """The WITH query writing a unit's new rows of ``table``, from the parameter
    ``new_<table>`` (a JSON array of them): every column the model has, as the row holds it.
    Built once a table: every create writes one, and a store has 43 columns to name."""
    quote = _PSYCOPG.identifier_preparer.quote  # a column named as a keyword (order, user)
    name, columns = quote(table.name), ", ".join(quote(column.name) for column in table.columns)
    return (
        f"new_{table.name} AS (INSERT INTO {name} ({columns})"  # noqa: S608  (our names)
        f" SELECT {columns} FROM json_populate_recordset(NULL::{name},"
        f" CAST(:new_{table.name} AS json)))"
    )


@functools.cache
def _for_psycopg(statement: str) -> str:
    """``statement``, its ``:name`` parameters as psycopg's: built once for each shape of
    commit a process makes (which parts it has), a handful."""
    return str(text(statement).compile(dialect=_PSYCOPG))


def _as_json(rows: list[dict[str, Any]]) -> str:
    """Rows as the JSON array ``json_populate_recordset`` reads: ids and times as text."""
    return json.dumps(rows, default=str)


class UnitOfWork:
    def __init__(self, session: AsyncSession, db: Database, source: str) -> None:
        self.session = session
        self._db = db
        self.source = source  # the CloudEvent source of the events emitted here
        self.events: list[CloudEvent] = []
        self._written = 0  # how many of the events a statement has written already
        self.work: list[WorkOrder] = []  # written with the events left as the unit commits
        self.audited: list[AuditEntry] = []  # and so are these
        self._new: list[SQLModel] = []  # and these
        self._parts: list[tuple[str, str, dict[str, Any]]] = []  # commit_with's
        self._once_committed: list[Callable[[], object]] = []
        self._access_withdrawn: str | None = None

    @classmethod
    @asynccontextmanager
    async def begin(cls, outbox: Outbox) -> AsyncIterator[UnitOfWork]:
        async with outbox.db.transaction() as session:
            uow = cls(session, outbox.db, outbox.source)
            try:
                yield uow
                await uow._commit()
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
        if not any(row is store for row in self._new):  # a new one is written as it commits
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

    def insert(self, row: SQLModel) -> None:
        """Add a new row, written by the unit's commit statement with its events (a taken
        slug fails the commit). Nothing in the unit reads the row before, or writes a row
        referring to it other than by ``insert`` (the session never holds it). Every column
        is written as the row holds it, None as NULL: a column the database would fill in
        needs a default in the model too. The ORM's flush of a store cost a create more
        than PostgreSQL's work on it (docs/benchmarks.md, Bursts)."""
        self._new.append(row)

    def commit_with(self, read: str, queries: str, **params: Any) -> None:
        """Have the unit's commit statement run ``queries`` (WITH queries, ``:name``
        parameters, names of their own) beside its writes, in its transaction. The statement
        reads ``read``, the last of them, so each runs, writing or not; an error one raises
        fails the commit, and the unit is rolled back whole."""
        self._parts.append((read, queries, params))

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

    async def _commit(self) -> None:
        """Write what the unit holds by its commit statement, and commit: in the unit's
        transaction, or, where it read and wrote nothing before, as a transaction of its
        own (the statement alone, autocommit)."""
        session = self.session
        if session.new or session.dirty or session.deleted:
            await session.flush()  # a store made in this unit exists before its events
        statement = self._commit_statement()
        if session.in_transaction():
            if statement is not None:
                async with self.plain() as connection:
                    await connection.execute(*statement)
            await session.commit()
        elif statement is not None:
            async with self._db.standalone() as connection:
                await connection.execute(*statement)

    def _commit_statement(self) -> tuple[str, dict[str, Any]] | None:
        """One statement writing the unit's new rows, the events not written yet, the work
        orders and the audit entries, and running ``commit_with``'s queries; None if there
        is nothing to write."""
        queries: list[str] = []
        params: dict[str, Any] = {}
        tables: dict[str, tuple[Any, list[dict[str, Any]]]] = {}
        for row in self._new:
            table = type(row).__table__  # type: ignore[attr-defined]
            values = {column.name: getattr(row, column.key) for column in table.columns}
            tables.setdefault(table.name, (table, []))[1].append(values)
        for name, (table, rows) in tables.items():
            queries.append(_new_rows(table))
            params[f"new_{name}"] = _as_json(rows)
        if self._written < len(self.events):
            queries.append(_EVENTS)
            params.update(self.take_events())
        if self.work:
            queries.append(_ORDERS)
            params["orders"] = _as_json([
                {"id": order.id, "store_id": order.store_id, "lane": order.lane.value,
                 "correlation_id": order.correlation_id, "time": order.time,
                 "traceparent": order.traceparent, "tracestate": order.tracestate}
                for order in self.work
            ])  # fmt: skip
        if self.audited:
            queries.append(_AUDITED)
            params["audited"] = _as_json([
                {"time": entry.time, "tenant_id": entry.tenant_id, "actor": entry.actor,
                 "actor_role": entry.actor_role.value, "action": entry.action,
                 "target": entry.target, "source_ip": entry.source_ip,
                 "user_agent": entry.user_agent, "details": entry.details}
                for entry in self.audited
            ])  # fmt: skip
        for _, part, part_params in self._parts:
            queries.append(part)
            params.update(part_params)
        if not queries:
            return None
        read = (f"(SELECT count(*) FROM {name})" for name, _, _ in self._parts)  # noqa: S608
        reads = " + ".join(read)  # (the names are the modules' own, as is all the text)
        statement = f"WITH {', '.join(queries)} SELECT {reads or 1}"
        return _for_psycopg(statement), params
