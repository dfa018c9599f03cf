"""What the reaper repairs on each pass. Level-triggered: each pass compares what should be
with what is, so a pass missed (reaper down) is made up by the next one.

1. Deadlines: a store provisioning for too long is failed (its clean-up follows).
2. Relay: events and work orders their writer committed but could not publish are published.
3. Replay: every store with work to do (a non-terminal state, failed and not yet cleaned
   up, or ready with deleted backups still in its repository) must have a work order in
   flight. Where the last order is gone from the stream (a
   stream lost in a crash) or was consumed without finishing the store (deliveries exhausted
   by a crashing worker), and the store's lease has expired, a fresh order is sent. A store
   whose provisioning or change was lost too often is failed or its change ended instead: a
   dead letter. Removal, and removing deleted backups, are sent again for as long as it takes.
4. Deletions asked for: a ready or failed store whose deletion waited for a store being
   made from its backup is deleted once that store is made (or deleted). So is a ready one
   whose deletion was recorded while its work ran but not started as the work ended (a
   provisioner of an earlier release ended it, during a rolling upgrade of the platform).
5. Cluster: a namespace whose labels prove WooStore made it, but whose store is deleted,
   unknown, or failed and cleaned up, is removed; a ready store whose namespace vanished is
   failed with that reason.

Only the reaper holding the leader lock acts (see ``leadership.py``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from nats.js.errors import NotFoundError
from prometheus_client import Counter
from sqlmodel import col, delete, select
from sqlmodel.sql.expression import Select

from woostore_cluster import Cluster
from woostore_shared import lifecycle, tracing
from woostore_shared.lifecycle import (
    ACTIVE,
    InvalidTransition,
    StoreNotFound,
    idle_with_backups,
)
from woostore_shared.logging import bind_store, get_logger
from woostore_shared.models import (
    BackupStatus,
    IdempotencyKey,
    RateLimit,
    SpentTicket,
    Store,
    StoreBackup,
    StoreEvent,
    StoreStatus,
    WorkOrderRecord,
    utcnow,
)
from woostore_shared.outbox import Outbox
from woostore_shared.topology import WORK_STREAM, consumer_of
from woostore_shared.unit_of_work import UnitOfWork
from woostore_shared.work import MAX_REPLAYS, Lane, work_subject

log = get_logger(__name__)
RELAY_GRACE = timedelta(seconds=10)  # the writer publishes right after commit; give it time
IDEMPOTENCY_TTL = timedelta(hours=24)
WORK_ORDER_TTL = timedelta(days=7)  # as long as the stream WORK keeps them
DEADLINES_ENFORCED = Counter("woostore_deadlines_enforced_total", "Stores failed by a deadline")
EVENTS_RELAYED = Counter("woostore_events_relayed_total", "Events published by the relay")
WORK_REPLAYED = Counter("woostore_work_replayed_total", "Lost work published again", ["lane"])
ORPHANS_REMOVED = Counter("woostore_orphans_removed_total", "Namespaces removed as left behind")
ORPHAN_DELETE_TIMEOUT = 300.0
NAMESPACE_VANISHED = "its namespace was deleted outside WooStore"
DEAD_LETTERS = Counter("woostore_dead_letters_total", "Stores failed because work kept dying")
# A leader whose every pass fails (NATS or the cluster unreachable: without PostgreSQL it
# gives up the lock) still leads: only this shows that deadlines, relays and replays have
# stopped. Counted by the leader alone: a standby's passes, which do nothing, would halve
# the share of failed ones.
PASSES = Counter(
    "woostore_reaper_passes_total", "The leading reaper's passes, by how they ended", ["result"]
)
PASSES.labels("done")  # from 0, so that the first of each is an increase() to see
PASSES.labels("failed")
EVENTS_PRUNED = Counter("woostore_events_pruned_total", "Events deleted past their retention")
DELETIONS_STARTED = Counter(
    "woostore_deferred_deletions_started_total",
    "Deletions asked for earlier, while a copy read the store's backups, that the reaper started",
)
# Events deleted a pass at most: a pass stays short however many fall due at once (the first
# pass after retention is set on a platform that kept years of them).
EVENT_PRUNE_BATCH = 5000

_LANES = {
    StoreStatus.QUEUED: Lane.PROVISION,
    StoreStatus.PROVISIONING: Lane.PROVISION,
    StoreStatus.UPDATING: Lane.CHANGE,
    StoreStatus.BACKING_UP: Lane.CHANGE,
    StoreStatus.RESTORING: Lane.CHANGE,
    StoreStatus.DELETING: Lane.REMOVAL,
    StoreStatus.FAILED: Lane.REMOVAL,  # its clean-up, until it is done
    StoreStatus.READY: Lane.CHANGE,  # removing deleted backups' data, until it is done
}
# Work sent again at most MAX_REPLAYS times; the rest, for as long as it takes.
_GIVEN_UP_ON = frozenset(_LANES) - {StoreStatus.DELETING, StoreStatus.FAILED, StoreStatus.READY}


# A live store's work: given up, it ends failed and the store stays ready.
_LIVE_CHANGES = (StoreStatus.UPDATING, StoreStatus.BACKING_UP, StoreStatus.RESTORING)


def _lane(status: StoreStatus, claimed: bool, cleaned_up: bool) -> Lane:
    """The lane a store's work is on: a claimed store is made its owner's on its own."""
    if claimed and status in (StoreStatus.QUEUED, StoreStatus.PROVISIONING):
        return Lane.PERSONALISE
    if status is StoreStatus.FAILED and cleaned_up:
        return Lane.CHANGE  # removing deleted backups' data, as a ready store's
    return _LANES[status]


@dataclass(frozen=True)
class PassReport:
    failed_by_deadline: int
    replayed: int
    dead_letters: int
    deletions_started: int
    events_relayed: int
    orphans_removed: int
    namespaces_vanished: int
    records_expired: int
    events_pruned: int


async def _fail_unfinished(outbox: Outbox, store_id: uuid.UUID, reason: str) -> bool:
    """Fail a store that is still queued or provisioning; its clean-up follows on the
    removal lane (a provisioner still on it sees the store failed and stops). Both are
    in the trace the store's making is in, its latest work's: its end belongs to its story,
    and began a trace of its own."""
    trace = await _trace_of(outbox, store_id)
    with tracing.continued(trace, "reaper fail", store_id=str(store_id)):
        try:
            async with UnitOfWork.begin(outbox) as uow:
                store = await lifecycle.fail(uow, store_id, reason)
        except (InvalidTransition, StoreNotFound):
            return False  # finished meanwhile
        with bind_store(store_id, store.correlation_id):
            log.warning("store failed", reason=reason, step=store.step_name)
    return True


async def _trace_of(outbox: Outbox, store_id: uuid.UUID) -> dict[str, str | None]:
    """The trace the store's latest work order continued (the request's that asked for
    it): none once that is forgotten."""
    async with outbox.db.session() as session:
        found = await session.exec(
            select(WorkOrderRecord.traceparent, WorkOrderRecord.tracestate)
            .where(col(WorkOrderRecord.store_id) == store_id)
            .order_by(col(WorkOrderRecord.time).desc())
            .limit(1)
        )
        latest = found.first()
    return {} if latest is None else {"traceparent": latest[0], "tracestate": latest[1]}


async def enforce_deadlines(outbox: Outbox, deadline: timedelta) -> int:
    """Fail stores provisioning for longer than ``deadline``, saying why they waited if that
    is known. The provisioner watching the store sees it and stops the step under way; the
    clean-up removes what it made."""
    cutoff = utcnow() - deadline
    async with outbox.db.session() as session:
        overdue = list(
            await session.exec(
                select(Store.id, Store.waiting_cause)
                .where(col(Store.status) == StoreStatus.PROVISIONING)
                .where(col(Store.provisioning_started_at) < cutoff)
            )
        )
    reason = f"provisioning did not finish within {deadline.total_seconds():.0f} s"
    failed = 0
    for store_id, cause in overdue:
        failed += await _fail_unfinished(
            outbox, store_id, f"{reason}: {cause}" if cause else reason
        )
    DEADLINES_ENFORCED.inc(failed)
    return failed


async def _ack_floors(outbox: Outbox) -> dict[Lane, int]:
    """Each lane's consumer has consumed the stream up to here; read once a pass."""
    floors: dict[Lane, int] = {}
    for lane in Lane:
        info = await outbox.js.consumer_info(WORK_STREAM, consumer_of(lane))
        floors[lane] = info.ack_floor.stream_seq
    return floors


