"""The actions a store resource offers, for every state a store can be in (no I/O)."""

from __future__ import annotations

import pytest

from woostore_shared.models import StoreStatus
from woostore_shared.transitions import StoreAction, store_actions

S = StoreStatus

# status, release revision, password recorded -> actions offered, to a store with a complete
# backup
TABLE: list[tuple[StoreStatus, int | None, bool, list[StoreAction]]] = [
    (S.QUEUED, None, False, ["delete"]),  # deleting it cancels it
    (S.PROVISIONING, None, False, ["delete"]),
    (S.PROVISIONING, 1, True, ["delete"]),  # the password is recorded before it is ready
    (
        S.READY,
        1,
        True,
        ["delete", "upgrade", "settings", "backup", "restore", "credentials"],
    ),  # no rollback yet
    (
        S.READY,
        2,
        True,
        ["delete", "upgrade", "rollback", "settings", "backup", "restore", "credentials"],
    ),
    (
        S.READY,
        3,
        True,
        ["delete", "upgrade", "rollback", "settings", "backup", "restore", "credentials"],
    ),
    (
        S.READY,
        None,
        True,
        ["delete", "upgrade", "settings", "backup", "restore", "credentials"],
    ),  # no release
    (
        S.READY,
        2,
        False,
        ["delete", "upgrade", "rollback", "settings", "backup", "restore"],
    ),  # no password
    # Serving while the work runs: its login stays readable, and it may be deleted (as the
    # work ends); nothing else is accepted.
    (S.UPDATING, 2, True, ["delete", "credentials"]),
    (S.BACKING_UP, 2, True, ["delete", "credentials"]),
    (S.RESTORING, 2, True, ["delete", "credentials"]),
    (S.BACKING_UP, 2, False, ["delete"]),
    (S.POOLED, 1, True, []),  # no owner: nobody is offered anything (nor sees it)
    (S.FAILED, None, False, ["delete"]),
    (S.FAILED, 2, True, ["delete"]),  # a ready store whose namespace vanished
    (S.DELETING, 2, True, []),  # asking again is accepted but changes nothing
    (S.DELETED, 2, True, []),
]


@pytest.mark.parametrize(
    ("status", "revision", "has_password", "expected"),
    TABLE,
    ids=[f"{s.value}-r{r}-{'pw' if p else 'nopw'}" for s, r, p, _ in TABLE],
)
def test_a_store_offers_what_its_state_allows(
    status: StoreStatus, revision: int | None, has_password: bool, expected: list[StoreAction]
) -> None:
    assert store_actions(status, revision, has_password, backed_up=True) == expected


def test_a_store_without_a_complete_backup_offers_no_restore() -> None:
    """It offered one whatever its backups, and a restore could only be refused."""
    assert store_actions(S.READY, 2, True) == [
        "delete", "upgrade", "rollback", "settings", "backup", "credentials",
    ]  # fmt: skip


def test_the_table_covers_every_status() -> None:
    assert {status for status, *_ in TABLE} == set(StoreStatus)


def test_a_claimed_store_offers_no_rollback_to_the_pools_revisions() -> None:
    # Claimed at revision 2 (its owner's host); revision 1 was the warm pool's.
    assert store_actions(S.READY, 2, True, first_revision=2, backed_up=True) == [
        "delete", "upgrade", "settings", "backup", "restore", "credentials",
    ]  # fmt: skip
    assert "rollback" in store_actions(S.READY, 3, True, first_revision=2)  # after an upgrade


def test_a_failed_store_offers_a_retry_once_its_clean_up_has_finished() -> None:
    assert store_actions(S.FAILED, 2, True, cleaned_up=False) == ["delete"]
    assert store_actions(S.FAILED, 2, True, cleaned_up=True) == ["delete", "retry"]
    # Only a failed store is retried, whatever else it has behind it.
    assert "retry" not in store_actions(S.DELETED, 2, True, cleaned_up=True)
    # A copy whose backup can be copied no more (damaged, deleted): its retry would be refused.
    assert store_actions(S.FAILED, 2, True, cleaned_up=True, source_lost=True) == ["delete"]


@pytest.mark.parametrize("status", [S.UPDATING, S.BACKING_UP, S.RESTORING])
def test_a_busy_store_asked_to_be_deleted_offers_no_deletion_again(status: StoreStatus) -> None:
    assert store_actions(status, 2, True, delete_requested=True) == ["credentials"]


@pytest.mark.parametrize("status", [S.READY, S.FAILED])
def test_a_store_deleted_once_its_copy_is_made_offers_nothing_but_its_credentials(
    status: StoreStatus,
) -> None:
    """Upgrading, backing up, restoring or retrying it would be refused: it goes."""
    offered = store_actions(status, 2, True, cleaned_up=True, delete_requested=True)

    assert offered == (["credentials"] if status is S.READY else [])
