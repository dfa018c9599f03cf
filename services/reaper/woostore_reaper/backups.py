"""Keeping stores' backups: each ready store backed up on the operator's schedule, and its
backups thinned out by the operator's retention rules. Both are the leader's only.

The schedule: a ready store is backed up once its newest backup (complete or under way, of
any trigger: one its owner asked for counts) is ``every`` old; a store never backed up,
``every`` after it first became ready, so stores made together are not all backed up at
once later either. One whose scheduled backup (or one its owner asked for) failed is tried
again after ``retry_after``.
At most ``at_once`` stores are backed up at a time, platform-wide (a store is busy while it
is backed up), the ones waiting longest first; due backups are looked for once a minute.

Retention, like restic's ``forget --keep-last/--keep-daily/--keep-weekly``: of the complete
backups the platform took of a store (scheduled, and before upgrades, rollbacks and restores;
one its owner asked for is kept until its owner deletes it), its newest ``last`` are kept,
and the newest of each of its newest ``daily`` days (UTC) that have backups, and of each of
its newest ``weekly`` ISO weeks. The rest are deleted (``lifecycle.delete_backup``: the
change lane removes their data). The rules count days and weeks that have backups, not the
calendar, so a store whose backups stopped (failing for a week, say) keeps what it had.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter
from sqlalchemy import func
from sqlmodel import col, select

from woostore_shared import lifecycle, tracing
from woostore_shared.lifecycle import (
    BackupInUse,
    BackupNotFound,
    CopyUnderWay,
    InvalidTransition,
    StoreNotFound,
)
from woostore_shared.logging import bind_store, get_logger
from woostore_shared.models import (
    BackupDeletion,
    BackupStatus,
    BackupTrigger,
    Store,
    StoreBackup,
    StoreStatus,
    utcnow,
)
from woostore_shared.outbox import Outbox
from woostore_shared.settings import Settings
from woostore_shared.unit_of_work import UnitOfWork

log = get_logger(__name__)

SCHEDULED_BACKUPS = Counter("woostore_scheduled_backups_total", "Scheduled backups started")
BACKUPS_EXPIRED = Counter(
    "woostore_backups_expired_total", "Backups deleted as kept by no retention rule"
)
RETRY_AFTER = timedelta(hours=1)
# Due backups are looked for this often (a query over every ready store and its backups):
# a daily backup a minute late costs nothing.
SCHEDULE_INTERVAL = timedelta(minutes=1)
# Retention can only drop something once a backup completed; it is looked at this often.
RETENTION_INTERVAL = timedelta(minutes=10)


@dataclass(frozen=True)
class Retention:
    last: int
    daily: int
    weekly: int

    @property
    def keeps_all(self) -> bool:
        return not (self.last or self.daily or self.weekly)

    def kept(self, backups: Sequence[tuple[uuid.UUID, datetime]]) -> set[uuid.UUID]:
        """Which of a store's complete backups (id, when taken) the rules keep."""
        if self.keeps_all:
            return {backup_id for backup_id, _ in backups}
        newest_first = sorted(backups, key=lambda backup: backup[1], reverse=True)
        kept = {backup_id for backup_id, _ in newest_first[: self.last]}
        day: Callable[[datetime], Hashable] = lambda taken: taken.date()  # noqa: E731
        week: Callable[[datetime], Hashable] = lambda taken: taken.isocalendar()[:2]  # noqa: E731
        for count, period in ((self.daily, day), (self.weekly, week)):
            periods: set[Hashable] = set()
            for backup_id, taken in newest_first:
                if period(taken) in periods:
                    continue  # an older backup of a period already kept
                if len(periods) == count:
                    break
                periods.add(period(taken))
                kept.add(backup_id)
        return kept


@dataclass(frozen=True)
class BackupPolicy:
    """What the operator set: how often stores are backed up, and what is kept."""

    every: timedelta | None  # None: no scheduled backups
    at_once: int
    retention: Retention
    retry_after: timedelta = RETRY_AFTER

    @classmethod
    def of(cls, settings: Settings) -> BackupPolicy:
        # Without a location every backup would fail: nothing is scheduled to fail hourly.
        scheduled = settings.backup_every_hours > 0 and settings.backup_storage().location
        return cls(
            every=timedelta(hours=settings.backup_every_hours) if scheduled else None,
            at_once=settings.backups_at_once,
            retention=Retention(
                last=settings.backup_keep_last,
                daily=settings.backup_keep_daily,
                weekly=settings.backup_keep_weekly,
            ),
        )


@dataclass(frozen=True)
class BackupsReport:
    scheduled: int  # stores whose scheduled backup was started
    expired: int  # backups deleted by the retention rules