async def _work_in_flight(
    outbox: Outbox, store_id: uuid.UUID, lane: Lane, floors: dict[Lane, int]
) -> bool:
    """Whether the store's last work order on ``lane`` is in the stream and not yet consumed."""
    try:
        message = await outbox.js.get_last_msg(WORK_STREAM, work_subject(lane, store_id))
    except NotFoundError:
        return False
    return message.seq is not None and message.seq > floors[lane]


async def _send_again(outbox: Outbox, store_id: uuid.UUID, lane: Lane) -> None:
    """A fresh work order for a store whose last one was lost, counted against its replays,
    in the lost one's trace: the work it asks for is the same (it began a trace of its own,
    so the work done after a replay was not in the request's)."""
    trace = await _trace_of(outbox, store_id)
    with tracing.continued(trace, "reaper send again", store_id=str(store_id), lane=lane.value):
        async with UnitOfWork.begin(outbox) as uow:
            store = await uow.session.get(Store, store_id, with_for_update=True)
            assert store is not None
            store.replays += 1
            uow.dispatch(store, lane)
    WORK_REPLAYED.labels(lane.value).inc()


async def delete_as_asked(outbox: Outbox) -> int:
    """Start the deletions asked for of ready or failed stores that no store being made from
    their backups holds up any more; returns how many started. No grace: the store's row is
    locked and the copies looked for again as each starts. (A deletion that waited for work
    starts as the work ends, in its transaction; one left waiting otherwise was left by a
    provisioner of an earlier release.)"""
    async with outbox.db.session() as session:
        # Copies looked for first, so that a store waiting for one starts no trace each pass.
        waiting = select(Store.id).where(lifecycle.deletion_no_longer_held_up())
        free = list(await session.exec(waiting))
    started = 0
    for store_id in free:
        with bind_store(store_id):
            try:
                # As its owner's DELETE again, and the root of the deletion's trace as that
                # DELETE would have been.
                with tracing.tracer().start_as_current_span("deletion asked earlier"):
                    async with UnitOfWork.begin(outbox) as uow:
                        _, started_now = await lifecycle.request_deletion(uow, store_id)
            except (InvalidTransition, StoreNotFound):
                continue  # moved on meanwhile
            if started_now:  # else a copy began meanwhile: it waits again
                log.info("deletion asked for earlier: starting it")
                started += 1
    DELETIONS_STARTED.inc(started)
    return started


