"""woostore backups create --wait, backups list, restore --wait, create --from-backup and
backups delete against the real platform: a ready store backed up through the change lane
into its restic repository under the data folder, returned to that backup after a safety
backup of it, copied from it as a new store, and the backup deleted."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.cli.conftest import Platform, api_store, create_ready, woostore
from tests.support import alter_stored_data

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_a_backup_is_followed_to_complete_and_listed(platform: Platform) -> None:
    store_id = create_ready(platform, "Backed Up Shop")
    assert woostore(platform, "backups", "list", store_id).out == "No backups.\n"

    made = woostore(platform, "backups", "create", store_id, "--wait")

    assert made.code == 0, made.err
    assert made.out.startswith("Backup ")
    assert " of Backed Up Shop (simulated) is complete: " in made.out
    assert "Backup completed" in made.err  # the progress bar's last state
    assert api_store(platform, store_id)["status"] == "ready"
    listed = woostore(platform, "backups", "list", store_id)
    assert listed.code == 0, listed.err
    [row] = listed.out.splitlines()[1:]
    backup_id = made.out.split()[1]
    assert row.split()[:3] == [backup_id, "complete", "requested"]
    assert "WordPress 7.1.2, WooCommerce 11.2.0" in row

    restored = woostore(platform, "restore", store_id, backup_id, "--wait")

    assert restored.code == 0, restored.err
    assert restored.out == f"Backed Up Shop (simulated) is restored to backup {backup_id}.\n"
    store = api_store(platform, store_id)
    assert (store["status"], store["last_change"]["kind"]) == ("ready", "restore")
    assert store["last_change"]["result"] == "changed"
    safety, _ = woostore(platform, "backups", "list", store_id).out.splitlines()[1:]
    assert safety.split()[1:3] == ["complete", "before_restore"]  # newest first, as docs say

    copied = woostore(platform, "create", "Staging Shop", "--from-backup", backup_id, "--wait")

    assert copied.code == 0, copied.err
    assert copied.out.startswith("Staging Shop (simulated) is ready in ")
    [copy_id] = [line.split()[-1] for line in copied.out.splitlines() if "credentials" in line]
    told = f"a copy of backup {backup_id} of Backed Up Shop ({store_id})"
    assert told in woostore(platform, "show", copy_id).out

    deleted = woostore(platform, "backups", "delete", store_id, backup_id)

    assert deleted.code == 0, deleted.err
    assert deleted.out.startswith(f"Backup {backup_id} deleted")
    again = woostore(platform, "restore", store_id, backup_id)
    assert again.code == 1
    assert "only a complete one is restored or copied" in again.err
    # Once its data is gone, deleting it again (a script's retry) is no failure.
    backup = f"{platform.api_url}/api/v1/stores/{store_id}/backups/{backup_id}"
    give_up = time.monotonic() + 30
    while httpx.get(backup, headers=platform.headers).json()["status"] != "deleted":
        assert time.monotonic() < give_up, "the backup's data was not removed"
        time.sleep(0.1)
    retried = woostore(platform, "backups", "delete", store_id, backup_id)
    assert (retried.code, retried.out) == (0, f"Backup {backup_id} deleted: its data is gone\n")


def test_a_backup_that_finds_stored_data_damaged_says_which_backups_lost_it(
    platform: Platform,
) -> None:
    """The backup repairs the store's repository and completes; the older backups that lost
    data were listed damaged, and the user waiting was not told (a user's review)."""
    store_id = create_ready(platform, "Failing Disk Shop")
    older = woostore(platform, "backups", "create", store_id, "--wait").out.split()[1]
    alter_stored_data(platform.data_dir, store_id)

    made = woostore(platform, "backups", "create", store_id, "--wait")

    assert made.code == 0, made.err
    assert " of Failing Disk Shop (simulated) is complete: " in made.out
    assert f"Backup {older} of Failing Disk Shop was found damaged: data of its " in made.err
    listed = woostore(platform, "backups", "list", store_id).out
    assert [row.split()[:2] for row in listed.splitlines()[1:]] == [
        [made.out.split()[1], "complete"], [older, "damaged"],
    ]  # fmt: skip


def test_a_backup_of_a_store_that_does_not_exist_says_so(platform: Platform) -> None:
    missing = str(uuid.uuid4())

    refused = woostore(platform, "backups", "create", missing, "--wait")

    assert refused.code == 1
    assert f"store {missing} does not exist" in refused.err


def test_a_store_deleted_while_it_is_backed_up_is_deleted_once_the_backup_is_stopped(
    platform: Platform,
) -> None:
    """With no provisioner running, the backup waits: the deletion is asked for while it
    certainly runs."""
    store_id = create_ready(platform, "Busy Shop")
    platform.stop("provisioner")
    try:
        assert woostore(platform, "backups", "create", store_id).code == 0
        asked = woostore(platform, "delete", store_id)
        assert asked.out == (
            f"Deleting Busy Shop (simulated) once its backup is stopped: {store_id}\n"
        )
        assert api_store(platform, store_id)["status"] == "backing_up"
        shown = woostore(platform, "show", store_id).out
        assert "  deleting    asked for " in shown
        assert "; it starts once its backup is stopped\n" in shown
    finally:
        platform.start("provisioner")

    followed = woostore(platform, "wait", store_id)  # the deletion, not the backup

    assert (followed.code, followed.out) == (0, "Busy Shop (simulated) is deleted.\n")
    assert api_store(platform, store_id)["status"] == "deleted"
