"""Lost work is sent again, work that keeps dying becomes a failed store, and only one
reaper acts. Real PostgreSQL and nats-server; stores are made as the API makes them."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from nats.aio.client import Client
from sqlalchemy import text
from sqlmodel import col, select, update

from tests.reaper.test_reaping import load
from tests.support import create_store, envelope, stream_messages
from woostore_reaper.leadership import (
    LOCK_KEY,
    DatabaseReadiness,
    InUseTooLong,
    LeaderLock,
    LostTheLock,
    reaper_database,
)
from woostore_reaper.reaping import delete_as_asked, replay_lost_work
from woostore_shared import lifecycle
from woostore_shared.db import Database
from woostore_shared.models import (
    BackupStatus,
    Store,
    StoreBackup,
    StoreChange,
    StoreStatus,
    WorkOrderRecord,
    utcnow,
)
from woostore_shared.outbox import Outbox
from woostore_shared.settings import Settings
from woostore_shared.topology import STREAM_NAME, WORK_STREAM, consumer_of
from woostore_shared.unit_of_work import UnitOfWork
from woostore_shared.work import MAX_REPLAYS, Lane

GRACE = timedelta(seconds=60)


async def set_store(database: Database, store_id: uuid.UUID, **values: object) -> None:
    """Age the store past the grace (and set anything else the case needs)."""
    values.setdefault("updated_at", utcnow() - 2 * GRACE)
    async with database.session() as session:
        await session.exec(update(Store).where(col(Store.id) == store_id).values(**values))
        await session.commit()


async def consume_everything(nats_client: Client, lane: Lane = Lane.PROVISION) -> None:
    """What a worker that acked and then died leaves behind: the consumer moved past it."""
    js = nats_client.jetstream()
    subscription = await js.pull_subscribe_bind(consumer_of(lane), WORK_STREAM)
    while True:  # a fetch answers with what is there at first, maybe fewer than are waiting
        try:
            fetched = await subscription.fetch(10, timeout=1)
        except TimeoutError:
            return  # none left
        for message in fetched:
            await message.ack_sync()


async def orders(nats_client: Client, store_id: uuid.UUID) -> list[str]:
    """The subjects of the store's work orders, in stream order."""
    return [
        m.subject or "" for m in await stream_messages(nats_client, store_id, stream=WORK_STREAM)
    ]


async def events(nats_client: Client, store_id: uuid.UUID) -> list[str]:
    """The types of the store's events, in stream order."""
    return [envelope(m)["type"] for m in await stream_messages(nats_client, store_id)]