async def _end_lost_change(
    outbox: Outbox, store_id: uuid.UUID, status: StoreStatus, reason: str
) -> bool:
    """A live store's upgrade, rollback, backup or restore given up: it ends failed, the store
    ready. (The reaper reads no backups: the backup a change or a restore took first is
    recorded failed, even if its worker stored it before it kept dying.) Its end is in the
    trace of the change's work, as a store failed while being made is."""
    trace = await _trace_of(outbox, store_id)
    with tracing.continued(trace, "reaper abandon change", store_id=str(store_id)):
        try:
            async with UnitOfWork.begin(outbox) as uow:
                if status is StoreStatus.BACKING_UP:
                    await lifecycle.end_backup(uow, store_id, reason)
                elif status is StoreStatus.RESTORING:
                    await lifecycle.end_restore(uow, store_id, reason, safety=None)
                else:
                    await lifecycle.end_change(uow, store_id, reason, backup=None)
        except (InvalidTransition, StoreNotFound):
            return False  # finished meanwhile
    log.warning("change abandoned", reason=reason)
    return True


async def replay_lost_work(outbox: Outbox, grace: timedelta) -> tuple[int, int]:
    """Returns (stores whose work was published again, stores failed as dead letters)."""
    now = utcnow()
    # A store no work uses with deleted backups whose data is still in its repository has
    # work too.
    deleting = select(StoreBackup.store_id).where(col(StoreBackup.status) == BackupStatus.DELETING)
    async with outbox.db.session() as session:
        idle = list(
            await session.exec(
                # select() is typed for four columns at most; the class takes any number.
                Select[uuid.UUID, StoreStatus, int, datetime | None, datetime | None](
                    col(Store.id),
                    col(Store.status),
                    col(Store.replays),
                    col(Store.claimed_at),
                    col(Store.cleaned_up_at),
                )
                .where(
                    col(Store.status).in_(ACTIVE)
                    | (
                        (col(Store.status) == StoreStatus.FAILED)
                        & col(Store.cleaned_up_at).is_(None)
                    )
                    | (idle_with_backups() & col(Store.id).in_(deleting))
                )
                .where(col(Store.updated_at) < now - grace)
                .where(col(Store.lease_expires_at).is_(None) | (col(Store.lease_expires_at) < now))
            )
        )
    replayed = dead = 0
    floors = await _ack_floors(outbox) if idle else {}
    for store_id, raw_status, replays, claimed_at, cleaned_up_at in idle:
        status = StoreStatus(raw_status)
        lane = _lane(status, claimed_at is not None, cleaned_up_at is not None)
        if await _work_in_flight(outbox, store_id, lane, floors):
            continue
        with bind_store(store_id):
            if status in _GIVEN_UP_ON and replays >= MAX_REPLAYS:
                reason = f"its work was lost or kept crashing its worker ({replays + 1} times)"
                if status in _LIVE_CHANGES:
                    dead += await _end_lost_change(outbox, store_id, status, reason)
                else:
                    dead += await _fail_unfinished(outbox, store_id, reason)
                continue
            log.warning("work lost: sending it again", status=status.value, replays=replays)
            await _send_again(outbox, store_id, lane)
            replayed += 1
    DEAD_LETTERS.inc(dead)
    return replayed, dead


