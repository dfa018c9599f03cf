"""The store state machine: exactly these transitions are allowed, with their side effects."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

import pytest

from tests.support import DEFAULT_SETTINGS
from woostore_shared.lifecycle import ACTIVE, InvalidTransition, transition
from woostore_shared.models import DEFAULT_TENANT_ID, Store, StoreStatus, namespace_for, utcnow
from woostore_shared.transitions import DELETABLE

S = StoreStatus

# Written out here, not read from the code: the test states the contract.
EXPECTED: dict[StoreStatus, set[StoreStatus]] = {
    S.QUEUED: {S.PROVISIONING, S.FAILED, S.DELETING},  # deleting cancels
    # pooled: made for the pool; queued: a claim that fell back to a cold start
    S.PROVISIONING: {S.READY, S.POOLED, S.QUEUED, S.FAILED, S.DELETING},
    S.READY: {S.DELETING, S.FAILED, S.UPDATING, S.BACKING_UP, S.RESTORING},
    # queued: claimed by an owner; provisioning: verified again while idle
    S.POOLED: {S.QUEUED, S.PROVISIONING, S.DELETING, S.FAILED},
    S.UPDATING: {S.READY},  # a failed upgrade or rollback ends ready too
    S.BACKING_UP: {S.READY},  # a failed backup too
    S.RESTORING: {S.READY},  # a failed restore too
    S.FAILED: {S.DELETING, S.QUEUED},  # queued: retried by its owner once cleaned up
    S.DELETING: {S.DELETED},
    S.DELETED: set(),
}
ALL_PAIRS = list(itertools.product(StoreStatus, StoreStatus))
ALLOWED_PAIRS = [(a, b) for a, b in ALL_PAIRS if b in EXPECTED[a]]
FORBIDDEN_PAIRS = [(a, b) for a, b in ALL_PAIRS if b not in EXPECTED[a]]


def a_store(status: StoreStatus) -> Store:
    an_hour_ago = utcnow() - timedelta(hours=1)
    return Store(
        id=uuid.uuid4(),
        tenant_id=DEFAULT_TENANT_ID,
        name="Shop",
        slug="shop-abc123",
        namespace=namespace_for("shop-abc123"),
        status=status,
        simulated=True,
        settings=DEFAULT_SETTINGS.model_dump(mode="json"),
        correlation_id="c0ffee",
        created_at=an_hour_ago,
        updated_at=an_hour_ago,
        step_name="install",
        step_title="Install",
        step_index=2,
        step_total=5,
        progress=0.4,
    )


def test_the_table_covers_every_status() -> None:
    assert set(EXPECTED) == set(StoreStatus)
    assert len(ALLOWED_PAIRS) == 23


@pytest.mark.parametrize(("source", "target"), ALLOWED_PAIRS, ids=str)
def test_an_allowed_transition_changes_the_status(source: StoreStatus, target: StoreStatus) -> None:
    store = a_store(source)
    before = store.updated_at

    transition(store, target)

    assert store.status is target
    assert store.updated_at > before


@pytest.mark.parametrize(("source", "target"), FORBIDDEN_PAIRS, ids=str)
def test_a_forbidden_transition_raises_and_changes_nothing(
    source: StoreStatus, target: StoreStatus
) -> None:
    store = a_store(source)
    before = store.model_dump()

    with pytest.raises(InvalidTransition) as raised:
        transition(store, target)

    assert raised.value.current is source
    assert raised.value.target is target
    assert str(raised.value) == f"a {source.value} store cannot become {target.value}"
    assert store.model_dump() == before


def test_deletable_and_active_statuses() -> None:
    assert {S.QUEUED, S.PROVISIONING, S.READY, S.FAILED} == DELETABLE
    assert {S.QUEUED, S.PROVISIONING, S.UPDATING, S.BACKING_UP, S.RESTORING, S.DELETING} == (ACTIVE)


def test_starting_to_provision_records_when_and_resets_progress() -> None:
    store = a_store(S.QUEUED)

    transition(store, S.PROVISIONING)

    assert store.provisioning_started_at is not None
    assert store.provisioning_started_at == store.updated_at
    assert store.progress == 0.0


@pytest.mark.parametrize("source", [S.FAILED, S.PROVISIONING, S.POOLED])
def test_becoming_queued_again_records_when_its_place_in_the_queue_counts_from(
    source: StoreStatus,
) -> None:
    """A retry, a claim that fell back to a cold start, and a claim: each enters the queue,
    its work not begun."""
    store = a_store(source)
    store.queued_at = store.created_at

    transition(store, S.QUEUED)

    assert store.queued_at == store.updated_at
    assert store.queued_at > store.created_at
    assert store.progress == 0.0  # a pooled store's 1.0, a failed attempt's 0.4: none of it


def test_becoming_ready_records_when_completes_progress_and_clears_the_step() -> None:
    store = a_store(S.PROVISIONING)

    transition(store, S.READY)

    assert store.ready_at is not None
    assert store.progress == 1.0
    assert (store.step_name, store.step_title, store.step_index, store.step_total) == (
        None,
        None,
        None,
        None,
    )


def test_failing_keeps_the_step_it_failed_at() -> None:
    store = a_store(S.PROVISIONING)

    transition(store, S.FAILED)

    assert store.step_name == "install"
    assert store.progress == 0.4


def test_deleting_restarts_progress_and_deleted_records_when() -> None:
    store = a_store(S.READY)

    transition(store, S.DELETING)

    assert store.progress == 0.0
    assert store.step_name is None
    transition(store, S.DELETED)
    assert store.deleted_at is not None


def test_a_change_ending_keeps_when_the_store_first_became_ready_and_clears_the_change() -> None:
    store = a_store(S.PROVISIONING)
    transition(store, S.READY)
    first_ready = store.ready_at
    transition(store, S.UPDATING)
    store.change, store.rollback_revision = "rollback", 3
    assert store.progress == 0.0

    transition(store, S.READY)

    assert store.ready_at == first_ready
    after: tuple[object, ...] = (store.change, store.rollback_revision, store.progress)
    assert after == (None, None, 1.0)
