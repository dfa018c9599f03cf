"""Keeping stores' backups: the schedule starts each ready store's backup once its newest is
old enough (within a platform-wide limit, the longest waiting first, a failed one tried again
after an hour), and the retention rules delete the backups no rule keeps. The rules alone are
a pure function; the passes run on real PostgreSQL and NATS."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlmodel import col, select, update

from tests.reaper.test_reaping import event_rows, load
from tests.reaper.test_replay_and_leadership import GRACE, consume_everything, orders, set_store
from tests.support import create_copy, create_store
from woostore_reaper.backups import (
    BackupKeeper,
    BackupPolicy,
    Retention,
    expire_backups,
    start_due_backups,
)
from woostore_reaper.reaping import delete_as_asked, replay_lost_work
from woostore_shared import lifecycle
from woostore_shared.db import Database
from woostore_shared.models import (
    BackupDeletion,
    BackupStatus,
    BackupTrigger,
    Store,
    StoreBackup,
    StoreStatus,
    WorkOrderRecord,
    utcnow,
)
from woostore_shared.outbox import Outbox
from woostore_shared.transitions import actions_of
from woostore_shared.unit_of_work import UnitOfWork
from woostore_shared.work import MAX_REPLAYS, Lane

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
POLICY = BackupPolicy(every=DAY, at_once=2, retention=Retention(last=3, daily=7, weekly=4))


def at(day: int, hour: int = 12) -> datetime:
    """A time in December 2026 (the 7th and the 14th are Mondays)."""
    return datetime(2026, 12, day, hour, tzinfo=UTC)


def kept_days(retention: Retention, backups: dict[str, datetime]) -> list[str]:
    ids = {name: uuid.uuid4() for name in backups}
    kept = retention.kept([(ids[name], taken) for name, taken in backups.items()])
    return sorted(name for name, backup_id in ids.items() if backup_id in kept)


def test_retention_keeps_the_newest_and_the_newest_of_each_day_and_week() -> None:
    # Four a day on the 14th (Monday of week 51), one a day before that back to the 1st.
    backups = {f"14-{hour:02}": at(14, hour) for hour in (3, 9, 15, 21)}
    backups |= {f"{day:02}": at(day) for day in range(1, 14)}

    assert kept_days(Retention(last=2, daily=0, weekly=0), backups) == ["14-15", "14-21"]
    # Days that have backups, newest first: the 14th (its newest), the 13th, the 12th.
    assert kept_days(Retention(last=0, daily=3, weekly=0), backups) == ["12", "13", "14-21"]
    # Weeks (from Monday): the 14th's, the 7th to 13th (the 13th), the 1st to 6th (the 6th).
    assert kept_days(Retention(last=0, daily=0, weekly=3), backups) == ["06", "13", "14-21"]
    assert kept_days(Retention(last=0, daily=0, weekly=9), backups) == ["06", "13", "14-21"]
    # The rules add up.
    assert kept_days(Retention(last=5, daily=0, weekly=2), backups) == [
        "13", "14-03", "14-09", "14-15", "14-21",
    ]  # fmt: skip


def test_retention_counts_days_with_backups_and_all_zero_keeps_everything() -> None:
    # Backups stopped for a month: the old ones are still the newest days there are.
    backups = {"01": at(1), "02": at(2), "03": at(3)}
    assert kept_days(Retention(last=0, daily=2, weekly=0), backups) == ["02", "03"]
    assert kept_days(Retention(last=0, daily=0, weekly=0), backups) == ["01", "02", "03"]
    assert kept_days(Retention(last=5, daily=0, weekly=0), {}) == []


async def ready_store(outbox: Outbox, database: Database, ready_for: timedelta) -> Store:
    """An owner's store, ready since ``ready_for`` ago."""
    store = await create_store(outbox)
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.start(uow, store.id)
        url = f"http://{store.slug}.example.test"
        await lifecycle.make_ready(uow, store.id, storefront_url=url, admin_url=url)
    async with UnitOfWork.begin(outbox) as uow:
        await uow.session.exec(
            update(Store).where(col(Store.id) == store.id).values(ready_at=utcnow() - ready_for)
        )
    return await load(database, store.id)