class BackupKeeper:
    """The reaper's pass over backups: due backups looked for at most every
    ``SCHEDULE_INTERVAL``, retention at most every ``RETENTION_INTERVAL``."""

    def __init__(self, outbox: Outbox, policy: BackupPolicy) -> None:
        self.outbox = outbox
        self.policy = policy
        self._last: dict[str, datetime] = {}

    def _due(self, what: str, interval: timedelta) -> bool:
        now, last = utcnow(), self._last.get(what)
        if last is not None and now - last < interval:
            return False
        self._last[what] = now
        return True

    async def keep(self) -> BackupsReport:
        scheduled = expired = 0
        if self._due("schedule", SCHEDULE_INTERVAL):
            scheduled = await start_due_backups(self.outbox, self.policy)
        if self._due("retention", RETENTION_INTERVAL):
            expired = await expire_backups(self.outbox, self.policy.retention)
        return BackupsReport(scheduled=scheduled, expired=expired)


async def start_due_backups(outbox: Outbox, policy: BackupPolicy) -> int:
    """Start the scheduled backups that are due, as many as ``at_once`` leaves room for."""
    if policy.every is None:
        return 0
    now = utcnow()
    taken = col(StoreBackup.status).in_((BackupStatus.COMPLETE, BackupStatus.RUNNING))
    # A backup in its own right that failed holds the schedule off for a while (the storage
    # may be down). One a change or a restore takes first does not: it may have failed for
    # the change's reasons (a change cut short as it backed up), not the storage's.
    failed = (col(StoreBackup.status) == BackupStatus.FAILED) & col(StoreBackup.trigger).in_(
        (BackupTrigger.SCHEDULED, BackupTrigger.REQUESTED)
    )
    last_taken = func.coalesce(
        func.max(StoreBackup.requested_at).filter(taken), func.min(Store.ready_at)
    )
    last_failed = func.max(StoreBackup.requested_at).filter(failed)
    async with outbox.db.session() as session:
        busy = (
            await session.exec(
                select(func.count())
                .select_from(Store)
                .where(col(Store.status) == StoreStatus.BACKING_UP)
            )
        ).one()
        room = policy.at_once - busy
        if room <= 0:
            return 0
        due = list(
            await session.exec(
                select(Store.id)
                .join(StoreBackup, col(StoreBackup.store_id) == col(Store.id), isouter=True)
                .where(col(Store.status) == StoreStatus.READY)
                .where(col(Store.delete_requested_at).is_(None))  # it goes: no more backups
                .group_by(col(Store.id))
                .having(last_taken < now - policy.every)
                .having(last_failed.is_(None) | (last_failed < now - policy.retry_after))
                .order_by(last_taken)
                .limit(room)
            )
        )
    started = 0
    for store_id in due:
        try:
            # The root of the backup's trace, as a request is of an owner's backup.
            with tracing.tracer().start_as_current_span("scheduled backup"):
                async with UnitOfWork.begin(outbox) as uow:
                    backup = await lifecycle.start_backup(uow, store_id, BackupTrigger.SCHEDULED)
        except (InvalidTransition, StoreNotFound):
            continue  # no longer ready: its owner got there first
        with bind_store(store_id):
            log.info("scheduled backup started", backup=str(backup.id))
        started += 1
    SCHEDULED_BACKUPS.inc(started)
    return started


async def expire_backups(outbox: Outbox, retention: Retention) -> int:
    """Delete the complete backups no retention rule keeps (of those the platform took: one
    its owner asked for is kept until its owner deletes it)."""
    if retention.keeps_all:
        return 0
    judged = (col(StoreBackup.status) == BackupStatus.COMPLETE) & (
        col(StoreBackup.trigger) != BackupTrigger.REQUESTED  # its owner's: kept until deleted
    )
    async with outbox.db.session() as session:
        crowded = (
            select(StoreBackup.store_id)
            .where(judged)
            .group_by(col(StoreBackup.store_id))
            .having(func.count() > retention.last)
        )
        rows = await session.exec(
            select(StoreBackup.store_id, StoreBackup.id, StoreBackup.requested_at)
            .where(judged)
            .where(col(StoreBackup.store_id).in_(crowded))
        )
        by_store: dict[uuid.UUID, list[tuple[uuid.UUID, datetime]]] = {}
        for store_id, backup_id, taken in rows:
            by_store.setdefault(store_id, []).append((backup_id, taken))
    expired = 0
    for store_id, backups in by_store.items():
        kept = retention.kept(backups)
        for backup_id, _ in backups:
            if backup_id not in kept:
                expired += await _expire(outbox, store_id, backup_id)
    BACKUPS_EXPIRED.inc(expired)
    return expired


async def _expire(outbox: Outbox, store_id: uuid.UUID, backup_id: uuid.UUID) -> bool:
    try:
        with tracing.tracer().start_as_current_span("expired backup"):
            async with UnitOfWork.begin(outbox) as uow:
                await lifecycle.delete_backup(uow, store_id, backup_id, BackupDeletion.RETENTION)
    except (BackupNotFound, BackupInUse, CopyUnderWay, StoreNotFound):
        return False  # deleted meanwhile, or restored or copied from: the next pass sees
    with bind_store(store_id):
        log.info("backup expired", backup=str(backup_id))
    return True