async def test_work_still_waiting_in_the_stream_is_not_replayed(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = (await create_store(outbox)).id
    await set_store(database, store_id)

    assert await replay_lost_work(outbox, GRACE) == (0, 0)
    assert await orders(nats_client, store_id) == [f"work.provision.{store_id}"]


async def test_work_consumed_without_finishing_the_store_is_sent_again(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = (await create_store(outbox)).id
    await consume_everything(nats_client)
    await set_store(database, store_id, status=StoreStatus.PROVISIONING)
    events_before = await events(nats_client, store_id)

    assert await replay_lost_work(outbox, GRACE) == (1, 0)

    assert await orders(nats_client, store_id) == [f"work.provision.{store_id}"] * 2
    assert (await load(database, store_id)).replays == 1
    # Nobody following the store events sees anything repeated.
    assert await events(nats_client, store_id) == events_before
    # A worker fetching now gets it: it is new work for the consumer.
    js = nats_client.jetstream()
    subscription = await js.pull_subscribe_bind(consumer_of(Lane.PROVISION), WORK_STREAM)
    [message] = await subscription.fetch(1, timeout=2)
    assert message.subject == f"work.provision.{store_id}"


async def test_work_lost_with_the_stream_is_sent_again(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = (await create_store(outbox)).id
    await nats_client.jetstream().purge_stream(WORK_STREAM)  # what a crash without fsync does
    await set_store(database, store_id)

    assert await replay_lost_work(outbox, GRACE) == (1, 0)
    assert await orders(nats_client, store_id) == [f"work.provision.{store_id}"]


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def in_a_trace(database: Database, store_id: uuid.UUID) -> None:
    """The store's work orders carry the trace of the request that asked for them."""
    async with database.session() as session:
        await session.exec(
            update(WorkOrderRecord)
            .where(col(WorkOrderRecord.store_id) == store_id)
            .values(traceparent=f"00-{TRACE_ID}-00f067aa0ba902b7-01")
        )
        await session.commit()


async def test_work_sent_again_stays_in_the_trace_of_the_work_lost(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    """It began a trace of its own: the store's making, after a replay, was in no trace of
    the request's."""
    store_id = (await create_store(outbox)).id
    await in_a_trace(database, store_id)
    await nats_client.jetstream().purge_stream(WORK_STREAM)
    await set_store(database, store_id)

    assert await replay_lost_work(outbox, GRACE) == (1, 0)

    async with database.session() as session:
        again = (
            await session.exec(
                select(WorkOrderRecord)
                .where(col(WorkOrderRecord.store_id) == store_id)
                .order_by(col(WorkOrderRecord.time).desc())
            )
        ).first()
    assert again is not None
    assert again.traceparent is not None
    assert again.traceparent.split("-")[1] == TRACE_ID
    [message] = await stream_messages(nats_client, store_id, stream=WORK_STREAM)
    assert json.loads(message.data or b"{}")["traceparent"].split("-")[1] == TRACE_ID  # as sent


async def test_a_store_whose_worker_holds_a_live_lease_is_left_alone(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = (await create_store(outbox)).id
    await consume_everything(nats_client)
    await set_store(
        database,
        store_id,
        status=StoreStatus.PROVISIONING,
        lease_owner="busy-host:1:x",
        lease_expires_at=utcnow() + timedelta(seconds=30),
    )

    assert await replay_lost_work(outbox, GRACE) == (0, 0)


async def test_a_store_that_moved_within_the_grace_is_left_alone(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = (await create_store(outbox)).id
    await consume_everything(nats_client)
    await set_store(database, store_id, updated_at=utcnow())

    assert await replay_lost_work(outbox, GRACE) == (0, 0)


async def test_work_lost_too_often_fails_the_store_and_asks_for_its_clean_up(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = (await create_store(outbox)).id
    await consume_everything(nats_client)
    await set_store(database, store_id, status=StoreStatus.PROVISIONING, replays=MAX_REPLAYS)

    assert await replay_lost_work(outbox, GRACE) == (0, 1)

    failed = await load(database, store_id)
    assert failed.status is StoreStatus.FAILED
    assert failed.failure_reason is not None
    assert "kept crashing its worker" in failed.failure_reason
    # The failure asks the removal lane to clean up; the provisioning is not sent again.
    assert await orders(nats_client, store_id) == [
        f"work.provision.{store_id}",
        f"work.removal.{store_id}",
    ]


async def test_a_lost_clean_up_is_sent_again_until_it_is_done(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = (await create_store(outbox)).id
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.fail(uow, store_id, "its rollout never came up")
    await nats_client.jetstream().purge_stream(WORK_STREAM)
    await set_store(database, store_id, replays=10 * MAX_REPLAYS)

    assert await replay_lost_work(outbox, GRACE) == (1, 0)
    assert await orders(nats_client, store_id) == [f"work.removal.{store_id}"]

    await nats_client.jetstream().purge_stream(WORK_STREAM)
    await set_store(database, store_id, cleaned_up_at=utcnow())
    assert await replay_lost_work(outbox, GRACE) == (0, 0)  # done: nothing left to send


async def test_a_lost_deletion_is_replayed_however_often_it_was_lost(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = (await create_store(outbox)).id
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.request_deletion(uow, store_id)
    await nats_client.jetstream().purge_stream(WORK_STREAM)
    await set_store(database, store_id, replays=10 * MAX_REPLAYS)

    assert await replay_lost_work(outbox, GRACE) == (1, 0)
    assert (await load(database, store_id)).status is StoreStatus.DELETING
    assert await orders(nats_client, store_id) == [f"work.removal.{store_id}"]


async def updating_store(outbox: Outbox, nats_client: Client) -> uuid.UUID:
    """A ready store whose upgrade was requested, with the streams lost since."""
    store_id = (await create_store(outbox)).id
    await set_store(outbox.db, store_id, status=StoreStatus.READY)
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.start_change(uow, store_id, "upgrade")
    for stream in (STREAM_NAME, WORK_STREAM):
        await nats_client.jetstream().purge_stream(stream)
    return store_id


async def test_a_lost_upgrade_is_handed_to_the_change_lane_again(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = await updating_store(outbox, nats_client)
    await set_store(database, store_id)

    assert await replay_lost_work(outbox, GRACE) == (1, 0)

    assert await orders(nats_client, store_id) == [f"work.change.{store_id}"]
    subscription = await nats_client.jetstream().pull_subscribe_bind(
        consumer_of(Lane.CHANGE), WORK_STREAM
    )
    [message] = await subscription.fetch(1, timeout=2)
    assert message.subject == f"work.change.{store_id}"


async def test_an_upgrade_lost_too_often_ends_failed_and_the_store_stays_ready(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = await updating_store(outbox, nats_client)
    await set_store(database, store_id, replays=MAX_REPLAYS)

    assert await replay_lost_work(outbox, GRACE) == (0, 1)

    store = await load(database, store_id)
    assert (store.status, store.change, store.failure_reason) == (StoreStatus.READY, None, None)
    async with database.session() as session:
        [change] = await session.exec(
            select(StoreChange).where(col(StoreChange.store_id) == store_id)
        )
    assert (change.kind, change.result) == ("upgrade", "failed")
    assert change.reason is not None
    assert "kept crashing its worker" in change.reason
    # The reaper reads no backups: the one taken first may have been stored, so it is kept
    # listed, failed, not hidden as one never begun is (a diff review).
    async with database.session() as session:
        [backup] = await session.exec(
            select(StoreBackup).where(col(StoreBackup.store_id) == store_id)
        )
    assert (backup.status, backup.reason) == (
        BackupStatus.FAILED, "the change ended before the store was backed up",
    )  # fmt: skip
    [message] = await stream_messages(nats_client)
    assert envelope(message)["type"] == "io.woostore.store.change_failed"
    assert await orders(nats_client, store_id) == []  # no clean-up asked for: it is live


async def test_an_abandoned_change_ends_in_the_trace_of_its_work(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store_id = await updating_store(outbox, nats_client)
    await in_a_trace(database, store_id)
    await set_store(database, store_id, replays=MAX_REPLAYS)

    assert await replay_lost_work(outbox, GRACE) == (0, 1)

    [message] = await stream_messages(nats_client)
    assert envelope(message)["type"] == "io.woostore.store.change_failed"
    assert envelope(message)["traceparent"].split("-")[1] == TRACE_ID


async def test_a_deletion_left_unstarted_as_the_work_ended_is_started(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    """A provisioner of the release before ends the upgrade the way it knew: the store made
    ready, the deletion its owner asked for meanwhile recorded and never started."""
    store_id = await updating_store(outbox, nats_client)
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.request_deletion(uow, store_id)
    await set_store(database, store_id, status=StoreStatus.READY, updated_at=utcnow())

    assert await delete_as_asked(outbox) == 1  # no grace: the row is locked as it starts
    assert (await load(database, store_id)).status is StoreStatus.DELETING
    assert await orders(nats_client, store_id) == [f"work.removal.{store_id}"]
    assert (await events(nats_client, store_id))[-2:] == [
        "io.woostore.store.delete_queued",
        "io.woostore.store.delete_requested",
    ]
    assert await delete_as_asked(outbox) == 0  # started once


async def test_a_ready_store_no_one_asked_to_delete_is_left_alone(
    outbox: Outbox, database: Database
) -> None:
    store_id = (await create_store(outbox)).id
    await set_store(database, store_id, status=StoreStatus.READY)

    assert await delete_as_asked(outbox) == 0
    assert (await load(database, store_id)).status is StoreStatus.READY


@pytest.fixture
async def two_reapers(
    database: Database, settings: Settings
) -> AsyncIterator[tuple[LeaderLock, LeaderLock]]:
    """Two reapers' locks, each on a database of its own."""
    second_db = reaper_database(settings)
    first, second = LeaderLock(database), LeaderLock(second_db)
    yield first, second
    await first.release()
    await second.release()
    await second_db.dispose()


async def test_only_one_reaper_leads_and_another_takes_over_when_it_goes(
    two_reapers: tuple[LeaderLock, LeaderLock],
) -> None:
    first, second = two_reapers
    assert await first.held()
    assert not await second.held()
    assert await first.held()  # keeps it, and holds it once: one release lets it go

    await first.release()  # the leader stops

    assert await second.held()
    assert not await first.held()


async def lock_holder(url: str) -> int | None:
    """The server process holding the leader lock, if any: seen from a connection of its own."""
    observer = Database(url)
    try:
        async with observer.session() as session:
            connection = await session.connection()
            held = await connection.execute(
                text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = :key"),
                {"key": LOCK_KEY},
            )
            return held.scalar_one_or_none()
    finally:
        await observer.dispose()


async def terminate(db: Database, pid: int | None) -> None:
    """Ends the server process ``pid``, once it is gone: ``pg_terminate_backend`` alone only
    signals it, and the lock it held could still be held by the next statement (a CI run:
    the other reaper found it taken)."""
    async with db.session() as session:
        connection = await session.connection()
        ended = await connection.execute(
            text("SELECT pg_terminate_backend(:pid, 30000)"), {"pid": pid}
        )
        assert ended.scalar_one(), f"server process {pid} still there after 30 s"


async def a_statement_of_a_pass(db: Database) -> int:
    """What the session running it is (its server process)."""
    async with db.session() as session:
        connection = await session.connection()
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_leader_whose_connection_is_lost_goes_on_only_once_it_holds_the_lock_again(
    two_reapers: tuple[LeaderLock, LeaderLock], settings: Settings
) -> None:
    """The pool opens a new connection in place of one lost, and the lock went with the old
    one: a pass must not go on without it, beside the reaper that took it meanwhile."""
    first, second = two_reapers
    assert await first.held()
    lost = await lock_holder(settings.database_url)
    await terminate(second.db, lost)
    assert await second.held()  # the lock went with the session

    with pytest.raises(LostTheLock):  # the pass's next statement, on a new connection
        await a_statement_of_a_pass(first.db)
    assert not first.leading
    assert not await first.held()

    # Lost while no other reaper took it: taken again on the new connection, and the pass
    # goes on.
    await second.release()
    assert await first.held()
    lost = await lock_holder(settings.database_url)
    await terminate(second.db, lost)
    again = await a_statement_of_a_pass(first.db)
    assert again != lost
    assert await lock_holder(settings.database_url) == again
    assert first.leading
    assert not await second.held()


async def test_the_passes_run_on_the_session_holding_the_lock_outside_any_transaction(
    database: Database, settings: Settings
) -> None:
    """One server process for the reaper, not two. Its session is "idle" between passes, never
    "idle in transaction": a server with ``idle_in_transaction_session_timeout`` would cut it,
    and the lock with it. Nor does the idle limit the services' other sessions have
    (``CLOSED_WHEN_IDLE``) end it, however long the reaper's passes are apart."""
    lock = LeaderLock(database)
    try:
        assert await lock.held()
        assert await lock.held()  # a pass that keeps the lock
        async with database.session() as session:  # as a pass reads
            connection = await session.connection()
            passes = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            idle_limit = (await connection.execute(text("SHOW idle_session_timeout"))).scalar()
        holder = await lock_holder(settings.database_url)
        observer = Database(settings.database_url)
        try:
            async with observer.session() as session:
                connection = await session.connection()
                state = await connection.execute(
                    text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": holder}
                )
                others = await connection.execute(text("SHOW idle_session_timeout"))
                assert others.scalar_one() != "0"
        finally:
            await observer.dispose()
        assert holder == passes
        assert state.scalar_one() == "idle"
        assert idle_limit == "0"
    finally:
        await lock.release()


async def test_the_reaper_is_ready_while_a_pass_holds_its_connection_until_too_long(
    database: Database,
) -> None:
    """Its /readyz pinged the one connection behind the pass using it, and a statement of
    the pass longer than the check's 2 s made it say "database: TimeoutError" meanwhile (a
    diff review). In use, it works, unless in use too long; free, it is pinged."""
    readiness, impatient = DatabaseReadiness(database), DatabaseReadiness(database, longest=0)
    await impatient()  # free: pinged
    slow_pass_began = asyncio.Event()

    async def slow_pass() -> None:
        async with database.session() as session:
            connection = await session.connection()
            slow_pass_began.set()
            await connection.execute(text("SELECT pg_sleep(3)"))

    passing = asyncio.create_task(slow_pass())
    await slow_pass_began.wait()
    await asyncio.wait_for(readiness(), timeout=0.5)  # in use: at once, and ready
    with pytest.raises(InUseTooLong, match="in use for 0 s: a statement waits"):
        await asyncio.wait_for(impatient(), timeout=0.5)
    await passing
    await impatient()  # given back: pinged again
