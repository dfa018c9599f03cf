"""The store state machine. Every status change in any service goes through ``transition``."""

from __future__ import annotations

from woostore_shared.models import Store, StoreStatus, utcnow

S = StoreStatus

ALLOWED: dict[StoreStatus, frozenset[StoreStatus]] = {
    # deleting a queued or provisioning store cancels it
    S.QUEUED: frozenset({S.PROVISIONING, S.FAILED, S.DELETING}),
    S.PROVISIONING: frozenset({S.READY, S.FAILED, S.DELETING}),
    S.READY: frozenset({S.DELETING, S.FAILED, S.UPDATING}),  # failed: its namespace vanished
    # An upgrade or rollback ends ready either way: a failed one leaves the release as helm's
    # --rollback-on-failure restored it, and the store's owner decides what next.
    S.UPDATING: frozenset({S.READY}),
    S.FAILED: frozenset({S.DELETING}),
    S.DELETING: frozenset({S.DELETED}),
    S.DELETED: frozenset(),
}

ACTIVE = frozenset({S.QUEUED, S.PROVISIONING, S.UPDATING, S.DELETING})
# Stores that hold (or will hold) cluster resources: what quotas count. A failed store's
# resources were cleaned up when it failed.
LIVE = ACTIVE | {S.READY}
DELETABLE = frozenset(s for s, targets in ALLOWED.items() if S.DELETING in targets)


class InvalidTransition(Exception):
    def __init__(self, store: Store, target: StoreStatus) -> None:
        self.current = store.status
        self.target = target
        super().__init__(f"a {store.status.value} store cannot become {target.value}")


def transition(store: Store, target: StoreStatus) -> None:
    if target not in ALLOWED[store.status]:
        raise InvalidTransition(store, target)
    now = utcnow()
    store.status = target
    store.updated_at = now
    if target in (S.PROVISIONING, S.UPDATING, S.DELETING):
        store.progress = 0.0
    if target is S.PROVISIONING:
        store.provisioning_started_at = now
    elif target is S.READY:
        store.ready_at = store.ready_at or now  # first ready; an upgrade does not reset it
        store.progress = 1.0
        store.change = store.rollback_revision = None
    elif target is S.DELETED:
        store.deleted_at = now
    if target in (S.READY, S.DELETED, S.DELETING):
        store.step_name = store.step_title = store.step_index = store.step_total = None