def _left_behind(owner: _Owner | None) -> bool:
    """Whether a namespace made for ``owner`` should no longer exist."""
    if owner is None or owner.status is StoreStatus.DELETED:
        return True
    # A failed store's clean-up said it finished; a namespace it left is not wanted. (One
    # still being cleaned up is the clean-up's to remove, sent again by the replay if lost.)
    return owner.status is StoreStatus.FAILED and owner.cleaned_up_at is not None


@dataclass(frozen=True)
class _Owner:
    """What reconciling needs of a store: read as columns, not as whole stores, since every
    pass reads one for each namespace (10,000 stores: 1.2 s a pass as whole rows)."""

    namespace: str
    status: StoreStatus
    cleaned_up_at: datetime | None


async def reconcile_cluster(outbox: Outbox, cluster: Cluster, grace: timedelta) -> tuple[int, int]:
    """Returns (orphaned namespaces removed, ready or pooled stores whose namespace vanished)."""
    namespaces = await cluster.managed_namespaces()
    now = utcnow()
    claimed: dict[str, uuid.UUID | None] = {}
    for namespace, label in namespaces.items():
        try:
            claimed[namespace] = uuid.UUID(label)
        except ValueError:
            claimed[namespace] = None
    async with outbox.db.session() as session:
        ids = [store_id for store_id in claimed.values() if store_id is not None]
        owners = {
            store_id: _Owner(namespace, StoreStatus(status), cleaned_up_at)
            for store_id, namespace, status, cleaned_up_at in await session.exec(
                select(Store.id, Store.namespace, Store.status, Store.cleaned_up_at).where(
                    col(Store.id).in_(ids)
                )
            )
        }
        ready = list(
            await session.exec(
                select(Store.id, Store.namespace)
                .where(col(Store.status).in_((StoreStatus.READY, StoreStatus.POOLED)))
                .where(col(Store.updated_at) < now - grace)
            )
        )
    removed = 0
    for namespace, store_id in claimed.items():
        owner = owners.get(store_id) if store_id else None
        if owner is not None and owner.namespace != namespace:
            continue  # the labels name a store that does not own this name: not proven ours
        if _left_behind(owner):
            log.warning(
                "removing a namespace left behind", namespace=namespace, store=str(store_id)
            )
            await cluster.delete_namespace(namespace, timeout=ORPHAN_DELETE_TIMEOUT)
            removed += 1
    vanished = 0
    for store_id, namespace in ready:
        if namespace not in namespaces:
            vanished += await _fail_ready_store(
                outbox, store_id, "its namespace was deleted outside WooStore"
            )
    ORPHANS_REMOVED.inc(removed)
    return removed, vanished


