"""What `woostore events`, `show` and `list` print of a store's backups, restores, changes
and deletion: each line names what it was of and why it ended so, a restoring store its
step, and a store to be deleted says so."""

from __future__ import annotations

from typing import Any

import pytest

from woostore_cli.main import _detail, _event_line, _listed_status

TIME = "2026-12-04T10:00:30Z"
BACKUP = "3f2a9c1e-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("kind", "data", "said"),
    [
        ("backup_started", {"status": "backing_up", "backup_id": BACKUP, "trigger": "scheduled"},
         f"backing_up backup {BACKUP} scheduled"),
        ("backup_completed", {"status": "ready", "backup_id": BACKUP, "size": 48_200_000},
         f"ready backup {BACKUP} 48.2 MB"),
        ("backup_failed", {"status": "ready", "backup_id": BACKUP, "reason": "storage refused"},
         f"ready backup {BACKUP}: storage refused"),
        ("restore_failed", {"status": "ready", "backup_id": BACKUP, "reason": "not whole"},
         f"ready backup {BACKUP}: not whole"),
        ("backup_deleted", {"status": "failed", "backup_id": BACKUP, "reason": "retention"},
         f"failed backup {BACKUP}: retention"),
        ("backup_damaged", {"status": "restoring", "backup_id": BACKUP,
                            "reason": "ciphertext verification failed"},
         f"restoring backup {BACKUP}: ciphertext verification failed"),
        ("source_lost", {"status": "failed", "backup_id": BACKUP, "reason": "backup_damaged"},
         f"failed backup {BACKUP}: backup_damaged"),  # a copy's: it can be retried no more
        ("changed", {"status": "ready", "change": "upgrade", "chart_version": "0.3.0",
                     "revision": 2}, "ready upgrade chart 0.3.0 (revision 2)"),
        ("change_failed", {"status": "ready", "change": "rollback", "reason": "helm said no"},
         "ready rollback: helm said no"),
        ("changed", {"status": "ready", "change": "settings", "chart_version": "0.2.0",
                     "revision": 2, "settings": {"currency": "EUR", "country": "DE",
                                                 "state": None, "language": "de_DE",
                                                 "sample_products": True}},
         "ready settings EUR, DE, de_DE"),  # not the chart it left as it was
        ("failed", {"status": "failed", "reason": "its namespace vanished", "step": None},
         "failed: its namespace vanished"),
        ("progress", {"status": "provisioning", "state": "started",
                      "step": {"index": 3, "total": 11, "name": "helm_release",
                               "title": "Installing the store's chart"}},
         "provisioning step 3/11 started: Installing the store's chart"),
        ("progress", {"status": "provisioning", "state": "started", "cause": "ImagePullBackOff",
                      "step": {"index": 3, "total": 11, "name": "helm_release",
                               "title": "Installing the store's chart"}},
         "provisioning step 3/11 started: Installing the store's chart — ImagePullBackOff"),
    ],
)  # fmt: skip
def test_an_event_line_names_what_it_was_of_and_why_it_ended_so(
    kind: str, data: dict[str, Any], said: str
) -> None:
    """They printed the status alone ("backup_failed  ready"): no backup, no reason."""
    assert _event_line(TIME, kind, "s-1", data).endswith(f"{kind:<17}  s-1  {said}")


def test_a_restoring_store_shows_its_step_as_any_busy_store_does() -> None:
    step = {"index": 2, "total": 6, "title": "Backing up the store as it is"}
    assert _detail({"status": "restoring", "step": step}) == (
        "step 2 of 6: Backing up the store as it is"
    )


@pytest.mark.parametrize(
    ("status", "listed"),
    [
        ("ready", "ready · to be deleted (simulated)"),  # waits for a copy of its backup
        ("backing_up", "backing_up · to be deleted (simulated)"),  # its backup is cut short
        ("deleting", "deleting (simulated)"),  # going: nothing to add
    ],
)
def test_a_store_whose_deletion_waits_is_listed_as_to_be_deleted(status: str, listed: str) -> None:
    """`woostore list` showed a store waiting for a copy before its deletion as plain ready,
    where its dashboard card says "ready · to be deleted"."""
    asked = {"status": status, "simulated": True, "delete_requested_at": TIME}
    assert _listed_status(asked) == listed
    assert _listed_status({**asked, "delete_requested_at": None}) == f"{status} (simulated)"