async def add_backup(
    outbox: Outbox,
    store: Store,
    taken_ago: timedelta,
    status: BackupStatus,
    trigger: BackupTrigger = BackupTrigger.SCHEDULED,
) -> uuid.UUID:
    """A backup of the store as the change lane leaves one, ``taken_ago``."""
    backup = StoreBackup(
        store_id=store.id,
        trigger=trigger,
        status=status,
        requested_at=utcnow() - taken_ago,
        finished_at=utcnow() - taken_ago,
    )
    async with UnitOfWork.begin(outbox) as uow:
        uow.session.add(backup)
    return backup.id


async def backing_up(database: Database) -> set[uuid.UUID]:
    async with database.session() as session:
        rows = await session.exec(
            select(StoreBackup.store_id)
            .where(col(StoreBackup.status) == BackupStatus.RUNNING)
            .where(col(StoreBackup.trigger) == BackupTrigger.SCHEDULED)
        )
        return set(rows)


async def test_a_ready_store_is_backed_up_once_its_newest_backup_is_a_day_old(
    outbox: Outbox, database: Database
) -> None:
    never = await ready_store(outbox, database, ready_for=DAY + HOUR)
    new = await ready_store(outbox, database, ready_for=HOUR)  # not a day yet
    recent = await ready_store(outbox, database, ready_for=3 * DAY)
    await add_backup(outbox, recent, 2 * HOUR, BackupStatus.COMPLETE)  # its owner asked
    old = await ready_store(outbox, database, ready_for=3 * DAY)
    await add_backup(outbox, old, DAY + HOUR, BackupStatus.COMPLETE)

    assert await start_due_backups(outbox, POLICY) == 2
    assert await backing_up(database) == {never.id, old.id}
    for store in (never, old):
        assert (await load(database, store.id)).status is StoreStatus.BACKING_UP
    for store in (new, recent):
        assert (await load(database, store.id)).status is StoreStatus.READY
    started = [e for e in await event_rows(database) if e.type.endswith(".backup_started")]
    assert {e.envelope["data"]["trigger"] for e in started} == {"scheduled"}
    assert await start_due_backups(outbox, replace(POLICY, every=None)) == 0


async def test_scheduled_backups_stay_within_the_limit_the_longest_waiting_first(
    outbox: Outbox, database: Database
) -> None:
    waiting = {}
    for days in (2, 4, 3):
        waiting[days] = await ready_store(outbox, database, ready_for=days * DAY)

    assert await start_due_backups(outbox, POLICY) == 2
    assert await backing_up(database) == {waiting[4].id, waiting[3].id}
    assert await start_due_backups(outbox, POLICY) == 0  # both under way: no room
    assert await start_due_backups(outbox, replace(POLICY, at_once=3)) == 1


async def test_a_failed_backup_is_tried_again_after_an_hour_a_failed_safety_backup_at_once(
    outbox: Outbox, database: Database
) -> None:
    lately = await ready_store(outbox, database, ready_for=3 * DAY)
    await add_backup(outbox, lately, 2 * DAY, BackupStatus.COMPLETE)
    await add_backup(outbox, lately, HOUR / 2, BackupStatus.FAILED)
    earlier = await ready_store(outbox, database, ready_for=3 * DAY)
    await add_backup(outbox, earlier, 2 * DAY, BackupStatus.COMPLETE)
    await add_backup(outbox, earlier, 2 * HOUR, BackupStatus.FAILED)

    changed = await ready_store(outbox, database, ready_for=3 * DAY)
    await add_backup(outbox, changed, 2 * DAY, BackupStatus.COMPLETE)
    await add_backup(  # a restore's, refused before it began: not a backup that failed
        outbox, changed, HOUR / 2, BackupStatus.FAILED, BackupTrigger.BEFORE_RESTORE
    )

    assert await start_due_backups(outbox, POLICY) == 2
    assert await backing_up(database) == {earlier.id, changed.id}


