"""/api/v1/stores/{id}/backups: asking for a backup of a ready store, and reading them back.
(The backup itself is the provisioner's: tests/provisioner/test_backups.py.)"""

from __future__ import annotations

import uuid

import httpx
from nats.aio.client import Client

from tests.api.http import STORES, create, problem
from tests.api.test_api_stores import set_columns
from tests.support import envelope, stream_messages
from woostore_shared.db import Database
from woostore_shared.models import StoreStatus


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
    }  # fmt: skip
    listed = (await client.get(f"{STORES}/{store_id}/backups")).json()["items"]
    assert listed == [backup]
    assert (await client.get(f"{STORES}/{store_id}/backups/{backup['id']}")).json() == backup
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
    assert "a backing_up store cannot be backed up" in again["detail"]
    assert len((await client.get(f"{STORES}/{store_id}/backups")).json()["items"]) == 1


async def test_a_backup_of_another_store_is_not_found_under_this_one(
    client: httpx.AsyncClient, database: Database
) -> None:
    first, second = await ready_store(client, database), await ready_store(client, database)
    backup = (await client.post(f"{STORES}/{first}/backups")).json()

    problem(await client.get(f"{STORES}/{second}/backups/{backup['id']}"), 404)
    problem(await client.get(f"{STORES}/{first}/backups/{uuid.uuid4()}"), 404)
    assert (await client.get(f"{STORES}/{second}/backups")).json() == {"items": []}
