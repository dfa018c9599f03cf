"""/api/v1/stores/{id}/backups: asking for a backup of a ready store, reading them back,
deleting one, restoring one, and making a new store from one. (The work itself is the
provisioner's: tests/provisioner/test_backups.py.)"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from sqlalchemy import text
from sqlmodel import select

from tests.api.conftest import NewTenant
from tests.api.http import STORES, create, problem
from tests.api.test_api_stores import a_complete_backup, set_columns
from tests.support import DEFAULT_SETTINGS, envelope, stream_messages
from woostore_api.problems import COPY_RETRY_SECONDS
from woostore_shared.db import Database
from woostore_shared.models import (
    DEFAULT_TENANT_ID,
    BackupStatus,
    BackupTrigger,
    RateLimit,
    StoreBackup,
    StoreStatus,
)


async def ready_store(client: httpx.AsyncClient, database: Database) -> str:
    store = await create(client)
    await set_columns(database, store["id"], status=StoreStatus.READY, chart_version="0.2.0")
    return str(store["id"])


async def test_a_backup_of_a_ready_store_is_started_listed_and_audited(
    client: httpx.AsyncClient, nats_client: Client, database: Database
) -> None:
    store_id = await ready_store(client, database)

    response = await client.post(f"{STORES}/{store_id}/backups")

    assert response.status_code == 202, response.text
    backup = response.json()
    assert (backup["status"], backup["trigger"], backup["size"]) == ("running", "requested", None)
    assert (await client.get(f"{STORES}/{store_id}")).json()["status"] == "backing_up"
    messages = await stream_messages(nats_client, store_id)
    assert messages[-1].subject == f"store.backup_started.{store_id}"
    assert envelope(messages[-1])["data"] == {
        "status": "backing_up", "backup_id": backup["id"], "trigger": "requested",
        "actions": ["delete"],  # deleted as the backup ends
    }  # fmt: skip
    listed = (await client.get(f"{STORES}/{store_id}/backups")).json()["items"]
    assert listed == [backup]
    assert (await client.get(f"{STORES}/{store_id}/backups/{backup['id']}")).json() == backup
    assert (await client.get(response.headers["Location"])).json() == backup  # where it is
    audit = (await client.get("/api/v1/audit")).json()["items"]
    assert (audit[0]["action"], audit[0]["target"]) == ("store.backup", f"store/{store_id}")
    assert audit[0]["details"]["backup_id"] == backup["id"]


async def test_a_store_that_is_not_ready_cannot_be_backed_up(
    client: httpx.AsyncClient, database: Database
) -> None:
    queued = (await create(client, "Still Queued"))["id"]
    refused = problem(await client.post(f"{STORES}/{queued}/backups"), 409)
    assert "a queued store cannot be backed up" in refused["detail"]

    store_id = await ready_store(client, database)
    assert (await client.post(f"{STORES}/{store_id}/backups")).status_code == 202
    again = problem(await client.post(f"{STORES}/{store_id}/backups"), 409)
    assert "a store being backed up cannot be backed up" in again["detail"]
    assert len((await client.get(f"{STORES}/{store_id}/backups")).json()["items"]) == 1


async def test_a_backup_of_another_store_is_not_found_under_this_one(
    client: httpx.AsyncClient, database: Database
) -> None:
    first, second = await ready_store(client, database), await ready_store(client, database)
    backup = (await client.post(f"{STORES}/{first}/backups")).json()

    problem(await client.get(f"{STORES}/{second}/backups/{backup['id']}"), 404)
    problem(await client.get(f"{STORES}/{first}/backups/{uuid.uuid4()}"), 404)
    assert (await client.get(f"{STORES}/{second}/backups")).json() == {"items": []}


# --- restoring ------------------------------------------------------------------------------


async def test_a_restore_to_a_complete_backup_marks_the_store_restoring_with_a_safety_backup(
    client: httpx.AsyncClient, nats_client: Client, database: Database
) -> None:
    store_id = await ready_store(client, database)
    backup_id = await a_complete_backup(database, store_id)

    response = await client.post(f"{STORES}/{store_id}/restore", json={"backup_id": backup_id})

    assert response.status_code == 202, response.text
    store = response.json()
    assert (store["status"], store["change"], store["actions"]) == (
        "restoring", "restore", ["delete"],
    )  # fmt: skip
    assert store["last_change"]["kind"] == "restore"
    messages = await stream_messages(nats_client, store_id)
    assert messages[-1].subject == f"store.restore_requested.{store_id}"
    data = envelope(messages[-1])["data"]
    assert (data["status"], data["backup_id"]) == ("restoring", backup_id)
    safety, restored = (await client.get(f"{STORES}/{store_id}/backups")).json()["items"]
    assert (safety["id"], safety["trigger"], safety["status"]) == (
        data["safety_backup_id"], "before_restore", "running",
    )  # fmt: skip
    assert restored["id"] == backup_id
    audit = (await client.get("/api/v1/audit")).json()["items"]
    assert (audit[0]["action"], audit[0]["details"]) == ("store.restore", {"backup_id": backup_id})


async def test_only_a_complete_backup_of_the_store_itself_is_restored(
    client: httpx.AsyncClient, database: Database
) -> None:
    store_id, other_id = await ready_store(client, database), await ready_store(client, database)
    others = await a_complete_backup(database, other_id)
    running = (await client.post(f"{STORES}/{store_id}/backups")).json()["id"]
    await set_columns(database, store_id, status=StoreStatus.READY)  # as if it were not running
    path = f"{STORES}/{store_id}/restore"

    not_its_own = problem(await client.post(path, json={"backup_id": others}), 404)
    assert not_its_own["detail"] == f"backup {others} of this store does not exist"
    await set_columns(database, store_id, status=StoreStatus.PROVISIONING)
    being_made = problem(await client.post(path, json={"backup_id": others}), 409)
    assert being_made["detail"].startswith("a provisioning store cannot be restored")  # why
    await set_columns(database, store_id, status=StoreStatus.READY)
    problem(await client.post(path, json={"backup_id": str(uuid.uuid4())}), 404)
    unfinished = problem(await client.post(path, json={"backup_id": running}), 409)
    assert "is running: only a complete one is restored or copied" in unfinished["detail"]
    problem(await client.post(path, json={}), 422)
    problem(await client.post(path, json={"backup_id": others, "force": True}), 422)
    assert (await client.get(f"{STORES}/{store_id}")).json()["status"] == "ready"


async def test_a_damaged_backup_is_listed_so_refused_for_a_restore_or_a_copy_and_deletable(
    client: httpx.AsyncClient, database: Database
) -> None:
    """A restore or a copy found it unreadable (tests/provisioner/test_backups.py): its owner
    sees why, cannot try it again, and can delete it."""
    store_id = await ready_store(client, database)
    backup_id = await a_complete_backup(database, store_id)
    found = "could not read database.sql: ciphertext verification failed"
    async with database.session() as session:
        backup = await session.get(StoreBackup, uuid.UUID(backup_id))
        assert backup is not None
        backup.status, backup.reason = BackupStatus.DAMAGED, found
        session.add(backup)
        await session.commit()

    [listed] = (await client.get(f"{STORES}/{store_id}/backups")).json()["items"]
    assert (listed["status"], listed["reason"]) == ("damaged", found)
    restore = await client.post(f"{STORES}/{store_id}/restore", json={"backup_id": backup_id})
    assert "is damaged: only a complete one is restored" in problem(restore, 409)["detail"]
    copy = await client.post(STORES, json={"name": "Copy", "from_backup": backup_id})
    assert "is damaged: only a complete one is restored" in problem(copy, 409)["detail"]
    deleted = await client.delete(f"{STORES}/{store_id}/backups/{backup_id}")
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["status"] == "deleting"


# --- deleting -------------------------------------------------------------------------------


async def test_a_deleted_backup_is_deleting_no_longer_listed_as_restorable_and_audited(
    client: httpx.AsyncClient, nats_client: Client, database: Database
) -> None:
    store_id = await ready_store(client, database)
    kept, deleted = (
        await a_complete_backup(database, store_id),
        await a_complete_backup(database, store_id),
    )
    path = f"{STORES}/{store_id}/backups/{deleted}"
    # Uncounted, as backups an older release completed during an upgrade: counted again.
    await set_columns(database, store_id, complete_backups=0)

    response = await client.delete(path)

    assert response.status_code == 202, response.text
    assert (response.json()["id"], response.json()["status"]) == (deleted, "deleting")
    assert (await client.delete(path)).json()["status"] == "deleting"  # asking again: the same
    messages = await stream_messages(nats_client, store_id)
    assert [m.subject for m in messages].count(f"store.backup_deleted.{store_id}") == 1
    assert envelope(messages[-1])["data"] == {
        "status": "ready", "backup_id": deleted, "reason": "requested",
        # No password: not provisioned.
        "actions": ["delete", "upgrade", "settings", "backup", "restore"],
    }  # fmt: skip
    listed = (await client.get(f"{STORES}/{store_id}/backups")).json()["items"]
    assert {b["id"]: b["status"] for b in listed} == {kept: "complete", deleted: "deleting"}
    refused = problem(
        await client.post(f"{STORES}/{store_id}/restore", json={"backup_id": deleted}), 409
    )
    assert "is deleting: only a complete one is restored or copied" in refused["detail"]
    assert (await client.get(f"{STORES}/{store_id}")).json()["status"] == "ready"
    audit = (await client.get("/api/v1/audit")).json()["items"]
    assert (audit[0]["action"], audit[0]["details"]) == (
        "store.delete_backup", {"backup_id": deleted},
    )  # fmt: skip
    assert audit[1]["action"] != "store.delete_backup"  # asked twice, deleted once
    # Its last complete backup deleted, the store has nothing to be restored to.
    assert (await client.delete(f"{STORES}/{store_id}/backups/{kept}")).status_code == 202
    assert (await client.get(f"{STORES}/{store_id}")).json()["actions"] == [
        "delete", "upgrade", "settings", "backup",
    ]  # fmt: skip

    # Its data gone (the provisioner's work), asking again (a retry whose answer was lost)
    # answers it as it is, as reading it does: not a 404 for what succeeded (a user's review).
    async with database.session() as session:
        gone = await session.get(StoreBackup, uuid.UUID(deleted))
        assert gone is not None
        gone.status = BackupStatus.DELETED
        session.add(gone)
        await session.commit()
    again = await client.delete(path)
    assert (again.status_code, again.json()["status"]) == (202, "deleted"), again.text
    assert (await client.get(path)).json()["status"] == "deleted"
    messages = await stream_messages(nats_client, store_id)
    assert [m.subject for m in messages].count(f"store.backup_deleted.{store_id}") == 2  # both


async def test_a_backup_being_made_or_of_another_store_is_not_deleted(
    client: httpx.AsyncClient, database: Database
) -> None:
    store_id, other_id = await ready_store(client, database), await ready_store(client, database)
    others = await a_complete_backup(database, other_id)
    running = (await client.post(f"{STORES}/{store_id}/backups")).json()["id"]

    refused = await client.delete(f"{STORES}/{store_id}/backups/{running}")
    busy = problem(refused, 409)
    assert busy["detail"] == f"backup {running} is being made: it can be deleted once that ends"
    assert refused.headers["Retry-After"] == "30"  # it ends by itself: when to ask again
    problem(await client.delete(f"{STORES}/{store_id}/backups/{others}"), 404)
    problem(await client.delete(f"{STORES}/{store_id}/backups/{uuid.uuid4()}"), 404)
    assert (await client.get(f"{STORES}/{other_id}/backups/{others}")).json()["status"] == (
        "complete"
    )


# --- a new store from a backup --------------------------------------------------------------


async def test_a_store_made_from_a_backup_is_queued_with_its_sources_settings(
    client: httpx.AsyncClient, nats_client: Client, database: Database
) -> None:
    source_id = await ready_store(client, database)
    backup_id = await a_complete_backup(database, source_id)
    source = (await client.get(f"{STORES}/{source_id}")).json()

    response = await client.post(STORES, json={"name": "Staging", "from_backup": backup_id})

    assert response.status_code == 202, response.text
    copy = response.json()
    assert (copy["status"], copy["origin"], copy["from_backup"]) == ("queued", "backup", backup_id)
    assert copy["from_store"] == {"id": source_id, "name": source["name"]}
    assert (await client.get(f"{STORES}/{copy['id']}")).json()["from_store"] == copy["from_store"]
    assert source["from_store"] is None
    [made] = [
        entry for entry in (await client.get("/api/v1/audit")).json()["items"]
        if entry["target"] == f"store/{copy['id']}"
    ]  # fmt: skip
    assert (made["action"], made["details"]["from_backup"]) == ("store.create", backup_id)
    assert copy["settings"] == source["settings"]
    assert copy["id"] != source_id
    messages = await stream_messages(nats_client, copy["id"])
    announced = envelope(messages[0])["data"]["store"]
    # A program following events learns what it is a copy of, as the store resource says.
    assert (announced["origin"], announced["from_backup"]) == ("backup", backup_id)
    assert announced["from_store"] == copy["from_store"]

    # Made again after it failed: its new request names its source too.
    await set_columns(
        database, copy["id"], status=StoreStatus.FAILED, cleaned_up_at=datetime.now(UTC)
    )
    assert (await client.post(f"{STORES}/{copy['id']}/retry")).status_code == 202
    requested = [envelope(m) for m in await stream_messages(nats_client, copy["id"])]
    retried = [e for e in requested if e["type"] == "io.woostore.store.requested"][-1]
    assert len(requested) > len(messages)
    assert retried["data"]["store"]["from_store"] == copy["from_store"]


async def test_a_copy_has_the_settings_its_backup_recorded_not_its_sources_now(
    client: httpx.AsyncClient, database: Database
) -> None:
    """The copy's WordPress options are the backup's: its settings are those the backup
    recorded, whatever its source was given since."""
    source_id = await ready_store(client, database)
    backed_up = {**DEFAULT_SETTINGS.model_dump(mode="json"), "currency": "EUR"}
    backup = StoreBackup(
        store_id=uuid.UUID(source_id), trigger=BackupTrigger.REQUESTED,
        status=BackupStatus.COMPLETE, settings=backed_up,
    )  # fmt: skip
    async with database.session() as session:
        session.add(backup)
        await session.commit()

    copy = (await client.post(STORES, json={"name": "Then", "from_backup": str(backup.id)})).json()

    assert copy["settings"] == backed_up
    assert (await client.get(f"{STORES}/{source_id}")).json()["settings"]["currency"] == "INR"


async def test_a_store_is_made_only_from_a_complete_backup_of_its_own_tenant(
    client: httpx.AsyncClient, database: Database, new_tenant: NewTenant
) -> None:
    source_id = await ready_store(client, database)
    complete = await a_complete_backup(database, source_id)
    running = (await client.post(f"{STORES}/{source_id}/backups")).json()["id"]
    acme = await new_tenant("acme")

    others = problem(await acme.post(STORES, json={"name": "Copy", "from_backup": complete}), 404)
    assert others["detail"] == f"backup {complete} does not exist"
    # An admin sees every tenant's backups: told whose it is, not that it does not exist.
    acme_id = (await acme.get("/api/v1/session")).json()["tenant_id"]
    across = await client.post(
        STORES, json={"name": "Copy", "from_backup": complete, "tenant_id": acme_id}
    )
    assert problem(across, 422)["errors"] == [{
        "location": ["body", "from_backup"],
        "message": f"backup {complete} is of tenant {DEFAULT_TENANT_ID}'s store: a copy is "
        f"made in the tenant whose backup it is (tenant_id {DEFAULT_TENANT_ID}; the CLI's"
        " --tenant)",
    }]  # fmt: skip
    problem(await client.post(STORES, json={"name": "Copy", "from_backup": str(uuid.uuid4())}), 404)
    unfinished = problem(
        await client.post(STORES, json={"name": "Copy", "from_backup": running}), 409
    )
    assert "is running: only a complete one is restored or copied" in unfinished["detail"]
    both = await client.post(
        STORES, json={"name": "Copy", "from_backup": complete, "settings": {"currency": "EUR"}}
    )
    assert "has the backed-up store's settings" in problem(both, 422)["detail"]
    assert (await acme.get(STORES)).json()["items"] == []


async def newest_event(nats: Client, store_id: str) -> dict[str, Any]:
    return envelope((await stream_messages(nats, store_id))[-1])


async def told_its_source_is_lost(nats: Client, copy_id: str, cause: str) -> dict[str, Any]:
    """The copy's newest event, a source_lost published after ``cause`` (its subject): its
    data."""
    told = await newest_event(nats, copy_id)
    assert told["type"] == "io.woostore.store.source_lost"
    held = [message.subject for message in await stream_messages(nats)]
    assert held.index(cause) < held.index(f"store.source_lost.{copy_id}")
    data: dict[str, Any] = told["data"]
    return data


async def test_a_backup_being_copied_and_its_store_stay_until_the_copy_is_made(
    client: httpx.AsyncClient, database: Database, nats_client: Client
) -> None:
    """The new store reads the backup until it is made: deleting either the backup or its
    store then failed the copy, "not whole", at its check_backup step. The backup's
    deletion is refused meanwhile; the store's is recorded, and starts once the copy is
    made (the reaper's part: tests/reaper/test_backups.py)."""
    source_id = await ready_store(client, database)
    backup_id = await a_complete_backup(database, source_id)
    copy = (await client.post(STORES, json={"name": "Copy", "from_backup": backup_id})).json()

    refused = await client.delete(f"{STORES}/{source_id}/backups/{backup_id}")
    body = problem(refused, 409)
    assert body["title"] == "Backup cannot be deleted now"  # as when it is in use otherwise
    assert body["detail"] == (
        f"backup {backup_id} cannot be deleted while store {copy['id']} is being made from it;"
        " it can be once that store is made (ready, or failed)"  # as the docs say: not deleted
    )
    assert refused.headers["Retry-After"] == str(COPY_RETRY_SECONDS)
    asked = await client.delete(f"{STORES}/{source_id}")
    assert asked.status_code == 202, asked.text
    waiting = asked.json()
    assert (waiting["status"], waiting["actions"]) == ("ready", [])
    assert waiting["delete_requested_at"] is not None
    # The copy, not made yet, is told it could not be made again should it fail, after its
    # source's deletion (the cause) is told.
    told = await told_its_source_is_lost(
        nats_client, copy["id"], cause=f"store.delete_queued.{source_id}"
    )
    assert told == {
        "status": "queued", "backup_id": backup_id, "reason": "store_deleted", "actions": ["delete"]
    }  # fmt: skip
    upgrade = await client.post(f"{STORES}/{source_id}/upgrade")
    assert problem(upgrade, 409)["detail"] == (
        "a ready store, to be deleted, cannot be changed: its deletion was asked for, and starts "
        "once no copy reads its backups"
    )
    rollback = await client.post(f"{STORES}/{source_id}/rollback")  # not "nothing to return to"
    assert problem(rollback, 409)["detail"] == problem(upgrade, 409)["detail"]
    again = await client.delete(f"{STORES}/{source_id}")
    assert again.json()["delete_requested_at"] == waiting["delete_requested_at"]

    await set_columns(database, copy["id"], status=StoreStatus.READY)  # made: it reads no more
    deleting = await client.delete(f"{STORES}/{source_id}")  # its owner need not wait either
    assert (deleting.status_code, deleting.json()["status"]) == (202, "deleting")


async def test_no_store_is_made_again_or_anew_from_a_backup_gone_or_going(
    client: httpx.AsyncClient, database: Database, nats_client: Client
) -> None:
    """A copy retried after its backup was deleted, or asked for of a store being deleted
    (its backups go with it), is refused at once: each used to be queued, take a slot, and
    fail at its check_backup step. A failed copy offered a retry is told it is no more: a
    dashboard drawing it from its events offered it until a reload."""
    source_id = await ready_store(client, database)
    kept, deleted = (
        await a_complete_backup(database, source_id),
        await a_complete_backup(database, source_id),
    )
    copy, other = [
        (await client.post(STORES, json={"name": "Copy", "from_backup": backup})).json()
        for backup in (deleted, kept)
    ]
    for failed in (copy, other):
        await set_columns(
            database, failed["id"], status=StoreStatus.FAILED, cleaned_up_at=datetime.now(UTC)
        )
    assert "retry" in (await client.get(f"{STORES}/{copy['id']}")).json()["actions"]
    assert (await client.delete(f"{STORES}/{source_id}/backups/{deleted}")).status_code == 202

    again = problem(await client.post(f"{STORES}/{copy['id']}/retry"), 409)
    # What was asked for was a retry, not a copy of that backup (a user's review).
    assert again["title"] == "Store cannot be retried"
    assert again["detail"] == (
        f"store {copy['id']} cannot be made again from backup {deleted}, which is deleting: "
        "only a complete one is restored or copied. Delete the store, or make a new one from "
        "another backup."
    )
    failed = (await client.get(f"{STORES}/{copy['id']}")).json()
    # Not offered a retry it would be refused (a user's review).
    assert (failed["status"], failed["actions"]) == ("failed", ["delete"])
    told = await told_its_source_is_lost(
        nats_client, copy["id"], cause=f"store.backup_deleted.{source_id}"
    )
    assert told == {
        "status": "failed", "backup_id": deleted, "reason": "backup_deleted", "actions": ["delete"]
    }  # fmt: skip

    assert "retry" in (await client.get(f"{STORES}/{other['id']}")).json()["actions"]
    assert (await newest_event(nats_client, other["id"]))["type"] == "io.woostore.store.requested"
    assert (await client.delete(f"{STORES}/{source_id}")).status_code == 202
    going = problem(await client.post(STORES, json={"name": "Copy", "from_backup": kept}), 409)
    assert going["detail"] == f"backup {kept} goes with store {source_id}, which is deleting"
    assert (await client.get(f"{STORES}/{other['id']}")).json()["actions"] == ["delete"]
    told = await told_its_source_is_lost(
        nats_client, other["id"], cause=f"store.delete_requested.{source_id}"
    )
    assert told == {
        "status": "failed", "backup_id": kept, "reason": "store_deleted", "actions": ["delete"]
    }  # fmt: skip
    # Told once: the copy told before is not told again, as its source's store goes.
    assert (await newest_event(nats_client, copy["id"]))["data"]["reason"] == "backup_deleted"


async def waiting_for_locks(database: Database) -> int:
    """How many of this database's sessions wait for a lock another holds."""
    async with database.session() as session:
        found = await (await session.connection()).execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return int(found.scalar_one())


async def test_a_failed_store_waiting_to_be_deleted_is_never_retried_even_while_cleaning_up(
    client: httpx.AsyncClient, database: Database
) -> None:
    """Told to come back once its clean-up finished (Retry-After), its owner was then
    refused for good: it is refused for good at once."""
    store = await create(client)
    await set_columns(
        database, store["id"], status=StoreStatus.FAILED, delete_requested_at=datetime.now(UTC)
    )

    refused = await client.post(f"{STORES}/{store['id']}/retry")

    body = problem(refused, 409)
    assert "Retry-After" not in refused.headers
    assert body["detail"].endswith("starts once no copy reads its backups")


@pytest.mark.parametrize("deleting", ["backup", "store"])
async def test_a_copy_and_a_deletion_asked_for_at_once_never_both_go_ahead(
    client: httpx.AsyncClient, database: Database, deleting: str
) -> None:
    """Both lock the backed-up store's row, so whichever comes second finds the other's
    change: the backup's deletion is refused, the store's waits for the copy. The copy is
    held after its checks, before its commit (at its create rate, whose counters a
    transaction here holds), while the deletion is asked for: without the copy's lock, both
    would go ahead, and the copy would fail later."""
    source_id = await ready_store(client, database)
    backup_id = await a_complete_backup(database, source_id)
    deletion = f"{STORES}/{source_id}" + (f"/backups/{backup_id}" if deleting == "backup" else "")

    async with database.transaction() as holder:
        await holder.exec(select(RateLimit).with_for_update())  # the create rates' counters
        copying = asyncio.create_task(
            client.post(STORES, json={"name": "Copy", "from_backup": backup_id})
        )
        async with asyncio.timeout(20):
            while await waiting_for_locks(database) < 1:  # noqa: ASYNC110  (with a deadline)
                await asyncio.sleep(0.02)
            removing = asyncio.create_task(client.delete(deletion))
            while not removing.done() and await waiting_for_locks(database) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await holder.rollback()  # the copy goes on to its commit
    copied, removed = await copying, await removing

    source = (await client.get(f"{STORES}/{source_id}")).json()
    backup = (await client.get(f"{STORES}/{source_id}/backups/{backup_id}")).json()
    assert (source["status"], backup["status"]) == ("ready", "complete")
    if deleting == "backup":
        assert (copied.status_code, removed.status_code) == (202, 409)
        assert "is being made from it;" in problem(removed, 409)["detail"]
    else:
        assert (copied.status_code, removed.status_code) == (202, 202)
        assert source["delete_requested_at"] is not None  # it goes once the copy is made
