"""Runs a store's recipe on its lane, and ends it as the recipe declares.

| Lane | The store is | Recipe | When it completes | When it fails for good |
|---|---|---|---|---|
| provision | queued or provisioning | PROVISION | ready (for the pool: pooled) | failed |
| provision | made from a backup, queued or provisioning | CLONE | ready | failed |
| provision | pooled before, provisioning | REVERIFY | pooled | failed |
| personalise | claimed, queued or provisioning | PERSONALISE | ready | made cold instead |
| change | updating | UPGRADE or ROLLBACK | ready, changed | ready, the change failed |
| change | backing_up | BACKUP | ready, the backup complete | ready, the backup failed |
| change | restoring | RESTORE | ready, restored | ready, the restore failed |
| change | ready, a backup deleted | (none: its data is removed) | | (sent again by the reaper) |
| removal | deleting | DELETE | deleted | (retried until it succeeds) |
| removal | failed, not cleaned up | CLEAN_UP | cleaned up | (retried until it succeeds) |

A work order finding the store in any other state has nothing to do. A store made for the warm
pool yields to owners: found still queued while an owner's store waits, it is retired unstarted
(the reaper refills the pool once owners are served). Each step runs watched:
the message's ack timer and the store's lease are kept alive, and the step is cut when the
store leaves the recipe's status (a deadline failed it, its owner deleted it), when its
owner asks for its deletion and the recipe yields to it (a backup: it ends not made, and the
deletion starts), when it outlives its own timeout (a permanent error), or when the process
is stopping (the message is handed back for another replica to resume; steps are
idempotent).
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.trace import Span
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from sqlmodel import select

from woostore_cluster import Cluster, PermanentClusterError, traced
from woostore_provisioner.journal import Journal
from woostore_provisioner.leases import Attempt, KeepAlive, Leases, fenced, new_owner
from woostore_provisioner.recipe import (
    BACKING_UP_FIRST,
    BACKUP,
    CHANGES,
    CLEAN_UP,
    CLONE,
    DELETE,
    PERMANENT_ERRORS,
    PERSONALISE,
    PROVISION,
    RESTORE,
    REVERIFY,
    SETTINGS,
    Damage,
    Learned,
    OnFailure,
    Recipe,
    SettingsChanged,
    Step,
    StoreJob,
    TimeLimits,
)
from woostore_provisioner.retries import (
    TRANSIENT_ERRORS,
    DeletionAsked,
    LeaseLost,
    ShuttingDown,
    StoreAbandoned,
    retry_in_place,
)
from woostore_shared import lifecycle, tracing
from woostore_shared.backups import BackupStorage, BackupStorageError, Manifest, StoreBackups
from woostore_shared.db import Database
from woostore_shared.events import StepInfo
from woostore_shared.lifecycle import (
    NEVER_BEGUN,
    InvalidTransition,
    NeverBegun,
    in_the_cold_queue,
)
from woostore_shared.logging import get_logger
from woostore_shared.models import NAMESPACE_PREFIX, Store, StoreBackup, StoreStatus
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import CredentialCipher
from woostore_shared.store_settings import StoreSettings
from woostore_shared.unit_of_work import UnitOfWork

log = get_logger(__name__)
# What an undo may fail with: the recipe has failed already, and its end says the undo failed.
UNDO_FAILURES: tuple[type[BaseException], ...] = (
    *PERMANENT_ERRORS,
    *TRANSIENT_ERRORS,
    TimeoutError,
)

STEP_SECONDS = Histogram(
    "woostore_step_duration_seconds",
    "Time each recipe step took",
    ["phase", "step"],
    # Prometheus's default buckets end at 10 s: a rollout on a real cluster, or a large
    # store's backup, takes minutes, and every quantile of it read as 10 s.
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800),
)
STORES_FINISHED = Counter(
    "woostore_stores_finished_total", "Stores that reached an end", ["outcome"]
)


# Each store made counts once, as ready or pooled (WooStoreFailureRateHigh divides by them):
# a pooled store claimed and made its owner's, or verified again while idle, has been.
_FINISHED_AS = {PERSONALISE: "claimed", REVERIFY: "verified_again"}
CUT_SHORT = "cut short: the store's deletion was asked for"


@dataclass(frozen=True)
class BackupWork:
    """The backups a recipe works with: the one it makes, the one it restores, and for a
    copy, the store that backup is of (read from that store's repository); whether it may
    repair the store's repository, and what it found damaged (``StoreJob``'s)."""

    making: uuid.UUID | None = None
    restoring: uuid.UUID | None = None
    copying: Store | None = None
    repairs: bool = False  # the store's own work: it may repair the store's repository
    damage: Damage = field(default_factory=Damage)


class Runner:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        cluster: Cluster,
        *,
        chart: Path,
        base_domain: str,
        cipher: CredentialCipher,
        watch_interval: float,
        limits: TimeLimits,
        backup_storage: BackupStorage,
        values_files: Sequence[Path] = (),
        cause_interval: float = 5.0,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.cluster = traced(cluster)  # each call a span of the store's trace
        self.chart = chart
        self.values_files = tuple(values_files)
        self.base_domain = base_domain
        self.cipher = cipher
        self.watch_interval = watch_interval
        self.cause_interval = cause_interval  # how often a step waiting for pods asks why
        self.limits = limits
        self.backup_storage = backup_storage
        self.leases = Leases(outbox, renew_every=watch_interval)
        self.journal = Journal(db, outbox)
        self.stopping = asyncio.Event()
        self._deliveries = 0
        self._settled = asyncio.Condition()

    @asynccontextmanager
    async def delivery(self) -> AsyncIterator[None]:
        """Wraps a handler's whole work on one message, its settling included, so shutdown
        can wait for every message to be acked or handed back before the connection closes."""
        self._deliveries += 1
        try:
            yield
        finally:
            self._deliveries -= 1
            async with self._settled:
                self._settled.notify_all()

    async def stop(self, grace: float) -> None:
        """Cut the steps in flight and wait (up to ``grace`` seconds) for their messages to be
        settled: handed back at once, instead of after a whole AckWait."""
        self.stopping.set()
        async with self._settled:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait_for(lambda: self._deliveries == 0), grace)

    # -- the lanes -------------------------------------------------------------------------

    async def provision(self, store_id: uuid.UUID, keep_alive: KeepAlive) -> None:
        await self._attempt(store_id, keep_alive, self._provision)

    async def personalise(self, store_id: uuid.UUID, keep_alive: KeepAlive) -> None:
        """Make a store claimed from the warm pool its owner's."""
        await self._attempt(store_id, keep_alive, self._personalise)

    async def change(self, store_id: uuid.UUID, keep_alive: KeepAlive) -> None:
        """Upgrade, roll back, back up or restore a store; it ends ready either way."""
        await self._attempt(store_id, keep_alive, self._change)

    async def remove(self, store_id: uuid.UUID, keep_alive: KeepAlive) -> None:
        """Delete a store, or clean up what a failed one left behind."""
        await self._attempt(store_id, keep_alive, self._remove)

    async def give_up(self, store_id: uuid.UUID, reason: str, keep_alive: KeepAlive) -> None:
        """End the recipe under way as failed, as it declares: its deliveries are spent. A
        removal is never given up."""

        async def give_up(attempt: Attempt) -> None:
            store = await self._load(attempt.store_id)
            recipe = _recipe_under_way(store)
            if recipe is not None and recipe.on_failure is not OnFailure.RETRY:
                await self._end_failed(recipe, store.id, reason, attempt)

        await self._attempt(store_id, keep_alive, give_up)

    async def _provision(self, attempt: Attempt) -> None:
        store = await self._load(attempt.store_id)
        recipe = _recipe_under_way(store)
        if recipe is None or recipe not in (PROVISION, REVERIFY, CLONE):
            log.info("nothing to provision", status=store.status.value)
            return
        unstarted_refill = store.status is StoreStatus.QUEUED and store.tenant_id is None
        if unstarted_refill and await self._owners_waiting():
            await self._yield_to_owners(store.id)
            return
        await self._make(recipe, store, attempt, await self._copying(store))

    async def _personalise(self, attempt: Attempt) -> None:
        store = await self._load(attempt.store_id)
        if _recipe_under_way(store) is not PERSONALISE:
            log.info("nothing to personalise", status=store.status.value)
            return
        await self._make(PERSONALISE, store, attempt)

    async def _copying(self, store: Store) -> BackupWork | None:
        """For a store made from a backup: that backup, and the store it is of."""
        if store.from_backup_id is None:
            return None
        async with self.db.session() as session:
            backup = await session.get(StoreBackup, store.from_backup_id)
            source = await session.get(Store, backup.store_id) if backup else None
        if source is None:
            raise LookupError(f"backup {store.from_backup_id} of store {store.id} not found")
        return BackupWork(restoring=store.from_backup_id, copying=source)

    async def _make(
        self, recipe: Recipe, store: Store, attempt: Attempt, backups: BackupWork | None = None
    ) -> None:
        """Start a queued store, follow ``recipe`` and make the store ready (or pooled)."""
        if store.status is StoreStatus.QUEUED:
            async with UnitOfWork.begin(self.outbox) as uow:
                store = await lifecycle.start(uow, attempt.store_id)
        if not await self._follow(recipe, store, attempt, backups):
            return
        url = self._storefront_url(store)
        try:
            async with UnitOfWork.begin(self.outbox) as uow:
                store = await lifecycle.make_ready(
                    uow, attempt.store_id, storefront_url=url, admin_url=url + "/wp-admin/"
                )
        except InvalidTransition as moved_on:
            # Deleted or failed between the last step and now: that wins over ready.
            log.info("store not made ready", status=moved_on.current.value)
            return
        STORES_FINISHED.labels(_FINISHED_AS.get(recipe, store.status.value)).inc()
        pooled = store.status is StoreStatus.POOLED
        log.info("store pooled" if pooled else "store ready", url=url, origin=store.origin)

    async def _owners_waiting(self) -> bool:
        """Whether an owner's store is queued for cold provisioning."""
        async with self.db.session() as session:
            waiting = await session.exec(select(Store.id).where(in_the_cold_queue()).limit(1))
            return waiting.first() is not None

    async def _yield_to_owners(self, store_id: uuid.UUID) -> None:
        try:
            async with UnitOfWork.begin(self.outbox) as uow:
                await lifecycle.retire(uow, store_id)
        except InvalidTransition:
            return  # retired already
        log.info("pool refill yielded to an owner's store")

    async def _change(self, attempt: Attempt) -> None:
        store = await self._load(attempt.store_id)
        recipe = _recipe_under_way(store)
        if recipe is BACKUP:
            await self._back_up(store, attempt)
        elif recipe is RESTORE:
            await self._restore(store, attempt)
        elif recipe is not None and recipe.status is StoreStatus.UPDATING:
            await self._make_change(recipe, store, attempt)
        # Last, under the same lease: deleted backups are removed from the repository only
        # while nothing else of the store's uses it (restic's prune locks it whole).
        await self._remove_deleted_backups(attempt.store_id)

    async def _make_change(self, recipe: Recipe, store: Store, attempt: Attempt) -> None:
        making = None  # (a change asked for before changes took a backup first: none)
        async with self.db.session() as session:
            with suppress(LookupError):
                making = (await lifecycle.backup_under_way(session, store.id)).id
        work = BackupWork(making=making, repairs=True)
        if await self._follow(recipe, store, attempt, work):
            await self._end_change(attempt.store_id, failure=None)

    async def _remove_deleted_backups(self, store_id: uuid.UUID) -> None:
        """Remove the data of the store's deleted backups from its repository, if nothing
        else uses it: the store is ready, or failed and cleaned up (busy, the work under way
        ends with this), and no new store is being made from one of its backups (the reaper
        sends the work again once it is)."""
        async with self.db.session() as session:
            store = await session.get(Store, store_id)
            deleting = await lifecycle.backups_deleting(session, store_id)
            copy = await lifecycle.copy_reading_from(session, store_id) if deleting else None
        if store is None or not lifecycle.is_idle_with_backups(store) or copy is not None:
            return
        for backup_id in deleting:
            await self.backup_storage.of(store_id).forget(backup_id)
            async with UnitOfWork.begin(self.outbox) as uow:
                await lifecycle.mark_backup_deleted(uow, backup_id)
            log.info("deleted backup removed from the repository", backup=str(backup_id))

    async def _back_up(self, store: Store, attempt: Attempt) -> None:
        async with self.db.session() as session:
            backup = await lifecycle.backup_under_way(session, store.id)
        work = BackupWork(making=backup.id, repairs=True)
        if not await self._follow(BACKUP, store, attempt, work):
            return
        manifest = await self.backup_storage.of(store.id).manifest(backup.id)
        await self._end_backup(store.id, manifest or "its manifest is missing after storing it")

    async def _restore(self, store: Store, attempt: Attempt) -> None:
        async with self.db.session() as session:
            change = await lifecycle.change_under_way(session, store.id)
            safety = await lifecycle.backup_under_way(session, store.id)
        if change is None or change.backup_id is None:
            raise LookupError(f"store {store.id} is restoring but names no backup")
        work = BackupWork(making=safety.id, restoring=change.backup_id, repairs=True)
        if await self._follow(RESTORE, store, attempt, work):
            await self._end_restore(store.id, failure=None)

    async def _may_repair(self, store_id: uuid.UUID, own_work: bool) -> bool:
        """Whether the work may repair the store's repository now: the store's own work,
        while no new store is being made from one of its backups (a repair locks the
        repository whole, and removes data the copy may be reading)."""
        if not own_work:
            return False
        async with self.db.session() as session:
            return await lifecycle.copy_reading_from(session, store_id) is None

    async def _remove(self, attempt: Attempt) -> None:
        store = await self._load(attempt.store_id)
        recipe = _recipe_under_way(store)
        if recipe is not DELETE and recipe is not CLEAN_UP:
            log.info("nothing to remove", status=store.status.value)
            return
        if not await self._follow(recipe, store, attempt):
            return  # a failed store being cleaned up was deleted: its deletion follows
        async with UnitOfWork.begin(self.outbox) as uow:
            if recipe is DELETE:
                await lifecycle.mark_deleted(uow, attempt.store_id)
            else:
                await lifecycle.mark_cleaned_up(uow, attempt.store_id)
        STORES_FINISHED.labels("deleted" if recipe is DELETE else "cleaned_up").inc()
        log.info("store deleted" if recipe is DELETE else "failed store cleaned up")

    async def _follow(
        self, recipe: Recipe, store: Store, attempt: Attempt, backups: BackupWork | None = None
    ) -> bool:
        """Run ``recipe``; whether it completed. A permanent error ends it as it declares."""
        work = backups or BackupWork()
        try:
            # However it ended, the backups it found damaged are marked, before its end is
            # written (which offers actions): if it failed, without hiding why.
            try:
                await self._run(recipe, store, attempt, work)
            except BaseException:
                await self._record_damage(store.id, work.damage, failing=True)
                raise
            await self._record_damage(store.id, work.damage)
            await self.leases.confirm(attempt)  # its end is written by this attempt only
        except StoreAbandoned:
            log.info("work abandoned: the store moved on", phase=recipe.phase)
            return False
        except DeletionAsked:
            # Only a backup yields (Recipe.yields_to_deletion). Not the storage refusing it
            # (WooStoreBackupsFailing): counted as not made.
            assert recipe.on_failure is OnFailure.END_BACKUP_FAILED, recipe.phase
            await self._end_backup(store.id, CUT_SHORT, failed_as="not_made")
            return False
        except PERMANENT_ERRORS as error:
            if recipe.on_failure is OnFailure.RETRY or isinstance(error, TRANSIENT_ERRORS):
                raise  # retried (in place, then by redelivery), as any "not now"
            await self._end_failed(recipe, store.id, str(error), attempt)
            return False
        return True

    async def _record_damage(
        self, store_id: uuid.UUID, damage: Damage, failing: bool = False
    ) -> None:
        """Mark the backups ``damage`` names damaged, then forget the snapshots a repair of
        the store's repository found without their data. Where the work is ``failing``
        already, a failure is logged, not raised: the work's own error says why it ended,
        and the next repair finds the same again."""
        found = damage.backups
        try:
            if found:
                async with UnitOfWork.begin(self.outbox) as uow:
                    marked = [
                        b
                        for b, d in found.items()
                        if await lifecycle.mark_backup_damaged(uow, b, d)
                    ]
                for backup_id in marked:
                    log.warning(
                        "backup found damaged", backup=str(backup_id), damage=found[backup_id]
                    )
            await self.backup_storage.of(store_id).forget_snapshots(damage.snapshots)
        except Exception:
            if not failing:
                raise
            log.exception(
                "could not record what was found damaged", backups=[str(b) for b in found]
            )

    async def _end_failed(
        self, recipe: Recipe, store_id: uuid.UUID, reason: str, attempt: Attempt
    ) -> None:
        """End the recipe as failed, as it declares, while this attempt holds the lease: a
        process woken past it, whose call under way then failed, ends no other's work."""
        await self.leases.confirm(attempt)
        match recipe.on_failure:
            case OnFailure.FAIL_AND_CLEAN_UP:
                await self._fail(store_id, reason)
            case OnFailure.END_CHANGE_FAILED:
                failure = await self._undone(recipe, store_id, reason, attempt)
                await self.leases.confirm(attempt)  # the undo may have taken minutes
                await self._end_change(store_id, failure=failure)
            case OnFailure.END_BACKUP_FAILED:
                await self._end_backup(store_id, reason)
            case OnFailure.END_RESTORE_FAILED:
                await self._end_restore(store_id, failure=reason)
            case OnFailure.FALL_BACK_TO_COLD:
                await self._fall_back(store_id, reason)
            case OnFailure.RETRY:
                raise AssertionError(f"{recipe.phase} never ends as failed")

    async def _undone(
        self, recipe: Recipe, store_id: uuid.UUID, failure: str, attempt: Attempt
    ) -> str:
        """Undo what the failed recipe's begun steps declare they undo, the last begun first;
        the failure to record, which says what could not be undone."""
        store = await self._load(store_id)
        begun = await self._begun(store, recipe)
        undoing = [step for step in reversed(recipe.steps) if step.undo and step.name in begun]
        if not undoing:
            return failure
        job = self._job(store, attempt, settings_changed=await self._settings_changed(store_id))
        for step in undoing:
            assert step.undo is not None  # (picked so)
            try:
                async with asyncio.timeout(step.deadline(self.limits)):
                    done = await step.undo(job)
            except UNDO_FAILURES as error:
                if attempt.stopped is not None:  # the lease lost on the way: not this undo's
                    raise attempt.stopped from error
                log.warning("undoing a failed step failed", step=step.name, error=str(error))
                return (
                    f"{failure}; undoing '{step.title}' failed too ({error}): what it changed "
                    "may be left"
                )
            log.info("failed step undone", step=step.name)
            failure = f"{failure}; {done}" if done else failure
        return failure

    async def _begun(self, store: Store, recipe: Recipe) -> set[str | None]:
        """The names of the recipe's steps begun for ``store``: those journalled done, and the
        one under way (``step_name``)."""
        return await self.journal.done(store.id, recipe) | {store.step_name}

    async def _fail(self, store_id: uuid.UUID, reason: str) -> None:
        try:
            async with UnitOfWork.begin(self.outbox) as uow:
                store = await lifecycle.fail(uow, store_id, reason)
        except InvalidTransition:
            return  # it moved on meanwhile (failed by its deadline, deleted)
        STORES_FINISHED.labels("failed").inc()
        log.warning("store failed", reason=reason, step=store.step_name)

    async def _fall_back(self, store_id: uuid.UUID, reason: str) -> None:
        try:
            async with UnitOfWork.begin(self.outbox) as uow:
                await lifecycle.fall_back_to_cold(uow, store_id, reason)
        except InvalidTransition:
            return  # it moved on meanwhile (deleted by its owner, failed by its deadline)
        STORES_FINISHED.labels("fell_back").inc()
        log.warning("claimed store discarded: made from scratch instead", reason=reason)

    async def _end_change(self, store_id: uuid.UUID, failure: str | None) -> None:
        backup = await self._backup_taken_first(store_id, failure)
        try:
            async with UnitOfWork.begin(self.outbox) as uow:
                change = await lifecycle.end_change(uow, store_id, failure, backup)
        except InvalidTransition:
            return  # ended already (the reaper gave it up, say)
        STORES_FINISHED.labels("changed" if failure is None else "change_failed").inc()
        log.info("store change ended", change=change.kind, result=change.result, reason=failure)

    async def _end_backup(
        self, store_id: uuid.UUID, outcome: Manifest | str, failed_as: str = "failed"
    ) -> None:
        try:
            async with UnitOfWork.begin(self.outbox) as uow:
                backup = await lifecycle.end_backup(uow, store_id, outcome, failed_as=failed_as)
        except InvalidTransition:
            return  # ended already (the reaper gave it up, say)
        log.info("backup ended", backup=str(backup.id), result=backup.status.value,
                 reason=backup.reason)  # fmt: skip

    async def _end_restore(self, store_id: uuid.UUID, failure: str | None) -> None:
        """End the restore, with its safety backup as far as it was made."""
        safety = await self._backup_taken_first(store_id, failure)
        try:
            async with UnitOfWork.begin(self.outbox) as uow:
                await lifecycle.end_restore(uow, store_id, failure, safety)
        except InvalidTransition:
            return  # ended already (the reaper gave it up, say)
        STORES_FINISHED.labels("restored" if failure is None else "restore_failed").inc()
        log.info("restore ended", reason=failure)

    async def _backup_taken_first(
        self, store_id: uuid.UUID, failure: str | None
    ) -> Manifest | str | NeverBegun | None:
        """The manifest of the backup a change or a restore took first, if it was made; the
        ``failure`` if the work failed making it; ``NEVER_BEGUN`` if its step never began;
        None if it was not made for another reason."""
        async with self.db.session() as session:
            store = await session.get(Store, store_id)
            try:
                backup = await lifecycle.backup_under_way(session, store_id)
            except LookupError:
                return None  # none running: the change ended already
        # (Ended as a change or a restore ends: the store is still updating or restoring.)
        recipe = _recipe_under_way(store) if store is not None else None
        if store and recipe and not BACKING_UP_FIRST & await self._begun(store, recipe):
            return NEVER_BEGUN
        with suppress(BackupStorageError):  # unreadable: as if not made, and recorded so
            if (manifest := await self.backup_storage.of(store_id).manifest(backup.id)) is not None:
                return manifest
        at_its_step = store is not None and store.step_name in BACKING_UP_FIRST
        return failure if failure is not None and at_its_step else None

    # -- running a recipe --------------------------------------------------------------------

    async def _attempt(
        self,
        store_id: uuid.UUID,
        keep_alive: KeepAlive,
        work: Callable[[Attempt], Awaitable[None]],
    ) -> None:
        """Run ``work`` under the store's lease. Transient errors (the cluster, PostgreSQL or
        NATS unreachable for a moment) are retried here, holding the message and so the
        store's slot, rather than handing it back and letting another store start."""
        owner = new_owner()

        async def sleep_alive(seconds: float) -> None:
            deadline = asyncio.get_running_loop().time() + seconds
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                if self.stopping.is_set():
                    raise ShuttingDown
                await asyncio.sleep(min(left, self.watch_interval))
                with suppress(*TRANSIENT_ERRORS):  # the next try reports a lasting outage
                    await keep_alive()

        async def under_lease() -> None:
            async with self.leases.hold(store_id, owner, keep_alive) as attempt:
                await work(attempt)

        await retry_in_place(under_lease, sleep=sleep_alive)

    async def _run(
        self, recipe: Recipe, store: Store, attempt: Attempt, backups: BackupWork
    ) -> None:
        done = await self.journal.done(store.id, recipe)
        changed = await self._settings_changed(store.id) if recipe is SETTINGS else None
        job = self._job(store, attempt, backups, changed)
        total = len(recipe.steps)
        to_run = [
            (step, StepInfo(name=step.name, title=step.title, index=index, total=total))
            for index, step in enumerate(recipe.steps, start=1)
            if step.name not in done
        ]
        # A span per step, named as the step: its cluster calls and events are inside it.
        spans = tracing.Siblings()

        def span_of(info: StepInfo) -> Span:
            phase_and_place = {
                "woostore.phase": recipe.phase,
                "woostore.step": f"{info.index}/{total}",
            }
            return spans.open(info.name, phase_and_place)

        following: tuple[StepInfo, Span] | None = None  # journalled as started with the last
        for position, (step, info) in enumerate(to_run):
            with tracing.inside(following[1] if following else span_of(info), end=True):
                # The row as read at the start, or as the journal last wrote it: a deletion
                # asked for before the first step, or since the last, is seen before the next
                # one runs, not only at a watch (10 s apart).
                if recipe.yields_to_deletion and store.delete_requested_at is not None:
                    raise DeletionAsked
                attempt.still_held()
                if following is None:
                    store = await self.journal.started(store, recipe, info)
                began = time.monotonic()
                try:
                    learned = await self._watched(
                        step,
                        job,
                        attempt,
                        recipe,
                        functools.partial(self.journal.waiting, store, recipe, info),
                    )
                finally:  # the metric counts the steps that failed or were cut too
                    seconds = time.monotonic() - began
                    STEP_SECONDS.labels(recipe.phase, step.name).observe(seconds)
                following = None
                if position + 1 < len(to_run):
                    following = (to_run[position + 1][1], span_of(to_run[position + 1][1]))
                try:
                    # A later step may need what this one learned (a rollback's revision).
                    store = await self.journal.completed(
                        store, recipe, info, learned, seconds, following
                    )
                    job = self._job(store, attempt, backups, changed, job.backups)
                except BaseException:
                    if following:  # the next step never started: its span says so, and ends
                        following[1].set_attribute("woostore.step.started", False)
                        following[1].end()
                    raise

    async def _watched(
        self,
        step: Step,
        job: StoreJob,
        attempt: Attempt,
        recipe: Recipe,
        tell_cause: Callable[[str | None], Awaitable[None]],
    ) -> Learned | None:
        """Run the step and return what it learned; meanwhile keep the message and the lease
        alive, tell why the step waits if it waits for pods, and stop when the store moves
        on, its deletion is asked for and the recipe yields to it, the step outlives its
        timeout, or the process is stopping. The lease's beat renews both; a renewal made
        after the step began says where the store stands (one made before may predate the
        journal's write of the recipe's status)."""
        began = time.monotonic()
        task = asyncio.ensure_future(step.run(job))
        stopping = asyncio.ensure_future(self.stopping.wait())
        why = WaitExplainer(job, self.cause_interval, tell_cause)
        explaining = asyncio.ensure_future(why.follow()) if step.waits_for_pods else None
        deadline = step.deadline(self.limits)
        give_up_at = asyncio.get_running_loop().time() + deadline
        try:
            while True:
                await asyncio.wait(
                    {task, stopping}, timeout=self.watch_interval, return_when="FIRST_COMPLETED"
                )
                if task.done():
                    return task.result()
                if stopping.done():
                    raise ShuttingDown
                if asyncio.get_running_loop().time() > give_up_at:
                    cause = f": {why.cause}" if why.cause else ""
                    raise PermanentClusterError(
                        f"step {step.name} did not finish within {deadline:.0f} s{cause}"
                    )
                self._still_wanted(attempt, recipe, since=began)
        finally:
            stopping.cancel()
            if explaining is not None:
                explaining.cancel()
                await asyncio.gather(explaining, return_exceptions=True)
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _still_wanted(self, attempt: Attempt, recipe: Recipe, since: float) -> None:
        """Stop if the lease was lost, or a renewal since ``since`` found the store moved on,
        or its deletion asked for and the recipe yields to it."""
        attempt.still_held()
        standing = attempt.standing_since(since)
        if standing is None:
            return
        if standing.status is not recipe.status:
            raise StoreAbandoned
        if standing.delete_requested and recipe.yields_to_deletion:
            raise DeletionAsked

    async def _load(self, store_id: uuid.UUID) -> Store:
        async with self.db.session() as session:
            found = await session.get(Store, store_id)
        if found is None:
            raise LookupError(f"store {store_id} not found")
        return found

    def _storefront_url(self, store: Store) -> str:
        return f"http://{store.slug}.{self.base_domain}"

    async def _settings_changed(self, store_id: uuid.UUID) -> SettingsChanged:
        """The store's change under way, as a settings change recorded it."""
        async with self.db.session() as session:
            change = await lifecycle.change_under_way(session, store_id)
        if change is None:
            return SettingsChanged()
        before = None
        with suppress(ValidationError):  # kept by an older release, unreadable: none to put back
            if change.settings_before is not None:
                before = StoreSettings.model_validate(change.settings_before)
        if change.settings_asked is None:  # asked for before they were kept: all of them
            return SettingsChanged(before)
        return SettingsChanged(before, frozenset(change.settings_asked))

    def _job(
        self,
        store: Store,
        attempt: Attempt,
        backups: BackupWork | None = None,
        settings_changed: SettingsChanged | None = None,
        repository: StoreBackups | None = None,
    ) -> StoreJob:
        """What the recipe's steps of ``store`` work with, reaching the cluster while
        ``attempt`` holds the store's lease only; ``repository``, the backup repository an
        earlier step's job had (what it read, a restore's manifest, is read once)."""
        backups = backups or BackupWork()
        url = self._storefront_url(store)
        made_as = f"{store.namespace.removeprefix(NAMESPACE_PREFIX)}.{self.base_domain}"
        if backups.copying is not None:
            made_as = f"{backups.copying.slug}.{self.base_domain}"
        return StoreJob(
            store_id=str(store.id),
            name=store.name,
            slug=store.slug,
            namespace=store.namespace,
            host=url.removeprefix("http://"),
            storefront_url=url,
            cluster=fenced(self.cluster, self.leases, attempt),
            chart=self.chart,
            cipher=self.cipher,
            limits=self.limits,
            settings=StoreSettings.model_validate(store.settings),
            values_files=self.values_files,
            rollback_revision=store.rollback_revision,
            first_revision=store.first_revision or 1,
            made_as_host=made_as,
            chart_version=store.chart_version,
            backups=repository or self.backup_storage.of((backups.copying or store).id),
            backup_id=backups.making,
            restore_from=backups.restoring,
            may_repair=functools.partial(self._may_repair, store.id, backups.repairs),
            damage=backups.damage,
            settings_changed=settings_changed or SettingsChanged(),
        )


