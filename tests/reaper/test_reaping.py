"""The reaper's pass: fail stores that overran their provisioning deadline, and relay events
their writer could not publish. Real PostgreSQL, real nats-server; stores are set up in the
database in the state each case needs."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
import structlog
from nats.aio.client import Client
from prometheus_client import REGISTRY
from sqlmodel import col, select
from structlog.testing import capture_logs

from tests.support import DEFAULT_SETTINGS, envelope, stream_messages
from woostore_cluster import MANAGED_BY, STORE_ID_LABEL
from woostore_cluster.simulated import SimulatedCluster
from woostore_reaper.reaping import (
    RELAY_GRACE,
    enforce_deadlines,
    forget_expired,
    prune_events,
    reap_once,
)
from woostore_shared.db import Database
from woostore_shared.events import CloudEvent, DeleteRequested, make_event
from woostore_shared.models import (
    DEFAULT_TENANT_ID,
    IdempotencyKey,
    RateLimit,
    SpentTicket,
    Store,
    StoreEvent,
    StoreStatus,
    WorkOrderRecord,
    namespace_for,
    utcnow,
)
from woostore_shared.outbox import Outbox

DEADLINE = timedelta(seconds=60)
GRACE = timedelta(seconds=60)
FAILED = "io.woostore.store.failed"
FAILURES = "woostore_stores_failed_total"


async def add_store(
    db: Database,
    status: StoreStatus,
    *,
    provisioning_since: timedelta | None = None,
    step: str | None = None,
    cleaned_up: bool = False,
    waiting_cause: str | None = None,
) -> uuid.UUID:
    now = utcnow()
    slug = f"s-{uuid.uuid4().hex[:10]}"
    store = Store(
        tenant_id=DEFAULT_TENANT_ID,
        name=f"{status.value} store",
        slug=slug,
        namespace=namespace_for(slug),
        status=status,
        simulated=True,
        settings=DEFAULT_SETTINGS.model_dump(mode="json"),
        correlation_id=uuid.uuid4().hex,
        created_at=now - timedelta(hours=1),
        updated_at=now - timedelta(hours=1),
        provisioning_started_at=None if provisioning_since is None else now - provisioning_since,
        step_name=step,
        step_title=step,
        step_index=None if step is None else 2,
        step_total=None if step is None else 5,
        cleaned_up_at=now - timedelta(minutes=30) if cleaned_up else None,
        waiting_cause=waiting_cause,
    )
    async with db.session() as session:
        session.add(store)
        await session.commit()
    return store.id


async def load(db: Database, store_id: uuid.UUID) -> Store:
    async with db.session() as session:
        store = await session.get(Store, store_id)
    assert store is not None
    return store


async def event_rows(db: Database) -> list[StoreEvent]:
    async with db.session() as session:
        return list(await session.exec(select(StoreEvent).order_by(col(StoreEvent.time))))


async def add_unpublished_event(
    db: Database, store_id: uuid.UUID, at: datetime, published: bool = False
) -> uuid.UUID:
    """An event its writer committed at ``at`` but never published (NATS was down), or
    (``published``) one the writer published then."""
    store = await load(db, store_id)
    event = make_event(
        DeleteRequested(),
        store_id=store.id,
        tenant_id=store.tenant_id,
        correlation_id=store.correlation_id,
        source="/woostore/api",
    ).model_copy(update={"time": at})
    store.updated_at = at  # as UnitOfWork.emit does
    async with db.session() as session:
        session.add(store)
        session.add(
            StoreEvent(
                id=event.id,
                store_id=store.id,
                subject=event.nats_subject,
                type=event.type,
                time=event.time,
                envelope=event.model_dump(mode="json"),
                published_at=at if published else None,
            )
        )
        await session.commit()
    return event.id


# --- event retention ----------------------------------------------------------------------


async def test_events_past_their_retention_are_pruned_oldest_first_a_batch_at_a_time(
    outbox: Outbox, database: Database
) -> None:
    store_id = await add_store(database, StoreStatus.READY)
    now = utcnow()
    old = [
        await add_unpublished_event(database, store_id, now - timedelta(days=d), published=True)
        for d in (90, 60, 45)
    ]
    owed = await add_unpublished_event(database, store_id, now - timedelta(days=80))
    recent = await add_unpublished_event(database, store_id, now - timedelta(days=5), True)
    keep_for = timedelta(days=30)

    assert await prune_events(outbox, None) == 0  # no retention: every event kept
    assert await prune_events(outbox, keep_for, batch=2) == 2
    assert {row.id for row in await event_rows(database)} == {old[2], owed, recent}
    assert await prune_events(outbox, keep_for, batch=2) == 1
    assert await prune_events(outbox, keep_for, batch=2) == 0
    # Never one the relay still owes; the store itself is as it was.
    assert {row.id for row in await event_rows(database)} == {owed, recent}
    assert (await load(database, store_id)).status is StoreStatus.READY


# --- deadlines ----------------------------------------------------------------------------


async def test_a_store_provisioning_past_its_deadline_is_failed_naming_the_deadline(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = await add_store(
        database, StoreStatus.PROVISIONING, provisioning_since=timedelta(minutes=2), step="rollout"
    )
    failed_at_rollout = REGISTRY.get_sample_value(FAILURES, {"step": "rollout"}) or 0.0

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        assert await enforce_deadlines(outbox, DEADLINE) == 1
    assert REGISTRY.get_sample_value(FAILURES, {"step": "rollout"}) == failed_at_rollout + 1

    store = await load(database, store_id)
    # The line the DeadLetter runbook points at names the store as the provisioner's do.
    [said] = [line for line in logs if line["event"] == "store failed"]
    assert (said["store_id"], said["correlation_id"]) == (str(store_id), store.correlation_id)
    assert store.status is StoreStatus.FAILED
    assert store.failure_reason is not None
    assert "60 s" in store.failure_reason
    [row] = await event_rows(database)
    assert row.type == FAILED
    assert row.store_id == store_id
    assert row.envelope["data"] == {
        "status": "failed",
        "reason": store.failure_reason,
        "step": "rollout",
        "actions": ["delete"],  # no retry until its clean-up has finished
    }
    await outbox.mark()  # what it marks a moment after publishing, now
    [row] = await event_rows(database)
    assert row.published_at is not None
    [message] = await stream_messages(nats_client)
    assert message.subject == f"store.failed.{store_id}"
    assert message.headers is not None
    assert message.headers["Nats-Msg-Id"] == str(row.id)
    assert envelope(message) == row.envelope


async def test_a_store_failed_by_its_deadline_stays_in_the_trace_of_its_making(
    outbox: Outbox, database: Database
) -> None:
    """Its `failed` event and its clean-up's work order continue the trace its provision
    work order carried (the request's): they began a trace of their own, and a store's
    trace stopped at its last step."""
    store_id = await add_store(
        database, StoreStatus.PROVISIONING, provisioning_since=timedelta(minutes=2), step="rollout"
    )
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with database.session() as session:
        session.add(
            WorkOrderRecord(
                id=uuid.uuid4(), store_id=store_id, lane="provision", correlation_id="c",
                time=utcnow() - timedelta(minutes=3), published_at=utcnow(),
                traceparent=f"00-{trace_id}-00f067aa0ba902b7-01",
            )
        )  # fmt: skip
        await session.commit()

    assert await enforce_deadlines(outbox, DEADLINE) == 1

    [failed] = await event_rows(database)
    assert failed.envelope["traceparent"].split("-")[1] == trace_id
    async with database.session() as session:
        [removal] = await session.exec(
            select(WorkOrderRecord).where(col(WorkOrderRecord.lane) == "removal")
        )
    assert removal.traceparent is not None
    assert removal.traceparent.split("-")[1] == trace_id


async def test_a_store_past_its_deadline_while_waiting_on_the_cluster_is_failed_saying_why(
    outbox: Outbox, database: Database
) -> None:
    cause = "Waiting for cluster capacity: 0/3 nodes are available: 3 Insufficient cpu."
    waiting = await add_store(
        database, StoreStatus.PROVISIONING, provisioning_since=timedelta(minutes=2),
        step="rollout", waiting_cause=cause,
    )  # fmt: skip

    assert await enforce_deadlines(outbox, DEADLINE) == 1

    store = await load(database, waiting)
    assert store.failure_reason == f"provisioning did not finish within 60 s: {cause}"
    assert store.waiting_cause is None  # failed: it no longer waits


async def test_a_store_provisioning_within_its_deadline_is_left_alone(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = await add_store(
        database, StoreStatus.PROVISIONING, provisioning_since=timedelta(seconds=30)
    )

    assert await enforce_deadlines(outbox, DEADLINE) == 0

    store = await load(database, store_id)
    assert store.status is StoreStatus.PROVISIONING
    assert store.failure_reason is None
    assert await event_rows(database) == []
    assert await stream_messages(nats_client) == []


@pytest.mark.parametrize(
    "status",
    [StoreStatus.QUEUED, StoreStatus.READY, StoreStatus.FAILED, StoreStatus.DELETING],
)
async def test_a_store_not_provisioning_is_left_alone_however_old(
    outbox: Outbox, database: Database, status: StoreStatus
) -> None:
    store_id = await add_store(database, status, provisioning_since=timedelta(days=3))

    assert await enforce_deadlines(outbox, DEADLINE) == 0

    store = await load(database, store_id)
    assert store.status is status
    assert store.failure_reason is None
    assert await event_rows(database) == []


async def test_only_the_overdue_stores_among_many_are_failed_and_only_once(
    outbox: Outbox, database: Database
) -> None:
    overdue = [
        await add_store(database, StoreStatus.PROVISIONING, provisioning_since=timedelta(hours=n))
        for n in (1, 2)
    ]
    on_time = await add_store(
        database, StoreStatus.PROVISIONING, provisioning_since=timedelta(seconds=5)
    )
    queued = await add_store(database, StoreStatus.QUEUED)

    assert await enforce_deadlines(outbox, DEADLINE) == 2
    assert await enforce_deadlines(outbox, DEADLINE) == 0

    assert [(await load(database, s)).status for s in overdue] == [StoreStatus.FAILED] * 2
    assert (await load(database, on_time)).status is StoreStatus.PROVISIONING
    assert (await load(database, queued)).status is StoreStatus.QUEUED
    rows = await event_rows(database)
    assert sorted(r.store_id for r in rows) == sorted(overdue)
    assert {r.type for r in rows} == {FAILED}


async def test_a_pass_reports_what_it_failed_and_relayed(
    outbox: Outbox, database: Database, nats_client: Client, cluster: SimulatedCluster
) -> None:
    store_id = await add_store(
        database, StoreStatus.PROVISIONING, provisioning_since=timedelta(minutes=5)
    )
    other = await add_store(database, StoreStatus.READY)
    await add_unpublished_event(database, other, utcnow() - timedelta(minutes=1))
    ready = await load(database, other)
    await cluster.ensure_namespace(
        ready.namespace, {MANAGED_BY[0]: MANAGED_BY[1], STORE_ID_LABEL: str(other)}
    )

    report = await reap_once(outbox, cluster, DEADLINE, GRACE)

    assert report.failed_by_deadline == 1
    assert report.events_relayed == 1
    subjects = sorted(m.subject or "" for m in await stream_messages(nats_client))
    assert subjects == sorted([f"store.failed.{store_id}", f"store.delete_requested.{other}"])


# --- relay --------------------------------------------------------------------------------


async def test_the_relay_publishes_events_left_unpublished_in_the_order_they_happened(
    outbox: Outbox, database: Database, nats_client: Client, cluster: SimulatedCluster
) -> None:
    stores = [await add_store(database, StoreStatus.DELETING) for _ in range(3)]
    now = utcnow()
    # committed out of order: the relay follows event time, not insertion order
    ids = {
        store_id: await add_unpublished_event(database, store_id, now - timedelta(minutes=m))
        for store_id, m in zip(stores, (1, 3, 2), strict=True)
    }

    report = await reap_once(outbox, cluster, DEADLINE, GRACE)

    assert report.events_relayed == 3
    assert report.failed_by_deadline == 0
    messages = await stream_messages(nats_client)
    oldest_first = [stores[1], stores[2], stores[0]]
    assert [m.subject for m in messages] == [f"store.delete_requested.{s}" for s in oldest_first]
    assert [(m.headers or {})["Nats-Msg-Id"] for m in messages] == [
        str(ids[s]) for s in oldest_first
    ]
    rows = {r.id: r for r in await event_rows(database)}
    for message, store_id in zip(messages, oldest_first, strict=True):
        row = rows[ids[store_id]]
        assert row.published_at is not None
        assert row.stream_sequence == message.seq
        assert envelope(message) == row.envelope
    assert (await reap_once(outbox, cluster, DEADLINE, GRACE)).events_relayed == 0


async def test_the_relay_leaves_events_younger_than_its_grace_to_their_writer(
    outbox: Outbox, database: Database, nats_client: Client, cluster: SimulatedCluster
) -> None:
    store_id = await add_store(database, StoreStatus.DELETING)
    await add_unpublished_event(database, store_id, utcnow() - RELAY_GRACE / 2)

    assert (await reap_once(outbox, cluster, DEADLINE, GRACE)).events_relayed == 0

    [row] = await event_rows(database)
    assert row.published_at is None
    assert await stream_messages(nats_client) == []


async def test_an_event_relayed_twice_is_stored_once(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    """Two reaper replicas, or a relay racing the writer: the Nats-Msg-Id de-duplicates."""
    store_id = await add_store(database, StoreStatus.DELETING)
    await add_unpublished_event(database, store_id, utcnow() - timedelta(minutes=1))
    async with database.session() as session:
        [row] = list(await session.exec(select(StoreEvent)))
    event = CloudEvent.model_validate(row.envelope)

    assert await outbox.deliver([event], []) == 1
    assert await outbox.deliver([event], []) == 1

    assert len(await stream_messages(nats_client)) == 1


# --- expiry ---------------------------------------------------------------------------------


async def test_idempotency_keys_older_than_a_day_and_refilled_rate_limits_are_forgotten(
    outbox: Outbox, database: Database
) -> None:
    store_id = await add_store(database, StoreStatus.READY)
    now = utcnow()
    async with database.session() as session:
        for key, age in (("old", timedelta(hours=25)), ("fresh", timedelta(hours=23))):
            session.add(
                IdempotencyKey(
                    tenant_id=DEFAULT_TENANT_ID,
                    key=key,
                    request_sha256="0" * 64,
                    store_id=store_id,
                    created_at=now - age,
                )
            )
        # A counter whose next arrival is past has its whole allowance: nothing to keep.
        for counter, ahead in (
            ("refilled", -timedelta(seconds=1)),
            ("current", timedelta(seconds=20)),
        ):
            session.add(RateLimit(counter=counter, tat=now + ahead))
        await session.commit()

    assert await forget_expired(outbox) == 2

    async with database.session() as session:
        keys = {k.key for k in await session.exec(select(IdempotencyKey))}
        limits = {w.counter for w in await session.exec(select(RateLimit))}
    assert (keys, limits) == ({"fresh"}, {"current"})
    assert await forget_expired(outbox) == 0


async def test_spent_event_tickets_are_forgotten_once_expired(
    outbox: Outbox, database: Database
) -> None:
    now = utcnow()
    async with database.session() as session:
        for ticket, expires in (
            ("expired", now - timedelta(seconds=1)),
            ("live", now + timedelta(seconds=30)),
        ):
            session.add(SpentTicket(id=ticket, expires_at=expires))
        await session.commit()

    assert await forget_expired(outbox) == 1

    async with database.session() as session:
        assert [t.id for t in await session.exec(select(SpentTicket))] == ["live"]
