"""Which status may follow which, and so what a client may ask of a store in each.

``ALLOWED`` is the store lifecycle's table of transitions (``lifecycle.py`` makes them, and
checks each against it). ``store_actions`` derives from it the store resource's ``actions``,
which status-changing events carry too: advice for clients (which buttons the dashboard
shows), so no client keeps its own copy of the table. It enforces nothing: each request is
checked again when it is made (the lifecycle's transitions, :func:`credentials_readable`) and
refused with a 409.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from woostore_shared.vocabulary import StoreStatus

if TYPE_CHECKING:  # the events the notifier forwards name the actions, without the ORM
    from woostore_shared.models import Store

S = StoreStatus

ALLOWED: dict[StoreStatus, frozenset[StoreStatus]] = {
    # deleting a queued or provisioning store cancels it
    S.QUEUED: frozenset({S.PROVISIONING, S.FAILED, S.DELETING}),
    # queued: a claimed store that could not be personalised, made from scratch instead
    S.PROVISIONING: frozenset({S.READY, S.POOLED, S.QUEUED, S.FAILED, S.DELETING}),
    # failed: its namespace vanished
    S.READY: frozenset({S.DELETING, S.FAILED, S.UPDATING, S.BACKING_UP, S.RESTORING}),
    # queued: claimed by an owner; provisioning: verified again while idle; deleting: retired
    # from the pool (a stale chart, a smaller pool)
    S.POOLED: frozenset({S.QUEUED, S.PROVISIONING, S.DELETING, S.FAILED}),
    # An upgrade or rollback ends ready either way: a failed one leaves the release as helm's
    # --rollback-on-failure restored it, and the store's owner decides what next.
    S.UPDATING: frozenset({S.READY}),
    # A backup ends ready either way: whether it was made, the store is as it was.
    S.BACKING_UP: frozenset({S.READY}),
    # A restore ends ready either way: restored, or failed with its safety backup kept.
    S.RESTORING: frozenset({S.READY}),
    # queued: its owner asked for it again (retry), once its clean-up has finished
    S.FAILED: frozenset({S.DELETING, S.QUEUED}),
    S.DELETING: frozenset({S.DELETED}),
    S.DELETED: frozenset(),
}

# What an owner may delete. A pooled store has no owner: the pool keeper retires it instead.
DELETABLE = frozenset(s for s, targets in ALLOWED.items() if S.DELETING in targets) - {S.POOLED}
# What an owner may delete once its work ends: a change or a restore is never cut off halfway
# (a release left mid-upgrade, a store half restored); a backup yields (the provisioner's
# BACKUP recipe). Asked for meanwhile, the deletion is recorded and starts as the work ends
# (lifecycle.py). A ready or failed store whose backup a new store is being made from waits
# likewise, for that store to be made (the reaper starts its deletion then).
DELETED_AFTER_ITS_WORK = frozenset({S.UPDATING, S.BACKING_UP, S.RESTORING})
DELETED_AFTER_ITS_COPIES = frozenset({S.READY, S.FAILED})

StoreAction = Literal[
    "delete", "upgrade", "rollback", "settings", "backup", "restore", "retry", "credentials"
]


# A store that has been ready and serves its shop while a change, a backup or a restore runs:
# none of them changes the admin's password (a restore puts the recorded one back).
_SERVING = frozenset({
    StoreStatus.READY, StoreStatus.UPDATING, StoreStatus.BACKING_UP, StoreStatus.RESTORING,
})  # fmt: skip


def credentials_readable(status: StoreStatus, has_password: bool) -> bool:
    """Whether GET /stores/{id}/credentials answers: the store is ready, or serving while
    something runs on it (a nightly backup must not lock its owner out), and its password
    was recorded."""
    return status in _SERVING and has_password


def store_actions(
    status: StoreStatus,
    release_revision: int | None,
    has_password: bool,
    first_revision: int = 1,
    cleaned_up: bool = False,
    delete_requested: bool = False,
    backed_up: bool = False,
    source_lost: bool = False,
) -> list[StoreAction]:
    """The requests a store in this state accepts: ``delete`` when it may become deleting,
    now or once its work ends, ``upgrade`` when it may become updating, ``rollback`` then
    too if its release has an earlier revision to return to (of its owner's: not one from
    the warm pool before ``first_revision``), ``settings`` then too (a settings change is
    one), ``backup`` when it may be backed up, ``restore`` when its state allows one and it
    has a complete backup to return to (``backed_up``), ``retry`` when it failed and its
    clean-up has finished (a copy: while its backup can still be copied, not ``source_lost``),
    ``credentials`` when they can be read. A store whose deletion was asked for accepts
    nothing more: its credentials may still be read."""
    if delete_requested and status not in (S.DELETING, S.DELETED):
        return ["credentials"] if credentials_readable(status, has_password) else []
    actions: list[StoreAction] = []
    if status in DELETABLE | DELETED_AFTER_ITS_WORK:
        actions.append("delete")
    if StoreStatus.UPDATING in ALLOWED[status]:
        actions.append("upgrade")
        if release_revision is not None and release_revision > first_revision:
            actions.append("rollback")
        actions.append("settings")
    if StoreStatus.BACKING_UP in ALLOWED[status]:
        actions.append("backup")
    if StoreStatus.RESTORING in ALLOWED[status] and backed_up:
        actions.append("restore")
    if status is StoreStatus.FAILED and cleaned_up and not source_lost:
        actions.append("retry")
    if credentials_readable(status, has_password):
        actions.append("credentials")
    return actions


def actions_of(store: Store) -> list[StoreAction]:
    """:func:`store_actions` of ``store`` as it is now."""
    return store_actions(
        store.status,
        store.release_revision,
        store.admin_password_encrypted is not None,
        first_revision=store.first_revision or 1,
        cleaned_up=store.cleaned_up_at is not None,
        delete_requested=store.delete_requested_at is not None,
        backed_up=store.complete_backups > 0,
        source_lost=store.from_backup_lost,
    )
