"""The step journal writes a store's row with plain SQL: what it returns must be the row as
the database holds it, every column in its place, and a store that moved on gets nothing."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from sqlalchemy import event
from sqlmodel import col, select

from tests.support import create_store
from woostore_provisioner.journal import Journal
from woostore_provisioner.recipe import PROVISION
from woostore_provisioner.retries import StoreAbandoned, StoreChangedMeanwhile
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
    store = await journal.started(store, PROVISION, FIRST)
    following = (SECOND, trace.get_tracer(__name__).start_span(SECOND.name))

    returned = await journal.completed(
        store,
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
        await journal.started(store, PROVISION, FIRST)
    with pytest.raises(StoreAbandoned):
        await journal.completed(store, PROVISION, FIRST, {"release_revision": 3}, 0.5)

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


async def test_a_store_changed_under_the_runner_gets_nothing_written_or_published(
    database: Database, outbox: Outbox
) -> None:
    """The events are made from the row as the runner had it. Were the row changed by
    someone else meanwhile (here: its correlation id, behind the runner's back), they would
    describe a store that does not exist: the step's whole transaction is undone."""
    store = await provisioning_store(outbox)
    journal = Journal(database, outbox)
    store = await journal.started(store, PROVISION, FIRST)
    async with database.transaction() as session:
        changed = await session.get(Store, store.id)
        assert changed is not None
        changed.correlation_id = "written by another process"
        session.add(changed)
        await session.commit()
    before = await events_of(database, store)

    with pytest.raises(StoreChangedMeanwhile):
        await journal.completed(store, PROVISION, FIRST, None, 0.5)

    async with database.session() as session:
        stored = await session.get(Store, store.id)
        steps = list(await session.exec(select(StoreStep)))
    assert stored is not None
    assert (stored.step_name, stored.updated_at) == (store.step_name, changed.updated_at)
    assert steps == []
    assert await events_of(database, store) == before


async def test_a_step_is_journalled_by_one_statement(database: Database, outbox: Outbox) -> None:
    """The store's row, the step and both progress events: one round trip to PostgreSQL in
    the step's transaction: three cost the provisioner more CPU (journal.py says how much)."""
    store = await provisioning_store(outbox)
    journal = Journal(database, outbox)
    store = await journal.started(store, PROVISION, FIRST)
    following = (SECOND, trace.get_tracer(__name__).start_span(SECOND.name))
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        await journal.completed(store, PROVISION, FIRST, None, 0.5, following)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)

    assert len(statements) == 1, statements
    progress = [e.data for e in await events_of(database, store) if e.type.endswith("progress")]
    assert [(p["step"]["name"], p["state"]) for p in progress][-2:] == [
        ("namespace", "completed"),
        ("credentials", "started"),
    ]
