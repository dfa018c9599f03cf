"""The outbox: a store change and its events are committed together, then published in
order, with the event id as Nats-Msg-Id."""

from __future__ import annotations

import json
import uuid

import pytest
from nats.aio.client import Client
from sqlmodel import col, select

from tests.support import DEFAULT_SETTINGS
from woostore_shared.db import Database
from woostore_shared.events import Deleted, DeleteRequested
from woostore_shared.lifecycle import transition
from woostore_shared.models import DEFAULT_TENANT_ID, Store, StoreEvent, StoreStatus, namespace_for
from woostore_shared.outbox import Outbox
from woostore_shared.topology import STREAM_NAME
from woostore_shared.unit_of_work import UnitOfWork


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


async def test_events_are_committed_with_the_change_then_published_in_order(
    database: Database, nats_client: Client
) -> None:
    store_id = await a_ready_store(database)
    outbox = Outbox(database, nats_client, source="/tests")

    async with UnitOfWork.begin(outbox) as uow:
        store = await uow.session.get(Store, store_id)
        assert store is not None
        transition(store, StoreStatus.DELETING)
        first = uow.emit(store, DeleteRequested())
        transition(store, StoreStatus.DELETED)
        second = uow.emit(store, Deleted())

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
    async with database.session() as session:
        rows = list(await session.exec(select(StoreEvent).order_by(col(StoreEvent.time))))
        stored = await session.get(Store, store_id)
    assert [r.id for r in rows] == [first.id, second.id]
    assert [r.stream_sequence for r in rows] == [1, 2]
    assert all(r.published_at is not None for r in rows)
    assert stored is not None
    assert stored.status is StoreStatus.DELETED
    assert stored.updated_at == second.time


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
