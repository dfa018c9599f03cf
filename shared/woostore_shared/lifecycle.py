"""The store lifecycle: every change of a store's status, each one named, in one place.

Each change takes the unit of work (:class:`~woostore_shared.unit_of_work.UnitOfWork`) and the
store's id; it locks the store's row, checks the change is allowed from the status the store
has now, makes it, records the event announcing it and dispatches the work it asks for (see
``work.py``), all in that one transaction. A change that is not allowed raises
:class:`InvalidTransition` (the API answers 409; a worker that finds the store moved on has
nothing left to do). Nothing else writes a store's status
(``tests/shared/test_lifecycle_owner.py`` checks the code for it).

A store requested without a tenant is made for the warm pool: the same recipe, then
``pooled`` instead of ``ready``. :func:`claim` gives the oldest fitting pooled store to an
owner, who sees it queued and then made theirs on the personalise lane, as a new store.

| Change | From | To | Event | Work |
|---|---|---|---|---|
| :func:`request` | (new) | queued | requested | provision |
| :func:`claim` | pooled | queued, the owner's | requested | personalise |
| :func:`verify_again` | pooled | provisioning, for the pool | (progress follows) | provision |
| :func:`fall_back_to_cold` | claimed, provisioning | queued, cold | fell_back | provision |
| :func:`start` | queued | provisioning | (progress follows) | |
| :func:`make_ready` | provisioning | ready (in the pool: pooled) | ready (pooled) | |
| :func:`fail` | queued, provisioning (``lost``: ready, pooled) | failed | failed | removal |
| :func:`mark_cleaned_up` | failed | failed, ``cleaned_up_at`` set | cleaned_up | |
| :func:`retry` | failed and cleaned up, an owner's | queued, from scratch | requested | provision |
| :func:`request_deletion` | ``DELETABLE`` | deleting | delete_requested | removal |
| :func:`request_deletion` | busy, or copied (ready, failed) | (unchanged) | delete_queued | |
| :func:`retire` | in the pool: queued, pooled | deleting | delete_requested | removal |
| :func:`mark_deleted` | deleting | deleted | deleted | |
| :func:`start_change` | ready | updating; a backup recorded | change_requested | change |
| :func:`end_change` | updating | ready, the change's outcome kept | changed or change_failed | |
| :func:`start_backup` | ready | backing_up, a backup recorded | backup_started | change |
| :func:`end_backup` | backing_up | ready; the backup done or failed | backup_completed (failed) | |
| :func:`start_restore` | ready | restoring; a safety backup recorded | restore_requested | change |
| :func:`end_restore` | restoring | ready; the outcome kept | restored or restore_failed | |
| :func:`delete_backup` | (unchanged) | a backup deleting | backup_deleted | change |
| :func:`mark_backup_deleted` | (a backup deleting) | the backup deleted | | |
| :func:`mark_backup_damaged` | (a backup complete) | the backup damaged | backup_damaged | |

Deleting a store being deleted, or deleted, again changes nothing. A store asked to be
deleted while a change, a backup or a restore runs on it keeps its status until that work
ends (a backup is stopped for it: the provisioner's part): the change ending it
(:func:`end_change`, :func:`end_backup`, :func:`end_restore`) makes it ready, announcing
how the work went, then deleting, in one transaction.

A copy (:func:`request` with a backup) is made only of a complete backup of a store not being
deleted; until it is made it reads the backup, so the backup cannot be deleted meanwhile
(:class:`CopyUnderWay`), and its store's deletion waits, ready or failed, for the copy to be
made (the reaper's ``delete_as_asked`` starts it then).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from contextlib import suppress
from typing import Any, Literal, cast, get_args

from prometheus_client import Counter
from sqlalchemy import ColumnElement
from sqlalchemy.orm import aliased
from sqlmodel import col, delete, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from woostore_shared.backups import Manifest
from woostore_shared.events import (
    BackupCompleted,
    BackupDamaged,
    BackupDeleted,
    BackupFailed,
    BackupStarted,
    Change,
    Changed,
    ChangeFailed,
    ChangeRequested,
    CleanedUp,
    Deleted,
    DeleteQueued,
    DeleteRequested,
    EventData,
    Failed,
    FellBack,
    OwnBackupTrigger,
    Pooled,
    Ready,
    Requested,
    Restored,
    RestoreFailed,
    RestoreRequested,
    SourceLoss,
    SourceLost,
    StoreRef,
    StoreSummary,
)
from woostore_shared.models import (
    BackupDeletion,
    BackupStatus,
    BackupTrigger,
    Store,
    StoreBackup,
    StoreChange,
    StoreStatus,
    StoreStep,
    namespace_for,
    utcnow,
)
from woostore_shared.store_settings import StoreSettings, StoreSettingsIn
from woostore_shared.transitions import (
    ALLOWED,
    DELETABLE,
    DELETED_AFTER_ITS_COPIES,
    DELETED_AFTER_ITS_WORK,
    actions_of,
)
from woostore_shared.unit_of_work import UnitOfWork
from woostore_shared.work import Lane

S = StoreStatus
# Failures by where they happened: the step a store failed at (bounded: the recipes' step
# names), or "lost" for a ready store whose resources vanished. The reason is in the event.
STORES_FAILED = Counter(
    "woostore_stores_failed_total", "Stores failed, by the step they failed at", ["step"]
)
# Every backup as it ends, whatever made it (the schedule, its owner, a change's or a
# restore's safety backup): storage that refuses every one is seen before a restore needs it.
BACKUPS_ENDED = Counter(
    "woostore_backups_ended_total",
    "Backups that ended, by trigger and result",
    ["trigger", "result"],
)
for _trigger in BackupTrigger:  # from 0, so that the first of each is an increase() to see
    for _result in ("complete", "failed", "not_made"):
        BACKUPS_ENDED.labels(_trigger.value, _result)
# Complete backups found unreadable later: the storage loses or alters what it was given.
BACKUPS_DAMAGED = Counter(
    "woostore_backups_damaged_total", "Complete backups found damaged as they were read"
)

ACTIVE = frozenset({S.QUEUED, S.PROVISIONING, S.UPDATING, S.BACKING_UP, S.RESTORING, S.DELETING})
# Stores that hold (or will hold) cluster resources: what the platform's cap counts. A failed
# store's resources are being cleaned up; it no longer counts.
LIVE = ACTIVE | {S.READY, S.POOLED}
# Stores whose provisioning has not finished: what the provisioner and deadlines fail.
UNFINISHED = frozenset({S.QUEUED, S.PROVISIONING})


def not_started() -> ColumnElement[bool]:
    """Owners' stores waiting to start: in the cold queue, or claimed from the warm pool and
    waiting, on a lane of their own, to be personalised."""
    return (col(Store.status) == S.QUEUED) & col(Store.tenant_id).is_not(None)


def in_the_cold_queue() -> ColumnElement[bool]:
    """Owners' stores queued to be made from scratch: the one queue all tenants share. Pool
    refills yield to them, and a claimed store waits on its own lane, not in it."""
    return not_started() & col(Store.claimed_at).is_(None)


def idle_with_backups() -> ColumnElement[bool]:
    """Stores that may have backups and that no work uses now: ready, or failed and cleaned
    up. A deleted backup's data is removed from such a store's repository (restic's prune
    locks it whole)."""
    return (col(Store.status) == S.READY) | (
        (col(Store.status) == S.FAILED) & col(Store.cleaned_up_at).is_not(None)
    )


def deletion_no_longer_held_up() -> ColumnElement[bool]:
    """Stores whose deletion was asked while a store was being made from their backups, and
    that none is being made from them now: their deletion may start. One condition for any
    number of stores, where :func:`copy_reading_from` asks of one."""
    copy = aliased(Store)
    copies = _copies_being_made(copy, col(StoreBackup.store_id) == col(Store.id))
    return (
        col(Store.status).in_(DELETED_AFTER_ITS_COPIES)
        & col(Store.delete_requested_at).is_not(None)
        & ~select(copy.id).where(copies).exists()
    )


def is_idle_with_backups(store: Store) -> bool:
    """:func:`idle_with_backups`, asked of a store at hand."""
    return store.status is S.READY or (store.status is S.FAILED and store.cleaned_up_at is not None)


def waits_in_the_cold_queue(store: Store) -> bool:
    """:func:`in_the_cold_queue`, asked of a store at hand rather than of the database."""
    return store.status is S.QUEUED and store.tenant_id is not None and store.claimed_at is None


def made_under(base_domain: str) -> ColumnElement[bool]:
    """Stores whose address is under ``base_domain`` (a pooled store keeps its own address
    for this: a claim moves the links of a store made under the current domain only)."""
    return col(Store.storefront_url).endswith(f".{base_domain}", autoescape=True)


class StoreNotFound(LookupError):
    def __init__(self, store_id: uuid.UUID) -> None:
        super().__init__(f"store {store_id} does not exist")


class StillCleaningUp(Exception):
    """A failed store asked for again before its clean-up finished: its namespace may still
    be going, and a new attempt would meet it."""

    def __init__(self, store_id: uuid.UUID) -> None:
        super().__init__(f"store {store_id} is still being cleaned up")


class BackupNotFound(LookupError):
    """No such backup of this store (another store's is not found either)."""

    def __init__(self, backup_id: uuid.UUID) -> None:
        super().__init__(f"backup {backup_id} of this store does not exist")


class BackupNotRestorable(Exception):
    """The backup is not complete (running, failed, deleted), or goes with its store, which
    is being deleted: there is nothing whole to restore or copy."""

    def __init__(self, backup: StoreBackup, why: str = "") -> None:
        self.backup_id = backup.id
        self.why = why or f"is {backup.status.value}: only a complete one is restored or copied"
        super().__init__(f"backup {backup.id} {self.why}")


class CopyCannotBeMadeAgain(Exception):
    """A failed copy retried once its backup cannot be copied (deleted, damaged, or going
    with its store): its owner asked for a retry, not for a copy of that backup."""

    def __init__(self, store: Store, lost: BackupNotRestorable) -> None:
        super().__init__(
            f"store {store.id} cannot be made again from backup {lost.backup_id}, which "
            f"{lost.why}. Delete the store, or make a new one from another backup."
        )


class NothingToRollBackTo(Exception):
    """A rollback of a store whose release has no earlier revision of its owner's (its
    first, or the warm pool's before it): refused at once, rather than failing later."""

    def __init__(self, store: Store) -> None:
        # Its revision is named: a store claimed from the pool shows revision 2, and was told
        # it ran its release's first (a user's review).
        if store.release_revision is None:
            super().__init__(f"store {store.id} has no release revision recorded to return to")
            return
        pool = " (the one before it was the warm pool's)" if (store.first_revision or 1) > 1 else ""
        super().__init__(
            f"store {store.id} runs revision {store.release_revision} of its release, the "
            f"first made for it{pool}: there is none of its own earlier to return to"
        )


class CopyUnderWay(Exception):
    """A new store is being made from a backup: neither the backup nor its store can be
    deleted until that store is made (it reads the backup until then)."""

    def __init__(self, kind: Literal["store", "backup"], id: uuid.UUID, copy: Store) -> None:
        self.kind = kind
        source = "it" if kind == "backup" else "one of its backups"
        super().__init__(
            f"{kind} {id} cannot be deleted while store {copy.id} is being made from {source};"
            " it can be once that store is made (ready, or failed)"
        )


class BackupInUse(Exception):
    """The backup is being made, or restored from: it cannot be deleted now (409)."""

    def __init__(self, backup: StoreBackup, why: str) -> None:
        super().__init__(f"backup {backup.id} is {why}: it can be deleted once that ends")
        self.backup = backup


class InvalidTransition(Exception):
    """The store's status does not allow the change asked for."""

    def __init__(self, store: Store, target: StoreStatus, allowed_from: Collection[StoreStatus]):
        self.current = store.status
        self.target = target
        self.allowed_from = frozenset(allowed_from)
        # Its deletion asked for: it is deleted as its work ends, or once a store made from
        # its backup is, whatever it does meanwhile.
        self.deleted_next = store.delete_requested_at is not None and store.status in (
            DELETED_AFTER_ITS_WORK | DELETED_AFTER_ITS_COPIES
        )
        super().__init__(f"a {store.status.value} store cannot become {target.value}")


async def request(
    uow: UnitOfWork,
    *,
    tenant_id: uuid.UUID | None,
    name: str,
    slug: str,
    type: str,
    simulated: bool,
    settings: StoreSettings,
    from_backup: StoreBackup | None = None,
) -> Store:
    """A new store, queued; written as the unit commits, so a taken slug fails the commit
    (``UnitOfWork.insert``). Without a tenant it is made for the warm pool. ``from_backup``,
    a complete backup of another store of the same tenant: the new store is made with that
    store's content (a clone)."""
    source = None if from_backup is None else await _copyable(uow, from_backup)
    store = Store(
        tenant_id=tenant_id,
        name=name,
        slug=slug,
        namespace=namespace_for(slug),
        origin="pool" if tenant_id is None else "backup" if from_backup else "cold",
        from_backup_id=from_backup.id if from_backup else None,
        type=type,
        status=S.QUEUED,
        simulated=simulated,
        settings=settings.model_dump(mode="json"),
        correlation_id=uuid.uuid4().hex,
    )
    uow.announce(store, Requested(store=_summary(store, source)))
    uow.dispatch(store, Lane.PROVISION)
    uow.insert(store)
    return store


async def claim(
    uow: UnitOfWork,
    *,
    tenant_id: uuid.UUID,
    name: str,
    slug: str,
    type: str,
    simulated: bool,
    chart_version: str,
    base_domain: str,
    settings: StoreSettings,
) -> Store | None:
    """Give the oldest pooled store that fits (its type, the platform's chart version and
    base domain) to an owner, as a new store of theirs: queued for its personalise recipe.
    None when none fits.

    Pooled stores another transaction is claiming (or retiring) are skipped, not waited
    for, so concurrent claims on any replica each get a different store or none."""
    store = (
        await uow.session.exec(
            select(Store)
            .where(col(Store.status) == S.POOLED, col(Store.tenant_id).is_(None))
            .where(col(Store.type) == type, col(Store.simulated) == simulated)
            .where(col(Store.chart_version) == chart_version)
            .where(made_under(base_domain))
            .order_by(col(Store.created_at))
            .limit(1)
            .with_for_update(skip_locked=True)
        )
    ).first()
    if store is None:
        return None
    transition(store, S.QUEUED, {S.POOLED})
    now = utcnow()
    store.tenant_id, store.name, store.slug = tenant_id, name, slug
    store.settings = settings.model_dump(mode="json")
    # The owner's store starts now, with its own correlation id: the pool's history is not
    # theirs (and its events were never shown to any tenant).
    store.created_at = store.claimed_at = store.requested_at = now
    store.ready_at = store.storefront_url = store.admin_url = None
    store.correlation_id = uuid.uuid4().hex
    store.replays = 0
    # Announced before it is written, as a new store is: one UPDATE, with the event's time.
    uow.emit(store, Requested(store=_summary(store)))
    await uow.session.flush()  # a taken slug fails here (a new store's, at the commit)
    uow.dispatch(store, Lane.PERSONALISE)
    return store


async def verify_again(uow: UnitOfWork, store_id: uuid.UUID) -> Store:
    """Verify an idle pooled store again (a test order), so a store that broke while it
    waited is never handed out: it is provisioning meanwhile, which no claim takes, and ends
    pooled again, or failed (its clean-up follows and the pool keeper replaces it)."""
    store = await _locked(uow, store_id)
    if store.tenant_id is not None:
        raise InvalidTransition(store, S.PROVISIONING, ())  # claimed meanwhile: not the pool's
    transition(store, S.PROVISIONING, {S.POOLED})
    await uow.session.exec(
        delete(StoreStep).where(
            col(StoreStep.store_id) == store.id, col(StoreStep.phase) == "reverify"
        )
    )
    uow.session.add(store)
    uow.dispatch(store, Lane.PROVISION)
    return store


async def fall_back_to_cold(uow: UnitOfWork, store_id: uuid.UUID, reason: str) -> Store:
    """A claimed store that cannot be made its owner's (its personalisation failed for good):
    what the pool made is discarded (a store of nobody's, in the claimed store's namespace,
    deleted like any other) and the owner's store, the same id, starts again from scratch in
    a namespace of its own, queued for the provision lane."""
    store = await _locked(uow, store_id)
    if store.claimed_at is None:
        raise InvalidTransition(store, S.QUEUED, ())  # only a claim falls back
    transition(store, S.QUEUED, {S.PROVISIONING})
    discarded = Store(
        tenant_id=None,
        name=store.name,
        slug=f"discarded-{uuid.uuid4().hex[:12]}",
        namespace=store.namespace,
        origin="pool",
        type=store.type,
        status=S.DELETING,
        delete_requested_at=utcnow(),
        simulated=store.simulated,
        settings=store.settings,
        correlation_id=uuid.uuid4().hex,
    )
    await _forget_the_attempt(uow, store)
    await uow.session.flush()  # the namespace is given up before the discarded store takes it
    uow.session.add(discarded)
    await uow.session.flush()
    uow.emit(discarded, DeleteRequested())
    uow.dispatch(discarded, Lane.REMOVAL)
    uow.emit(store, FellBack(reason=reason))
    uow.dispatch(store, Lane.PROVISION)
    return store


async def start(uow: UnitOfWork, store_id: uuid.UUID) -> Store:
    """A provisioner takes a queued store."""
    store = await _locked(uow, store_id)
    transition(store, S.PROVISIONING, {S.QUEUED})
    uow.session.add(store)
    return store


async def make_ready(
    uow: UnitOfWork, store_id: uuid.UUID, *, storefront_url: str, admin_url: str
) -> Store:
    """Every provisioning step is done and the test order was placed: the store is its
    owner's to use, or waits in the warm pool for one."""
    store = await _locked(uow, store_id)
    # A pooled store keeps its addresses too (nobody is shown them; a claim clears them):
    # they tell under which base domain it was made.
    store.storefront_url, store.admin_url = storefront_url, admin_url
    if store.tenant_id is None:
        transition(store, S.POOLED, {S.PROVISIONING})
        store.verified_at = utcnow()
        uow.emit(store, Pooled(chart_version=store.chart_version))
        return store
    transition(store, S.READY, {S.PROVISIONING})
    uow.emit(
        store,
        Ready(
            storefront_url=storefront_url,
            admin_url=admin_url,
            chart_version=store.chart_version,
            revision=store.release_revision,
        ),
    )
    return store


async def fail(uow: UnitOfWork, store_id: uuid.UUID, reason: str, *, lost: bool = False) -> Store:
    """Fail a store with a reason meant for people: one whose provisioning cannot finish, or
    (``lost``) a ready or pooled one whose resources vanished from the cluster. Its clean-up
    follows on the removal lane; the store keeps the step it failed at."""
    store = await _locked(uow, store_id)
    step = store.step_name
    transition(store, S.FAILED, {S.READY, S.POOLED} if lost else UNFINISHED)
    store.failure_reason = reason
    uow.emit(store, Failed(reason=reason, step=step))
    uow.dispatch(store, Lane.REMOVAL)
    uow.once_committed(STORES_FAILED.labels("lost" if lost else step or "before_any_step").inc)
    return store


async def mark_cleaned_up(uow: UnitOfWork, store_id: uuid.UUID) -> Store:
    """Nothing the failed store made is left in the cluster. Saying so twice changes nothing."""
    store = await _locked(uow, store_id)
    if store.status is not S.FAILED:
        raise InvalidTransition(store, S.FAILED, {S.FAILED})
    if store.cleaned_up_at is None:
        store.cleaned_up_at = utcnow()
        # Its release and storefront are gone: nothing to show for them, or to link to.
        store.chart_version = store.release_revision = None
        store.storefront_url = store.admin_url = None
        uow.emit(store, CleanedUp())
    return store


async def retry(uow: UnitOfWork, store_id: uuid.UUID) -> Store:
    """Make a failed store again from scratch, under the same id, name and address, once its
    clean-up has finished: queued for the provision lane as a new store is, with nothing of
    the failed attempt kept but the store itself (its audit trail and events stay)."""
    found = await uow.session.get(Store, store_id)
    from_backup = None  # a copy's, made again from the same backup
    if found is not None and found.from_backup_id is not None:
        # A copy: its source first, as a backup's deletion or damage locks it before its
        # copies (_copies_lose_their_source): in the other order, the two could deadlock.
        from_backup = await uow.session.get(StoreBackup, found.from_backup_id)
        assert from_backup is not None  # a backup's row is never removed
        await _locked(uow, from_backup.store_id)
    store = await _locked(uow, store_id)
    if store.status is S.FAILED and store.cleaned_up_at is None and not store.delete_requested_at:
        raise StillCleaningUp(store_id)  # (one to be deleted is refused for good, below)
    transition(store, S.QUEUED, {S.FAILED})
    try:
        source = None if from_backup is None else await _copyable(uow, from_backup)
    except BackupNotRestorable as lost:
        raise CopyCannotBeMadeAgain(store, lost) from None
    await _forget_the_attempt(uow, store)
    store.failure_reason = store.cleaned_up_at = store.ready_at = None
    store.storefront_url = store.admin_url = None
    store.change = store.rollback_revision = None
    store.lease_owner, store.lease_expires_at, store.replays = None, None, 0
    store.correlation_id = uuid.uuid4().hex  # a new attempt: its events are a run of their own
    store.requested_at = utcnow()  # its owner's wait starts again
    uow.emit(store, Requested(store=_summary(store, source)))
    uow.dispatch(store, Lane.PROVISION)
    return store


async def request_deletion(uow: UnitOfWork, store_id: uuid.UUID) -> tuple[Store, bool]:
    """Delete a store (cancelling it while queued or provisioning; once its work ends while
    a change, a backup or a restore runs; once a store being made from its backup is made,
    since its backups go with it); returns it and whether this asked for its deletion.
    Asking again once asked changes nothing: a client that sends a DELETE again (its answer
    lost) is told how it is."""
    store = await _locked(uow, store_id)
    if store.status in (S.DELETING, S.DELETED):
        return store, False
    copy = await copy_reading_from(uow.session, store.id)
    waits = store.status in DELETED_AFTER_ITS_WORK or (
        copy is not None and store.status in DELETED_AFTER_ITS_COPIES
    )
    if waits and store.delete_requested_at is not None:
        return store, False  # asked for already
    if waits:
        store.delete_requested_at = utcnow()
        uow.emit(store, DeleteQueued(status=store.status))
        await _copies_lose_their_source(uow, col(StoreBackup.store_id) == store.id, "store_deleted")
        return store, True
    if copy is not None:
        raise CopyUnderWay("store", store.id, copy)  # queued or provisioning: rare enough
    transition(store, S.DELETING, DELETABLE)
    uow.emit(store, DeleteRequested())
    await _copies_lose_their_source(uow, col(StoreBackup.store_id) == store.id, "store_deleted")
    uow.dispatch(store, Lane.REMOVAL)
    return store, True


async def _announce_end(uow: UnitOfWork, store: Store, ended: EventData) -> None:
    """Announce the end of a store's work, the store made ready: deleted at once if that was
    asked for meanwhile, its deletion announced after the end (whose event then offers
    nothing: the store is deleting). While a store is being made from its backup, the
    deletion waits for it still (the reaper starts it, ``delete_as_asked``)."""
    if store.delete_requested_at is None or await copy_reading_from(uow.session, store.id):
        uow.emit(store, ended)
        return
    transition(store, S.DELETING, {S.READY})
    uow.emit(store, ended)
    uow.emit(store, DeleteRequested())
    uow.dispatch(store, Lane.REMOVAL)


async def retire(uow: UnitOfWork, store_id: uuid.UUID) -> Store:
    """Take a store out of the warm pool (its chart is stale, or it yields to owners): deleted
    like any store, but only while no owner has claimed it."""
    store = await _locked(uow, store_id)
    if store.tenant_id is not None:
        raise InvalidTransition(store, S.DELETING, ())  # an owner's now: never the pool's to drop
    transition(store, S.DELETING, {S.QUEUED, S.POOLED})
    uow.emit(store, DeleteRequested())
    uow.dispatch(store, Lane.REMOVAL)
    return store


async def mark_deleted(uow: UnitOfWork, store_id: uuid.UUID) -> Store:
    """The store's namespace and its backups are gone: nothing of it is left (its backups'
    rows stay, as the store's does, marked deleted)."""
    store = await _locked(uow, store_id)
    transition(store, S.DELETED, {S.DELETING})
    store.storefront_url = store.admin_url = None  # gone with its ingress
    store.complete_backups = 0
    await uow.session.exec(
        update(StoreBackup)
        .where(col(StoreBackup.store_id) == store.id)
        .values(status=BackupStatus.DELETED)
    )
    uow.emit(store, Deleted())
    return store


_BACKED_UP_AS = {
    "upgrade": BackupTrigger.BEFORE_UPGRADE,
    "rollback": BackupTrigger.BEFORE_ROLLBACK,
    "settings": BackupTrigger.BEFORE_SETTINGS,
}


async def start_change(
    uow: UnitOfWork, store_id: uuid.UUID, change: Change, chosen: StoreSettingsIn | None = None
) -> Store:
    """Upgrade a ready store to the platform's chart, roll it back, or give it the settings
    ``chosen`` (laid over its own); the change is recorded (``store_changes``) until it ends,
    and so is the backup of the store taken first. A settings change writes the new settings
    to the store at once (its recipe applies what the row holds) and keeps the old on the
    change, to be put back if it fails."""
    store = await _locked(uow, store_id)
    deleted_next = store.delete_requested_at is not None  # refused as such, below
    rollback = change == "rollback" and store.status is S.READY and not deleted_next
    if rollback and "rollback" not in actions_of(store):
        raise NothingToRollBackTo(store)
    transition(store, S.UPDATING, {S.READY})
    as_it_is = store.settings
    if change == "settings":
        # Asked for again as they are, they are set again: the shop may hold others (changed
        # in WooCommerce, or a settings change that failed half-way). Those not asked for
        # are left as the shop has them (``StoreChange.settings_asked``).
        new = StoreSettings.model_validate(store.settings).with_choices(chosen)
        store.settings = new.model_dump(mode="json")
    store.change = change
    store.rollback_revision = None
    # Each change runs its steps afresh: forget the journal of an earlier one.
    await uow.session.exec(
        delete(StoreStep).where(col(StoreStep.store_id) == store.id, col(StoreStep.phase) == change)
    )
    settings_before = as_it_is if change == "settings" else None
    asked = chosen.named() if change == "settings" and chosen is not None else None
    uow.session.add(
        StoreChange(
            store_id=store.id, kind=change, settings_before=settings_before, settings_asked=asked
        )
    )
    backup = _new_backup(uow, store, _BACKED_UP_AS[change], as_it_is)
    told = _told(store.settings) if change == "settings" else None
    uow.emit(store, ChangeRequested(change=change, backup_id=backup.id, settings=told))
    uow.dispatch(store, Lane.CHANGE)
    return store


async def end_change(
    uow: UnitOfWork,
    store_id: uuid.UUID,
    failure: str | None,
    backup: Manifest | str | NeverBegun | None,
) -> StoreChange:
    """End the store's upgrade, rollback or settings change, recording and announcing how it
    went, and the backup taken first: complete as ``backup``'s manifest says, failed for the
    reason it gives, deleted if its step never began, or failed if the change ended before
    it was made. The store is ready
    either way: a failed change leaves what helm restored (a settings change: the settings
    it had), and the change its reason."""
    store = await _locked(uow, store_id)
    record = await _change_under_way(uow, store)
    transition(store, S.READY, {S.UPDATING})
    await _end_backup_taken_first(
        uow, store, backup, "the change ended before the store was backed up"
    )
    change = _change_kind(record.kind)
    record.finished_at = utcnow()
    record.result = "failed" if failure is not None else "changed"
    record.reason = failure
    record.chart_version, record.revision = store.chart_version, store.release_revision
    uow.session.add(record)
    ended: EventData
    if failure is not None and record.settings_before is not None:
        store.settings = record.settings_before
    told = _told(store.settings) if change == "settings" else None
    if failure is not None:
        ended = ChangeFailed(change=change, reason=failure, settings=told)
    else:
        revision = store.release_revision or 0
        ended = Changed(
            change=change,
            chart_version=store.chart_version or "",
            revision=revision,
            settings=told,
        )
    await _announce_end(uow, store, ended)
    return record


def _told(settings: dict[str, Any]) -> dict[str, Any]:
    """A store's settings as its events tell them: all but the admin's email address, which
    the API shows its readers and the event streams, kept for days, do not."""
    return {name: value for name, value in settings.items() if name != "admin_email"}


def _change_kind(kind: str) -> Change:
    """A change record's kind as its events name it (an unknown one, from before kinds were
    recorded: an upgrade)."""
    return cast(Change, kind) if kind in get_args(Change) else "upgrade"


def _new_backup(
    uow: UnitOfWork, store: Store, trigger: BackupTrigger, settings: dict[str, Any] | None = None
) -> StoreBackup:
    """A backup of ``store`` begun, recording the settings its WordPress options hold
    (``settings``, those the store had before a change that just wrote new ones): a restore
    gives them back, and a copy is made with them."""
    backup = StoreBackup(store_id=store.id, trigger=trigger, settings=settings or store.settings)
    uow.session.add(backup)
    return backup


async def start_backup(
    uow: UnitOfWork, store_id: uuid.UUID, trigger: OwnBackupTrigger
) -> StoreBackup:
    """Back a ready store up; the backup is recorded (``store_backups``) from now on."""
    store = await _locked(uow, store_id)
    transition(store, S.BACKING_UP, {S.READY})
    await uow.session.exec(
        delete(StoreStep).where(
            col(StoreStep.store_id) == store.id, col(StoreStep.phase) == "backup"
        )
    )
    backup = _new_backup(uow, store, trigger)
    uow.emit(store, BackupStarted(backup_id=backup.id, trigger=trigger))
    uow.dispatch(store, Lane.CHANGE)
    return backup


async def end_backup(
    uow: UnitOfWork, store_id: uuid.UUID, outcome: Manifest | str, *, failed_as: str = "failed"
) -> StoreBackup:
    """End the store's backup: complete, as ``outcome``'s manifest says, or failed for the
    reason it gives (counted as ``failed_as``: ``not_made`` when no storage refused it). The
    store is ready either way."""
    store = await _locked(uow, store_id)
    backup = await backup_under_way(uow.session, store.id)
    transition(store, S.READY, {S.BACKING_UP})
    await _end_backup_record(uow, store, backup, outcome, failed_as=failed_as)
    if isinstance(outcome, str):
        await _announce_end(uow, store, BackupFailed(backup_id=backup.id, reason=outcome))
    else:
        await _announce_end(uow, store, BackupCompleted(backup_id=backup.id, size=outcome.size))
    return backup


class NeverBegun:
    """The outcome of a backup a change or a restore takes first whose step never began (the
    work ended before it): nothing of it was ever stored."""


NEVER_BEGUN = NeverBegun()


async def _end_backup_taken_first(
    uow: UnitOfWork, store: Store, outcome: Manifest | str | NeverBegun | None, unmade: str
) -> None:
    """The backup a change or a restore took of the store first: complete as ``outcome``'s
    manifest says, failed for the reason it gives (it was tried, and refused), deleted if its
    step never began (``unmade`` its reason: never made, it is not listed; each restore of a
    damaged backup, refused before its safety backup, listed one more failed backup: a
    user's review), or failed (``unmade``) where nobody says (the reaper ending the work)."""
    with suppress(LookupError):  # none left running: ended already
        backup = await backup_under_way(uow.session, store.id)
        if isinstance(outcome, Manifest | str):
            await _end_backup_record(uow, store, backup, outcome)
            return
        # No sign of the storage refusing it (WooStoreBackupsFailing).
        await _end_backup_record(uow, store, backup, unmade, failed_as="not_made")
        if outcome is NEVER_BEGUN:
            backup.status = BackupStatus.DELETED


async def _count_backups(uow: UnitOfWork, store: Store) -> None:
    """Count the store's complete backups again, after one's status changed in this unit (a
    restore is offered while there is one). Counted, not added to: a count kept by adding
    and taking one would keep any miscount for good, such as a backup an older release
    ended while this one was being rolled out."""
    counted = select(func.count()).where(
        col(StoreBackup.store_id) == store.id, col(StoreBackup.status) == BackupStatus.COMPLETE
    )
    store.complete_backups = (await uow.session.exec(counted)).one()


async def _end_backup_record(
    uow: UnitOfWork,
    store: Store,
    backup: StoreBackup,
    outcome: Manifest | str,
    *,
    failed_as: str = "failed",
) -> None:
    """``store``'s ``backup`` complete, with what its manifest says; or failed, for the
    reason given (counted as ``failed_as``). Its complete backups are counted again."""
    backup.finished_at = utcnow()
    if isinstance(outcome, str):
        backup.status, backup.reason = BackupStatus.FAILED, outcome
        uow.once_committed(BACKUPS_ENDED.labels(backup.trigger.value, failed_as).inc)
    else:
        backup.status, backup.size = BackupStatus.COMPLETE, outcome.size
        uow.once_committed(BACKUPS_ENDED.labels(backup.trigger.value, "complete").inc)
        backup.chart_version = outcome.chart_version
        backup.wordpress_version = outcome.wordpress_version
        backup.woocommerce_version = outcome.woocommerce_version
    uow.session.add(backup)
    await _count_backups(uow, store)


async def start_restore(uow: UnitOfWork, store_id: uuid.UUID, backup_id: uuid.UUID) -> Store:
    """Return a ready store to one of its complete backups; the store as it is now is backed
    up first (the safety backup, recorded from now on), and the restore recorded as a change
    (``store_changes``, kind ``restore``) until it ends."""
    store = await _locked(uow, store_id)
    # The store's state first: to a store still being made, which has no backup of its own,
    # "that backup does not exist" (another store's, say) hid why it cannot be restored.
    transition(store, S.RESTORING, {S.READY})
    backup = await uow.session.get(StoreBackup, backup_id)
    if backup is None or backup.store_id != store.id:
        raise BackupNotFound(backup_id)
    if backup.status is not BackupStatus.COMPLETE:
        raise BackupNotRestorable(backup)
    store.change = "restore"
    await uow.session.exec(
        delete(StoreStep).where(
            col(StoreStep.store_id) == store.id, col(StoreStep.phase) == "restore"
        )
    )
    safety = _new_backup(uow, store, BackupTrigger.BEFORE_RESTORE)
    uow.session.add(StoreChange(store_id=store.id, kind="restore", backup_id=backup.id))
    uow.emit(store, RestoreRequested(backup_id=backup.id, safety_backup_id=safety.id))
    uow.dispatch(store, Lane.CHANGE)
    return store


async def end_restore(
    uow: UnitOfWork,
    store_id: uuid.UUID,
    failure: str | None,
    safety: Manifest | str | NeverBegun | None,
) -> StoreChange:
    """End the store's restore, recording and announcing how it went, and its safety backup:
    complete as ``safety``'s manifest says, failed for the reason it gives, deleted if its
    step never began, or failed if the restore ended before it was made. The store
    is ready either way."""
    store = await _locked(uow, store_id)
    record = await _change_under_way(uow, store)
    transition(store, S.READY, {S.RESTORING})
    record.finished_at = utcnow()
    record.result = "failed" if failure is not None else "changed"
    record.reason = failure
    uow.session.add(record)
    backup_id = record.backup_id or uuid.UUID(int=0)  # (a restore always names its backup)
    await _end_backup_taken_first(
        uow, store, safety, "the restore ended before the store was backed up"
    )
    if failure is not None:
        await _announce_end(uow, store, RestoreFailed(backup_id=backup_id, reason=failure))
        return record
    # The shop holds the backup's WordPress options again: the settings they were.
    restored = await uow.session.get(StoreBackup, backup_id)
    if restored is not None and restored.settings is not None:
        store.settings = restored.settings
    await _announce_end(uow, store, Restored(backup_id=backup_id, settings=_told(store.settings)))
    return record


async def delete_backup(
    uow: UnitOfWork, store_id: uuid.UUID, backup_id: uuid.UUID, reason: BackupDeletion
) -> tuple[StoreBackup, bool]:
    """Delete one of a store's backups: from now on it is never listed or restored, and its
    data is removed from the store's repository by the change lane once the store is not
    busy (its work is serialised with the store's backups and restores; the reaper sends
    it again if lost). Returns it, and whether this deleted it: deleting one already
    deleting, or deleted (a retry whose first answer was lost), changes nothing."""
    store = await _locked(uow, store_id)
    backup = await uow.session.get(StoreBackup, backup_id)
    if backup is None or backup.store_id != store.id:
        raise BackupNotFound(backup_id)
    if backup.status in (BackupStatus.DELETING, BackupStatus.DELETED):
        return backup, False
    if backup.status is BackupStatus.RUNNING:
        raise BackupInUse(backup, "being made")
    restoring = await change_under_way(uow.session, store.id)
    if restoring is not None and restoring.backup_id == backup.id:
        raise BackupInUse(backup, "being restored")
    if (copy := await _copy_under_way(uow.session, col(StoreBackup.id) == backup.id)) is not None:
        raise CopyUnderWay("backup", backup.id, copy)
    backup.status = BackupStatus.DELETING
    uow.session.add(backup)
    await _count_backups(uow, store)
    uow.emit(store, BackupDeleted(status=store.status, backup_id=backup.id, reason=reason))
    await _copies_lose_their_source(uow, col(StoreBackup.id) == backup.id, "backup_deleted")
    uow.dispatch(store, Lane.CHANGE)
    return backup, True


async def mark_backup_damaged(uow: UnitOfWork, backup_id: uuid.UUID, damage: str) -> bool:
    """A complete backup was found damaged as it was read (``damage`` says how): it is never
    restored or copied again, and stays listed as damaged until it is deleted. Only a
    complete one: found again by another reader, deleted meanwhile, or not complete yet (the
    backup under way, whose damaged part is stored again), nothing changes. Whether it was
    marked."""
    backup = await uow.session.get(StoreBackup, backup_id)
    if backup is None:
        return False
    store = await _locked(uow, backup.store_id)
    await uow.session.refresh(backup)  # as it is now the lock is held
    if backup.status is not BackupStatus.COMPLETE:
        return False
    backup.status, backup.reason = BackupStatus.DAMAGED, damage
    uow.session.add(backup)
    await _count_backups(uow, store)
    uow.once_committed(BACKUPS_DAMAGED.inc)
    uow.emit(store, BackupDamaged(status=store.status, backup_id=backup.id, reason=damage))
    await _copies_lose_their_source(uow, col(StoreBackup.id) == backup.id, "backup_damaged")
    return True


async def mark_backup_deleted(uow: UnitOfWork, backup_id: uuid.UUID) -> None:
    """The deleted backup's data is gone from the store's repository."""
    await uow.session.exec(
        update(StoreBackup)
        .where(col(StoreBackup.id) == backup_id)
        .where(col(StoreBackup.status) == BackupStatus.DELETING)
        .values(status=BackupStatus.DELETED)
    )


async def backups_deleting(session: AsyncSession, store_id: uuid.UUID) -> list[uuid.UUID]:
    """The store's deleted backups whose data is still to be removed, oldest first."""
    found = await session.exec(
        select(StoreBackup.id)
        .where(col(StoreBackup.store_id) == store_id)
        .where(col(StoreBackup.status) == BackupStatus.DELETING)
        .order_by(col(StoreBackup.requested_at))
    )
    return list(found)


async def backup_under_way(session: AsyncSession, store_id: uuid.UUID) -> StoreBackup:
    """The store's running backup: what a backing-up store's worker makes."""
    found = (
        await session.exec(
            select(StoreBackup)
            .where(col(StoreBackup.store_id) == store_id)
            .where(col(StoreBackup.status) == BackupStatus.RUNNING)
            .order_by(col(StoreBackup.requested_at).desc())
            .limit(1)
        )
    ).first()
    if found is None:
        raise LookupError(f"store {store_id} has no backup under way")
    return found


async def change_under_way(session: AsyncSession, store_id: uuid.UUID) -> StoreChange | None:
    """The store's open change record: its upgrade, rollback or restore under way."""
    found = await session.exec(
        select(StoreChange)
        .where(col(StoreChange.store_id) == store_id)
        .where(col(StoreChange.result).is_(None))
        .order_by(col(StoreChange.requested_at).desc())
        .limit(1)
    )
    return found.first()


async def _change_under_way(uow: UnitOfWork, store: Store) -> StoreChange:
    """The store's open change record (one made before changes were recorded: a new one)."""
    found = await change_under_way(uow.session, store.id)
    return found or StoreChange(store_id=store.id, kind=store.change or "upgrade")


async def _copyable(uow: UnitOfWork, backup: StoreBackup) -> Store:
    """The store of ``backup``, which a store is to be made from: refused unless the backup
    is complete and its store is not being deleted (which deletes the backup too). Its
    store's row stays locked until the copy is recorded: deleting either (``delete_backup``,
    ``request_deletion``, which lock it too) waits, then finds the copy under way, and
    refuses."""
    source = await _locked(uow, backup.store_id)
    await uow.session.refresh(backup)  # as it is now the lock is held
    if backup.status is not BackupStatus.COMPLETE:
        raise BackupNotRestorable(backup)
    if source.status in (S.DELETING, S.DELETED):
        raise BackupNotRestorable(
            backup, f"goes with store {source.id}, which is {source.status.value}"
        )
    if source.delete_requested_at is not None:
        raise BackupNotRestorable(
            backup, f"goes with store {source.id}, whose deletion was asked for"
        )
    return source


def _summary(store: Store, source: Store | None = None) -> StoreSummary:
    """The store as its ``requested`` event shows it; a copy's names its ``source``, so a
    client following events says whose copy it is without reading the store."""
    summary = StoreSummary.model_validate(store, from_attributes=True)
    if source is not None:
        summary.from_store = StoreRef(id=source.id, name=source.name)
    return summary


# The copies a retry could concern: failed, or not made yet (and so may fail).
_MAY_BE_RETRIED = UNFINISHED | {S.FAILED}


async def _copies_lose_their_source(
    uow: UnitOfWork, backups: ColumnElement[bool], reason: SourceLoss
) -> None:
    """The stores made from one of ``backups`` can be made from it no more (``reason``):
    none of them is offered a retry from now on. Each copy not made yet, or failed, is told
    why (``source_lost``, after the event of its cause): one offered a retry would be offered
    it still by a client drawing it from its events, and one failing later would never say
    why it is not. Each copy is locked as it is read, after the backups' store (as ``retry``
    locks them), so one failing meanwhile is either seen failed here or reads the mark as it
    fails."""
    copies = await uow.session.exec(
        select(Store)
        .where(col(Store.from_backup_id).in_(select(StoreBackup.id).where(backups)))
        .where(col(Store.from_backup_lost).is_(False))
        .with_for_update()
        .execution_options(populate_existing=True)  # as it is now the lock is held
    )
    for copy in copies.all():
        copy.from_backup_lost = True
        uow.session.add(copy)
        if copy.status in _MAY_BE_RETRIED:
            assert copy.from_backup_id is not None  # (selected so)
            uow.emit(
                copy, SourceLost(status=copy.status, backup_id=copy.from_backup_id, reason=reason)
            )


async def copy_reading_from(session: AsyncSession, store_id: uuid.UUID) -> Store | None:
    """A store being made from one of the store's backups: until it is made it reads the
    store's repository, which nothing may prune meanwhile (restic's prune locks it whole,
    and the copy's reading would fail)."""
    return await _copy_under_way(session, col(StoreBackup.store_id) == store_id)


async def _copy_under_way(session: AsyncSession, backups: ColumnElement[bool]) -> Store | None:
    """A store being made from one of ``backups``: it reads the backup until it is made."""
    found = await session.exec(select(Store).where(_copies_being_made(Store, backups)).limit(1))
    return found.first()


def _copies_being_made(copy: type[Store], backups: ColumnElement[bool]) -> ColumnElement[bool]:
    """``copy`` (Store, or an alias of it) is being made from one of ``backups``: it reads
    the backup until it is made."""
    # Correlated past ``copy`` to the query asking, when ``backups`` names its stores.
    made_from = select(StoreBackup.id).where(backups).correlate_except(StoreBackup)
    return col(copy.from_backup_id).in_(made_from) & col(copy.status).in_(
        [S.QUEUED, S.PROVISIONING]
    )


async def _forget_the_attempt(uow: UnitOfWork, store: Store) -> None:
    """What an earlier attempt made of ``store`` is not its any more (a claim that fell back,
    a failed store retried): it is made from scratch, cold, in a namespace of its own slug,
    and every step runs afresh."""
    store.namespace = namespace_for(store.slug)  # a claimed store's was the pool's
    store.origin = "backup" if store.from_backup_id else "cold"
    store.claimed_at = None
    store.chart_version = store.release_revision = store.first_revision = None
    store.admin_password_encrypted = store.verified_at = None
    store.provisioning_started_at = None
    await uow.session.exec(delete(StoreStep).where(col(StoreStep.store_id) == store.id))


async def _locked(uow: UnitOfWork, store_id: uuid.UUID) -> Store:
    """The store, its row locked until the transaction ends."""
    store = await uow.session.get(Store, store_id, with_for_update=True, populate_existing=True)
    if store is None:
        raise StoreNotFound(store_id)
    return store


def transition(
    store: Store, target: StoreStatus, allowed_from: Collection[StoreStatus] | None = None
) -> None:
    """Move ``store`` to ``target``, with what every such move implies, if the state machine
    allows it (and the change under way allows it from this status: ``allowed_from``). Only
    the changes above call it; tests use it to set a store up."""
    allowed_from = allowed_from or frozenset(s for s, to in ALLOWED.items() if target in to)
    if store.status not in allowed_from or target not in ALLOWED[store.status]:
        raise InvalidTransition(store, target, allowed_from)
    # Waiting to be deleted: nothing but its deletion, or its loss (its namespace vanished).
    waiting = store.delete_requested_at is not None and store.status in DELETED_AFTER_ITS_COPIES
    if waiting and target not in (S.DELETING, S.FAILED):
        raise InvalidTransition(store, target, allowed_from)
    now = utcnow()
    store.status = target
    store.updated_at = now
    store.waiting_cause = None  # the wait was the step's, under the status left
    # Work starting, or waiting to start (claimed from the pool, retried): none done yet.
    if target in (S.QUEUED, S.PROVISIONING, S.UPDATING, S.BACKING_UP, S.RESTORING, S.DELETING):
        store.progress = 0.0
    if target is S.QUEUED:
        store.queued_at = now  # its place in the queue counts from here, not from its making
    elif target is S.PROVISIONING:
        store.provisioning_started_at = now
    elif target in (S.READY, S.POOLED):
        store.ready_at = store.ready_at or now  # first ready; an upgrade does not reset it
        store.progress = 1.0
        store.change = store.rollback_revision = None
    elif target is S.DELETING:
        store.delete_requested_at = store.delete_requested_at or now
    elif target is S.DELETED:
        store.deleted_at = now
    if target in (S.READY, S.POOLED, S.QUEUED, S.DELETED, S.DELETING):
        store.step_name = store.step_title = store.step_index = store.step_total = None