async def _fail_ready_store(outbox: Outbox, store_id: uuid.UUID, reason: str) -> bool:
    try:
        # The root of a trace of its own: the store's latest work may be long done.
        with tracing.tracer().start_as_current_span(
            "reaper ready store lost",
            attributes={"store_id": str(store_id)},
            # Not an error when it moved on meanwhile (deleted, say): caught just below.
            record_exception=False,
            set_status_on_exception=False,
        ):
            async with UnitOfWork.begin(outbox) as uow:
                await lifecycle.fail(uow, store_id, reason, lost=True)
    except (InvalidTransition, StoreNotFound):
        return False  # no longer ready: deleted meanwhile, say
    with bind_store(store_id):
        log.warning("ready store lost", reason=reason)
    return True


async def forget_expired(outbox: Outbox) -> int:
    """Delete idempotency keys past their lifetime, rate limits whose allowance is full
    again, spent event tickets that expired (no notifier would accept them anyway), and work
    orders sent long ago. A client retrying a create a day later makes a new store, as with
    any API that expires keys."""
    now = utcnow()
    async with UnitOfWork.begin(outbox) as uow:
        keys = await uow.session.exec(
            delete(IdempotencyKey).where(col(IdempotencyKey.created_at) < now - IDEMPOTENCY_TTL)
        )
        limits = await uow.session.exec(
            delete(RateLimit).where(col(RateLimit.tat) < now)  # a full allowance again
        )
        tickets = await uow.session.exec(
            delete(SpentTicket).where(col(SpentTicket.expires_at) < now)
        )
        orders = await uow.session.exec(
            delete(WorkOrderRecord)
            .where(col(WorkOrderRecord.published_at).is_not(None))
            .where(col(WorkOrderRecord.time) < now - WORK_ORDER_TTL)
        )
    return keys.rowcount + limits.rowcount + tickets.rowcount + orders.rowcount


async def prune_events(
    outbox: Outbox, keep_for: timedelta | None, batch: int = EVENT_PRUNE_BATCH
) -> int:
    """Delete the oldest published events older than ``keep_for`` (None: keep every one), a
    ``batch`` at most. Nothing else is lost: a store's state is its row, the audit log is a
    table of its own, and an event not yet published is kept for the relay."""
    if keep_for is None:
        return 0
    due = (
        select(StoreEvent.id)
        .where(col(StoreEvent.time) < utcnow() - keep_for)
        .where(col(StoreEvent.published_at).is_not(None))
        .order_by(col(StoreEvent.time))
        .limit(batch)
    )
    async with UnitOfWork.begin(outbox) as uow:
        pruned = await uow.session.exec(
            delete(StoreEvent).where(col(StoreEvent.id).in_(due.scalar_subquery()))
        )
    EVENTS_PRUNED.inc(pruned.rowcount)
    return pruned.rowcount


async def reap_once(
    outbox: Outbox,
    cluster: Cluster,
    deadline: timedelta,
    grace: timedelta,
    event_retention: timedelta | None = None,
) -> PassReport:
    failed = await enforce_deadlines(outbox, deadline)
    # Relay before replay: an event never published is not lost work.
    relayed = await outbox.relay(older_than=RELAY_GRACE)
    EVENTS_RELAYED.inc(relayed)
    replayed, dead = await replay_lost_work(outbox, grace)
    deletions = await delete_as_asked(outbox)
    removed, vanished = await reconcile_cluster(outbox, cluster, grace)
    expired = await forget_expired(outbox)
    pruned = await prune_events(outbox, event_retention)
    return PassReport(
        failed_by_deadline=failed,
        replayed=replayed,
        dead_letters=dead,
        deletions_started=deletions,
        events_relayed=relayed,
        orphans_removed=removed,
        namespaces_vanished=vanished,
        records_expired=expired,
        events_pruned=pruned,
    )