async def test_backups_no_rule_keeps_are_deleted_and_their_removal_sent_until_done(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    store = await ready_store(outbox, database, ready_for=10 * DAY)
    taken = {days: await add_backup(outbox, store, days * DAY, BackupStatus.COMPLETE)
             for days in range(1, 6)}  # fmt: skip
    failed = await add_backup(outbox, store, 6 * DAY, BackupStatus.FAILED)
    owners = await add_backup(
        outbox, store, 7 * DAY, BackupStatus.COMPLETE, BackupTrigger.REQUESTED
    )
    other = await ready_store(outbox, database, ready_for=10 * DAY)
    others = [await add_backup(outbox, other, d * DAY, BackupStatus.COMPLETE) for d in (1, 2)]

    retention = Retention(last=2, daily=0, weekly=0)
    assert await expire_backups(outbox, retention) == 3
    assert await expire_backups(outbox, retention) == 0  # deleting already

    async with database.session() as session:
        rows = {b.id: b.status for b in await session.exec(select(StoreBackup))}
    assert [rows[taken[days]] for days in range(1, 6)] == [
        BackupStatus.COMPLETE, BackupStatus.COMPLETE,
        BackupStatus.DELETING, BackupStatus.DELETING, BackupStatus.DELETING,
    ]  # fmt: skip
    assert rows[failed] is BackupStatus.FAILED  # not theirs to judge
    assert rows[owners] is BackupStatus.COMPLETE  # its owner's: kept until they delete it
    assert [rows[b] for b in others] == [BackupStatus.COMPLETE] * 2
    deleted = [e for e in await event_rows(database) if e.type.endswith(".backup_deleted")]
    assert sorted(e.envelope["data"]["backup_id"] for e in deleted) == sorted(
        str(taken[days]) for days in (3, 4, 5)
    )
    assert {e.envelope["data"]["reason"] for e in deleted} == {BackupDeletion.RETENTION.value}
    assert (await load(database, store.id)).status is StoreStatus.READY

    # The removal's work order is consumed by a provisioner that died: the replay sends it
    # again, for as long as it takes (never given up as a dead letter).
    assert await replay_lost_work(outbox, GRACE) == (0, 0)  # still in the stream
    await consume_everything(nats_client, Lane.CHANGE)
    await set_store(database, store.id, replays=MAX_REPLAYS + 1)
    assert await replay_lost_work(outbox, GRACE) == (1, 0)
    assert (await orders(nats_client, store.id))[-1] == f"work.change.{store.id}"


async def test_a_backup_a_new_store_is_being_made_from_is_kept_until_it_is_made(
    outbox: Outbox, database: Database
) -> None:
    """The copy reads the backup until it is made: retention deleting it failed the copy."""
    store = await ready_store(outbox, database, ready_for=10 * DAY)
    oldest = await add_backup(outbox, store, 3 * DAY, BackupStatus.COMPLETE)
    await add_backup(outbox, store, DAY, BackupStatus.COMPLETE)
    copy = await create_copy(outbox, oldest)
    retention = Retention(last=1, daily=0, weekly=0)

    assert await expire_backups(outbox, retention) == 0

    await set_store(database, copy.id, status=StoreStatus.READY)
    assert await expire_backups(outbox, retention) == 1


async def test_a_copy_holds_up_the_deletion_of_its_own_source_only(
    outbox: Outbox, database: Database
) -> None:
    """The stores free to go are found in one statement: the copy is looked for per store."""
    source = await ready_store(outbox, database, ready_for=DAY)
    await create_copy(outbox, await add_backup(outbox, source, DAY, BackupStatus.COMPLETE))
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.request_deletion(uow, source.id)
    other = await ready_store(outbox, database, ready_for=DAY)
    await set_store(database, other.id, delete_requested_at=datetime.now(UTC))  # left unstarted

    assert await delete_as_asked(outbox) == 1
    assert (await load(database, other.id)).status is StoreStatus.DELETING
    assert (await load(database, source.id)).status is StoreStatus.READY


async def test_a_store_deleted_while_a_copy_reads_its_backup_is_deleted_once_the_copy_is_made(
    outbox: Outbox, database: Database, spans: InMemorySpanExporter
) -> None:
    """Its DELETE was a 409 while the copy was made, though its actions offered ``delete``:
    the deletion is recorded, and the reaper starts it once the copy reads no more, in a
    trace of its own (and none for each pass it waits)."""
    store = await ready_store(outbox, database, ready_for=DAY)
    backup = await add_backup(outbox, store, DAY, BackupStatus.COMPLETE)
    copy = await create_copy(outbox, backup)
    async with UnitOfWork.begin(outbox) as uow:
        asked, requested = await lifecycle.request_deletion(uow, store.id)
    assert (asked.status, requested, actions_of(asked)) == (StoreStatus.READY, True, [])
    async with UnitOfWork.begin(outbox) as uow:  # nothing else of it, until it goes
        with pytest.raises(lifecycle.InvalidTransition) as refused:
            await lifecycle.start_backup(uow, store.id, BackupTrigger.REQUESTED)
    assert refused.value.deleted_next

    assert await delete_as_asked(outbox) == 0
    assert (await load(database, store.id)).status is StoreStatus.READY
    assert not spans.get_finished_spans()

    await set_store(database, copy.id, status=StoreStatus.READY)  # made: it reads no more
    assert await delete_as_asked(outbox) == 1
    assert (await load(database, store.id)).status is StoreStatus.DELETING
    [started] = spans.get_finished_spans()
    assert (started.name, started.parent) == ("deletion asked earlier", None)
    async with database.session() as session:
        [removal] = await session.exec(
            select(WorkOrderRecord.traceparent)
            .where(WorkOrderRecord.store_id == store.id)
            .where(WorkOrderRecord.lane == Lane.REMOVAL.value)
        )
    assert removal is not None
    assert removal.split("-")[1] == f"{started.context.trace_id:032x}"


async def test_a_failed_stores_deleted_backups_are_sent_for_removal_once_it_is_cleaned_up(
    outbox: Outbox, database: Database, nats_client: Client
) -> None:
    """Its clean-up first (the removal lane), then its deleted backups' data (the change
    lane, as for a ready store): it was never sent, and stayed in the repository."""
    store = await ready_store(outbox, database, ready_for=DAY)
    backup = await add_backup(outbox, store, HOUR, BackupStatus.COMPLETE)
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.fail(uow, store.id, "its namespace vanished", lost=True)
        await lifecycle.delete_backup(uow, store.id, backup, BackupDeletion.REQUESTED)
    await consume_everything(nats_client, Lane.REMOVAL)
    await consume_everything(nats_client, Lane.CHANGE)
    await set_store(database, store.id)

    assert await replay_lost_work(outbox, GRACE) == (1, 0)
    assert (await orders(nats_client, store.id))[-1] == f"work.removal.{store.id}"

    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.mark_cleaned_up(uow, store.id)
    await consume_everything(nats_client, Lane.REMOVAL)
    await set_store(database, store.id)
    assert await replay_lost_work(outbox, GRACE) == (1, 0)
    assert (await orders(nats_client, store.id))[-1] == f"work.change.{store.id}"


async def test_the_reapers_pass_looks_for_due_backups_once_a_minute(
    outbox: Outbox, database: Database
) -> None:
    keeper = BackupKeeper(outbox, replace(POLICY, at_once=1))
    first = await ready_store(outbox, database, ready_for=2 * DAY)
    second = await ready_store(outbox, database, ready_for=3 * DAY)

    assert (await keeper.keep()).scheduled == 1
    assert await backing_up(database) == {second.id}  # the store waiting longest goes first
    async with UnitOfWork.begin(outbox) as uow:  # its backup ends: room again
        await lifecycle.end_backup(uow, second.id, "storage unreachable")
    assert (await keeper.keep()).scheduled == 0  # a pass later: not a minute yet
    assert (await load(database, first.id)).status is StoreStatus.READY