def _recipe_under_way(store: Store) -> Recipe | None:
    """The recipe a store in this state is waiting for, if any."""
    match store.status:
        case StoreStatus.QUEUED | StoreStatus.PROVISIONING:
            if store.claimed_at is not None:
                return PERSONALISE
            if store.from_backup_id is not None:
                return CLONE
            # A pooled store verified once before is being verified again.
            return REVERIFY if store.verified_at is not None else PROVISION
        case StoreStatus.UPDATING:
            return CHANGES.get(store.change or "")
        case StoreStatus.BACKING_UP:
            return BACKUP
        case StoreStatus.RESTORING:
            return RESTORE
        case StoreStatus.DELETING:
            return DELETE
        case StoreStatus.FAILED if store.cleaned_up_at is None:
            return CLEAN_UP
    return None


class WaitExplainer:
    """Asks the cluster why a step waits for the store's pods, every ``interval`` seconds, and
    tells each new answer (a cause in words, or None once it is no longer known)."""

    def __init__(
        self, job: StoreJob, interval: float, tell: Callable[[str | None], Awaitable[None]]
    ) -> None:
        self.job = job
        self.interval = interval
        self.tell = tell
        self.cause: str | None = None  # the last one told

    async def follow(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                cause = await self.job.cluster.waiting_cause(self.job.namespace)
                if cause != self.cause:
                    await self.tell(cause)
                    self.cause = cause
            except (StoreAbandoned, LeaseLost):
                return  # the step's own watch sees it too, and stops the step
            except Exception:
                # Only a hint: the step goes on without it, and the next round asks again
                # (the cluster or the database away for a moment must not silence it).
                log.exception("could not tell why the step waits", namespace=self.job.namespace)
