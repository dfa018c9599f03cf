"""The step journal writes a store's row with plain SQL: what it returns must be the row as
the database holds it, every column in its place, and a store that moved on gets nothing."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from sqlmodel import col, select

from tests.support import create_store
from woostore_provisioner.journal import Journal
from woostore_provisioner.recipe import PROVISION
from woostore_provisioner.retries import StoreAbandoned
from woostore_shared import lifecycle
from woostore_shared.db import Database
from woostore_shared.events import CloudEvent, StepInfo
from woostore_shared.models import Store, StoreEvent, StoreStatus, StoreStep
from woostore_shared.outbox import Outbox
from woostore_shared.unit_of_work import UnitOfWork

TOTAL = len(PROVISION.steps)
FIRST, SECOND = (
    StepInfo(name=step.name, title=step.title, index=index, total=TOTAL)
    for index, step in enumerate(PROVISION.steps[:2], start=1)
)


async def provisioning_store(outbox: Outbox) -> Store:
    store = await create_store(outbox)
    async with UnitOfWork.begin(outbox) as uow:
        return await lifecycle.start(uow, store.id)


async def events_of(database: Database, store: Store) -> list[CloudEvent]:
    async with database.session() as session:
        rows = await session.exec(
            select(StoreEvent.envelope)
            .where(col(StoreEvent.store_id) == store.id)
            .order_by(col(StoreEvent.time))
        )
        return [CloudEvent.model_validate(envelope) for envelope in rows]


async def test_a_completed_step_returns_the_row_as_stored_with_what_it_learned(
    database: Database, outbox: Outbox
) -> None:
    store = await provisioning_store(outbox)
    journal = Journal(database, outbox)
    await journal.started(store.id, PROVISION, FIRST)
    following = (SECOND, trace.get_tracer(__name__).start_span(SECOND.name))

    returned = await journal.completed(
        store.id,
        PROVISION,
        FIRST,
        {"release_revision": 3, "chart_version": "1.2.3"},
        0.5,
        following,
    )

    async with database.session() as session:
        stored = await session.get(Store, store.id)
        steps = list(await session.exec(select(StoreStep)))
    assert stored is not None
    assert returned.model_dump() == stored.model_dump()  # every column, none swapped
    assert type(returned.status) is StoreStatus  # read as the model reads it
    assert (stored.release_revision, stored.chart_version) == (3, "1.2.3")
    assert (stored.step_name, stored.step_index, stored.progress) == ("credentials", 2, 0.0909)
    assert [(s.name, s.position, s.seconds, s.completed_at) for s in steps] == [
        ("namespace", 1, 0.5, stored.updated_at)
    ]
    progress = [e.data for e in await events_of(database, store) if e.type.endswith("progress")]
    assert [(p["step"]["name"], p["state"]) for p in progress] == [
        ("namespace", "started"),
        ("namespace", "completed"),
        ("credentials", "started"),
    ]


async def test_a_store_that_moved_on_gets_no_progress_and_no_journal_entry(
    database: Database, outbox: Outbox
) -> None:
    store = await provisioning_store(outbox)
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.fail(uow, store.id, "past its deadline")
    before = await events_of(database, store)
    journal = Journal(database, outbox)

    with pytest.raises(StoreAbandoned):
        await journal.started(store.id, PROVISION, FIRST)
    with pytest.raises(StoreAbandoned):
        await journal.completed(store.id, PROVISION, FIRST, {"release_revision": 3}, 0.5)

    async with database.session() as session:
        stored = await session.get(Store, store.id)
        steps = list(await session.exec(select(StoreStep)))
    assert stored is not None
    assert (stored.status, stored.release_revision, stored.step_name) == (
        StoreStatus.FAILED,
        None,
        None,
    )
    assert steps == []
    assert await events_of(database, store) == before
