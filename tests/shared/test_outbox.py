"""The outbox: a store change and its events are committed together, then published in
order, with the event id as Nats-Msg-Id, and marked as published a moment later, many
deliveries in one transaction."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from unittest.mock import ANY

import pytest
from nats.aio.client import Client
from prometheus_client import REGISTRY
from sqlalchemy import event, func, text
from sqlmodel import col, delete, select

from tests.support import DEFAULT_SETTINGS, stream_messages, until
from woostore_devstack.embedded import NatsServer, free_port
from woostore_shared import lifecycle
from woostore_shared.db import Database
from woostore_shared.events import (
    TYPE_PREFIX,
    CloudEvent,
    Deleted,
    DeleteRequested,
    EventData,
    EventName,
    make_event,
)
from woostore_shared.lifecycle import transition
from woostore_shared.models import (
    DEFAULT_TENANT_ID,
    AuditEntry,
    Role,
    Store,
    StoreEvent,
    StoreStatus,
    WorkOrderRecord,
    namespace_for,
)
from woostore_shared.outbox import Outbox
from woostore_shared.topology import STREAM_NAME, WORK_STREAM
from woostore_shared.unit_of_work import UnitOfWork
from woostore_shared.work import Lane, WorkOrder


class Boom(Exception):
    pass


async def a_ready_store(db: Database) -> uuid.UUID:
    slug = f"shop-{uuid.uuid4().hex[:8]}"
    store = Store(
        tenant_id=DEFAULT_TENANT_ID,
        name="Shop",
        slug=slug,
        namespace=namespace_for(slug),
        status=StoreStatus.READY,
        simulated=True,
        settings=DEFAULT_SETTINGS.model_dump(mode="json"),
        correlation_id="corr-1",
    )
    async with db.session() as session:
        session.add(store)
        await session.commit()
    return store.id


async def change(
    outbox: Outbox, store_id: uuid.UUID, *changes: tuple[StoreStatus, EventData]
) -> list[CloudEvent]:
    """One unit of work (so one delivery): the store moved through ``changes``, each with
    its event; the events."""
    async with UnitOfWork.begin(outbox) as uow:
        store = await uow.session.get(Store, store_id)
        assert store is not None
        emitted = []
        for status, event in changes:
            transition(store, status)
            emitted.append(uow.emit(store, event))
    return emitted


DELETING = (StoreStatus.DELETING, DeleteRequested())
DELETED = (StoreStatus.DELETED, Deleted())


async def test_events_are_committed_with_the_change_then_published_in_order(
    database: Database, nats_client: Client
) -> None:
    store_id = await a_ready_store(database)
    outbox = Outbox(database, nats_client, source="/tests")

    first, second = await change(outbox, store_id, DELETING, DELETED)

    js = nats_client.jetstream()
    messages = [await js.get_msg(STREAM_NAME, seq) for seq in (1, 2)]
    assert [m.subject for m in messages] == [
        f"store.delete_requested.{store_id}",
        f"store.deleted.{store_id}",
    ]
    assert [(m.headers or {})["Nats-Msg-Id"] for m in messages] == [str(first.id), str(second.id)]
    envelope = json.loads(messages[0].data or b"{}")
    assert envelope["correlationid"] == "corr-1"
    assert envelope["tenantid"] == str(DEFAULT_TENANT_ID)
    assert envelope["source"] == "/tests"
    await outbox.close()  # marks what went out at once
    async with database.session() as session:
        rows = list(await session.exec(select(StoreEvent).order_by(col(StoreEvent.time))))
        stored = await session.get(Store, store_id)
    assert [r.id for r in rows] == [first.id, second.id]
    assert [r.stream_sequence for r in rows] == [1, 2]
    assert all(r.published_at is not None for r in rows)
    assert stored is not None
    assert stored.status is StoreStatus.DELETED
    assert stored.updated_at == second.time


async def message_ids(nats: Client, stream: str) -> list[str]:
    """The ids (Nats-Msg-Id) of every message ``stream`` holds, in order."""
    return [(m.headers or {})["Nats-Msg-Id"] for m in await stream_messages(nats, stream=stream)]


async def test_a_stores_event_held_back_by_an_outage_goes_out_before_its_later_ones(
    database: Database, nats_server: NatsServer, nats_client: Client
) -> None:
    """NATS restarted while a store was made: the provisioner published the store's next
    events as NATS came back, and the relay its held ones after them, so the store's last
    events on the stream said "provisioning" once it was ready (a user's review). The
    writer now sends the held ones first, and their work before the later work."""
    store_id = await a_ready_store(database)
    outbox = Outbox(database, nats_client, source="/tests")

    async def change_with_work(change: tuple[StoreStatus, EventData], lane: Lane) -> list[str]:
        async with UnitOfWork.begin(outbox) as uow:
            store = await uow.session.get(Store, store_id)
            assert store is not None
            transition(store, change[0])
            return [str(uow.emit(store, change[1]).id), str(uow.dispatch(store, lane).id)]

    nats_server.stop()
    await until(lambda: not nats_client.is_connected, "the client has noticed NATS is gone")
    held = await change_with_work(DELETING, Lane.REMOVAL)
    nats_server.restart()
    await until(lambda: nats_client.is_connected, "the client has reconnected")

    later = await change_with_work(DELETED, Lane.CHANGE)

    assert await message_ids(nats_client, STREAM_NAME) == [held[0], later[0]]
    assert await message_ids(nats_client, WORK_STREAM) == [held[1], later[1]]
    await outbox.mark()
    assert [sequence for sequence, _ in await published_marks(database)] == [1, 2]
    assert await outbox.relay(older_than=timedelta(0)) == 0  # nothing left for the relay


async def test_after_a_publish_goes_unanswered_the_next_go_to_the_relay_until_nats_answers(
    database: Database,
    nats_server: NatsServer,
    nats_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hung (its host frozen, its node lost), NATS leaves its clients connected until two
    pings go unanswered, 40-60 s, and each write waited out the publish timeout (5 s)
    meanwhile (a fault review). After one publish unanswered, the next changes leave their
    messages to the relay without trying, until the server answers again."""
    held, other = await a_ready_store(database), await a_ready_store(database)
    outbox = Outbox(database, nats_client, source="/tests")
    tried: list[str] = []
    publish = outbox.js.publish

    async def counted(subject: str, *args: Any, **kwargs: Any) -> Any:
        tried.append(subject)
        return await publish(subject, *args, **kwargs)

    monkeypatch.setattr(outbox.js, "publish", counted)
    os.kill(nats_server.process.pid, signal.SIGSTOP)
    try:
        [unanswered] = await change(outbox, held, DELETING)  # waits out the publish timeout
        [untried] = await change(outbox, other, DELETING)
    finally:
        os.kill(nats_server.process.pid, signal.SIGCONT)
    assert tried == [unanswered.nats_subject]

    await until(lambda: outbox._answering(), "the outbox has heard NATS answer again")
    [later] = await change(outbox, held, DELETED)
    # The unanswered publish reached the server as it woke; sent again before the store's
    # next event, it is dropped as a copy.
    assert await message_ids(nats_client, STREAM_NAME) == [str(unanswered.id), str(later.id)]
    await outbox.mark()
    assert await outbox.relay(older_than=timedelta(0)) == 1
    assert (await message_ids(nats_client, STREAM_NAME))[-1] == str(untried.id)
    await outbox.close()


async def test_events_after_some_whose_predecessors_cannot_be_read_wait_for_the_relay(
    nats_server: NatsServer, nats_client: Client
) -> None:
    """The change is committed before its events go out: the database away as its writer
    reads a store's held events must not fail the caller's request, nor let the store's
    new events, or the work after them, overtake the held ones."""
    away = Database(f"postgresql+psycopg://woostore@127.0.0.1:{free_port()}/woostore")
    outbox = Outbox(away, nats_client, source="/tests")
    held_back, other = uuid.uuid4(), uuid.uuid4()

    def event(store_id: uuid.UUID) -> CloudEvent:
        return make_event(Deleted(), store_id=store_id, tenant_id=None, correlation_id="c",
                          source="/tests")  # fmt: skip

    nats_server.stop()
    await until(lambda: not nats_client.is_connected, "the client has noticed NATS is gone")
    assert await outbox.deliver([event(held_back)], []) == 0
    nats_server.restart()
    await until(lambda: nats_client.is_connected, "the client has reconnected")
    first, then, last = event(other), event(held_back), event(other)
    work = WorkOrder(id=uuid.uuid4(), lane=Lane.REMOVAL, store_id=other, correlation_id="c",
                     time=then.time)  # fmt: skip

    assert await outbox.deliver([first, then, last], [work]) == 1

    js = nats_client.jetstream()
    assert (await js.stream_info(STREAM_NAME)).state.last_seq == 1
    message = await js.get_msg(STREAM_NAME, 1)
    assert (message.headers or {})["Nats-Msg-Id"] == str(first.id)
    assert (await js.stream_info(WORK_STREAM)).state.messages == 0
    await away.dispose()


async def test_the_relay_sends_no_work_order_before_the_event_asking_for_it(
    database: Database, nats_server: NatsServer, nats_client: Client
) -> None:
    """The relay took as many events as work orders, oldest first: with more events waiting
    than it took, a work order went out before the event asking for it (a diff review)."""
    store_id = await a_ready_store(database)
    writer = Outbox(database, nats_client, source="/tests")
    nats_server.stop()
    await until(lambda: not nats_client.is_connected, "the client has noticed NATS is gone")
    [first] = await change(writer, store_id, DELETING)
    async with UnitOfWork.begin(writer) as uow:
        store = await uow.session.get(Store, store_id)
        assert store is not None
        transition(store, StoreStatus.DELETED)
        asking = uow.emit(store, Deleted())
        work = uow.dispatch(store, Lane.REMOVAL)
    nats_server.restart()
    await until(lambda: nats_client.is_connected, "the client has reconnected")
    relay = Outbox(database, nats_client, source="/tests/relay")

    assert await relay.relay(older_than=timedelta(0), limit=1) == 1
    assert (
        await message_ids(nats_client, STREAM_NAME),
        await message_ids(nats_client, WORK_STREAM),
    ) == ([str(first.id)], [])
    while await relay.relay(older_than=timedelta(0), limit=1):
        pass
    assert await message_ids(nats_client, STREAM_NAME) == [str(first.id), str(asking.id)]
    assert await message_ids(nats_client, WORK_STREAM) == [str(work.id)]


async def published_marks(db: Database) -> list[tuple[int | None, datetime | None]]:
    async with db.session() as session:
        rows = await session.exec(select(StoreEvent).order_by(col(StoreEvent.time)))
        return [(row.stream_sequence, row.published_at) for row in rows]


async def test_deliveries_close_together_are_marked_in_one_transaction(
    database: Database, nats_client: Client
) -> None:
    store_id = await a_ready_store(database)
    outbox = Outbox(database, nats_client, source="/tests", mark_delay=3600)

    await change(outbox, store_id, DELETING)
    await change(outbox, store_id, DELETED)

    assert await published_marks(database) == [(None, None), (None, None)]  # an hour away
    await outbox.close()
    [(first, first_at), (second, second_at)] = await published_marks(database)
    assert (first, second) == (1, 2)
    assert first_at is not None
    assert first_at == second_at, "one transaction marked both"


async def test_an_event_gone_before_its_mark_does_not_hold_back_the_others(
    database: Database, nats_client: Client
) -> None:
    store_id = await a_ready_store(database)
    outbox = Outbox(database, nats_client, source="/tests", mark_delay=3600)
    gone, _ = await change(outbox, store_id, DELETING, DELETED)
    async with database.session() as session:  # pruned, say, between its publish and mark
        await session.exec(delete(StoreEvent).where(col(StoreEvent.id) == gone.id))
        await session.commit()

    await outbox.close()

    [(sequence, published_at)] = await published_marks(database)
    assert sequence == 2
    assert published_at is not None


async def test_a_mark_the_database_refuses_is_left_to_the_relay_and_sent_once(
    database: Database, nats_client: Client
) -> None:
    store_id = await a_ready_store(database)
    outbox = Outbox(database, nats_client, source="/tests", mark_delay=3600)
    [event] = await change(outbox, store_id, DELETING)
    refusal = "ALTER TABLE store_events ADD CONSTRAINT no_marks CHECK (published_at IS NULL)"
    async with database.engine.begin() as connection:
        await connection.execute(text(refusal))

    await outbox.close()  # the refusal is logged, not raised: the change stands

    assert await published_marks(database) == [(None, None)]
    async with database.engine.begin() as connection:
        await connection.execute(text("ALTER TABLE store_events DROP CONSTRAINT no_marks"))
    relay = Outbox(database, nats_client, source="/tests/relay")
    assert await relay.relay(older_than=timedelta(0)) == 1
    assert await published_marks(database) == [(1, ANY)]  # the first copy's sequence
    messages = (await nats_client.jetstream().stream_info(STREAM_NAME)).state.messages
    assert messages == 1, f"the relay's copy of {event.id} was not de-duplicated"


async def test_what_went_out_is_marked_without_being_asked(
    database: Database, nats_client: Client
) -> None:
    store_id = await a_ready_store(database)
    outbox = Outbox(database, nats_client, source="/tests", mark_delay=0.01)

    await change(outbox, store_id, DELETING)

    give_up = time.monotonic() + 20
    while (marks := await published_marks(database)) == [(None, None)]:
        assert time.monotonic() < give_up, "the delivery was never marked"
        await asyncio.sleep(0.02)
    [(sequence, published_at)] = marks
    assert sequence == 1
    assert published_at is not None


async def test_a_failed_transaction_writes_and_publishes_nothing(
    database: Database, nats_client: Client
) -> None:
    store_id = await a_ready_store(database)
    outbox = Outbox(database, nats_client, source="/tests")

    async def change_then_fail() -> None:
        async with UnitOfWork.begin(outbox) as uow:
            store = await uow.session.get(Store, store_id)
            assert store is not None
            transition(store, StoreStatus.DELETING)
            uow.emit(store, DeleteRequested())
            await uow.session.flush()  # the rows reached the database before the failure
            raise Boom

    with pytest.raises(Boom):
        await change_then_fail()

    async with database.session() as session:
        stored = await session.get(Store, store_id)
        rows = list(await session.exec(select(StoreEvent)))
    assert stored is not None
    assert stored.status is StoreStatus.READY
    assert rows == []
    assert (await nats_client.jetstream().stream_info(STREAM_NAME)).state.messages == 0


async def test_marks_are_the_same_statements_however_many_messages_they_mark(
    database: Database, nats_client: Client
) -> None:
    """psycopg parses a statement's text once and caches it, but not a long one or one of
    more than 50 parameters: marks written as a VALUES list (a pair of parameters a message)
    were parsed again each time. Work orders are marked as events are."""
    outbox = Outbox(database, nats_client, source="/tests", mark_delay=3600)
    texts: list[list[str]] = []

    async def mark_recording_statements() -> None:
        statements: list[str] = []

        def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            statements.append(statement)

        event.listen(database.engine.sync_engine, "before_cursor_execute", record)
        try:
            await outbox.mark()
        finally:
            event.remove(database.engine.sync_engine, "before_cursor_execute", record)
        texts.append(statements)

    for stores in (1, 40):  # 40 stores: 80 messages, 160 parameters as a VALUES list
        for _ in range(stores):
            store_id = await a_ready_store(database)
            async with UnitOfWork.begin(outbox) as uow:
                store = await uow.session.get(Store, store_id)
                assert store is not None
                transition(store, StoreStatus.DELETING)
                uow.emit(store, DeleteRequested())
                uow.dispatch(store, Lane.REMOVAL)
        await mark_recording_statements()

    assert len(texts[0]) == 2  # the events' marks and the work orders'
    assert texts[0] == texts[1]
    async with database.session() as session:
        unmarked = await session.exec(
            select(func.count()).where(
                col(StoreEvent.published_at).is_(None) | col(StoreEvent.stream_sequence).is_(None)
            )
        )
        unmarked_orders = await session.exec(
            select(func.count()).where(col(WorkOrderRecord.published_at).is_(None))
        )
        assert (unmarked.one(), unmarked_orders.one()) == (0, 0)


async def test_work_asked_for_with_no_event_is_recorded_and_sent(
    database: Database, nats_client: Client
) -> None:
    """A unit that only dispatches (the reaper sending lost work again): its work order is
    written by the statement that writes a unit's events, with no event to write."""
    store_id = await a_ready_store(database)
    outbox = Outbox(database, nats_client, source="/tests")
    async with UnitOfWork.begin(outbox) as uow:
        store = await uow.session.get(Store, store_id)
        assert store is not None
        order = uow.dispatch(store, Lane.CHANGE)
    await outbox.close()

    async with database.session() as session:
        recorded = await session.get(WorkOrderRecord, order.id)
        events = (await session.exec(select(func.count()).select_from(StoreEvent))).one()
    assert recorded is not None
    assert (recorded.store_id, recorded.lane) == (store_id, "change")
    assert recorded.published_at is not None  # sent, and marked so
    assert events == 0


async def test_a_failure_is_counted_once_committed_and_never_when_rolled_back(
    database: Database, nats_client: Client
) -> None:
    """Metrics count what happened: a unit that fails a store and then rolls back (its
    commit refused, say, and tried again) counted the failure all the same."""
    store_id = await a_ready_store(database)
    outbox = Outbox(database, nats_client, source="/tests")

    def lost() -> float:
        return REGISTRY.get_sample_value("woostore_stores_failed_total", {"step": "lost"}) or 0.0

    async def fail_then_roll_back() -> None:
        async with UnitOfWork.begin(outbox) as uow:
            await lifecycle.fail(uow, store_id, "its namespace vanished", lost=True)
            raise Boom

    before = lost()
    with pytest.raises(Boom):
        await fail_then_roll_back()
    assert lost() == before

    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.fail(uow, store_id, "its namespace vanished", lost=True)
        assert lost() == before  # not before the commit
    assert lost() == before + 1
    await outbox.close()


async def test_a_row_inserted_by_the_unit_is_written_as_it_commits_in_one_statement(
    database: Database, nats_client: Client
) -> None:
    """``UnitOfWork.insert`` writes a new row by the unit's commit statement, as the row holds
    it then: nothing before, and a change made meanwhile is kept. A unit that read and wrote
    nothing else opens no transaction: the statement is its own."""
    outbox = Outbox(database, nats_client, source="/tests")
    slug = f"shop-{uuid.uuid4().hex[:8]}"
    async with UnitOfWork.begin(outbox) as uow:
        store = await lifecycle.request(
            uow, tenant_id=DEFAULT_TENANT_ID, name="Shop", slug=slug, type="woocommerce",
            simulated=True, settings=DEFAULT_SETTINGS,
        )  # fmt: skip
        async with database.session() as elsewhere:  # not committed yet: nobody else sees it
            assert await elsewhere.get(Store, store.id) is None
        store.name = "Renamed"
        assert not uow.session.in_transaction()

    async with database.session() as session:
        stored = await session.get(Store, store.id)
        events = list(
            await session.exec(select(StoreEvent).where(col(StoreEvent.store_id) == store.id))
        )
    assert stored is not None
    assert (stored.name, stored.slug, stored.status) == ("Renamed", slug, StoreStatus.QUEUED)
    assert stored.settings == DEFAULT_SETTINGS.model_dump(mode="json")
    assert [event.type for event in events] == [TYPE_PREFIX + EventName.REQUESTED]


async def test_a_change_announced_of_a_new_row_is_written_with_it_once(
    database: Database, nats_client: Client
) -> None:
    """``emit`` of a row the unit inserts: the row is written once, as it holds at the
    commit (the ORM wrote it a second time: a taken key, read as a taken slug)."""
    outbox = Outbox(database, nats_client, source="/tests")
    async with UnitOfWork.begin(outbox) as uow:
        store = await lifecycle.request(
            uow, tenant_id=DEFAULT_TENANT_ID, name="Shop", slug=f"shop-{uuid.uuid4().hex[:8]}",
            type="woocommerce", simulated=True, settings=DEFAULT_SETTINGS,
        )  # fmt: skip
        transition(store, StoreStatus.PROVISIONING, {StoreStatus.QUEUED})
        uow.emit(store, DeleteRequested())

    async with database.session() as session:
        stored = await session.get(Store, store.id)
        events = await session.exec(
            select(func.count()).where(col(StoreEvent.store_id) == store.id)
        )
    assert stored is not None
    assert (stored.status, stored.updated_at) == (StoreStatus.PROVISIONING, store.updated_at)
    assert events.one() == 2


async def test_audit_entries_are_written_as_the_unit_commits_and_never_when_it_fails(
    database: Database, nats_client: Client
) -> None:
    outbox = Outbox(database, nats_client, source="/tests")

    def entry(action: str) -> AuditEntry:
        return AuditEntry(
            tenant_id=DEFAULT_TENANT_ID, actor="wsk_0123456789ab", actor_role=Role.TENANT,
            action=action, target="store/x", source_ip=None, user_agent="ü agent",
            details={"name": "Shop \"ü\"", "count": 2},
        )  # fmt: skip

    async with UnitOfWork.begin(outbox) as uow:
        uow.audit(entry("store.first"))
        uow.audit(entry("store.second"))

    async def audit_then_fail() -> None:
        async with UnitOfWork.begin(outbox) as uow:
            uow.audit(entry("store.rolled-back"))
            raise Boom

    with pytest.raises(Boom):
        await audit_then_fail()

    async with database.session() as session:
        written = list(await session.exec(select(AuditEntry).order_by(col(AuditEntry.id))))
    assert [row.action for row in written] == ["store.first", "store.second"]
    assert written[0].actor_role is Role.TENANT
    assert written[0].details == {"name": 'Shop "ü"', "count": 2}
    assert (written[0].source_ip, written[0].user_agent) == (None, "ü agent")
