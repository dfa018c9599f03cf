"""/api/v1/stores: what the API accepts, what it stores, and what it announces on JetStream.

The API runs in-process with its real lifespan, against a real PostgreSQL and a real
nats-server; states the API cannot reach by itself (a ready store) are set in the database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from nats.aio.client import Client
from sqlmodel import col, select, update

from tests.api.conftest import NewTenant
from tests.api.http import STORES, create, problem
from tests.support import ADMIN_TOKEN, envelope, stream_messages
from woostore_shared import lifecycle
from woostore_shared.db import Database
from woostore_shared.events import Progress, Ready, StepInfo
from woostore_shared.lifecycle import transition
from woostore_shared.models import (
    AuditEntry,
    BackupStatus,
    BackupTrigger,
    Store,
    StoreBackup,
    StoreChange,
    StoreEvent,
    StoreStatus,
    StoreStep,
    utcnow,
)
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import CredentialCipher
from woostore_shared.settings import Settings
from woostore_shared.unit_of_work import UnitOfWork

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
TYPE = "io.woostore.store."


# --- helpers ------------------------------------------------------------------------------


async def event_rows(db: Database, store_id: str | None = None) -> list[StoreEvent]:
    query = select(StoreEvent).order_by(col(StoreEvent.time))
    if store_id is not None:
        query = query.where(col(StoreEvent.store_id) == uuid.UUID(store_id))
    async with db.session() as session:
        return list(await session.exec(query))


async def set_columns(db: Database, store_id: str, **values: Any) -> None:
    async with db.session() as session:
        await session.exec(
            update(Store).where(col(Store.id) == uuid.UUID(store_id)).values(**values)
        )
        await session.commit()


# --- creating a store ---------------------------------------------------------------------


async def test_creating_a_store_queues_it_and_publishes_store_requested(
    api: FastAPI, client: httpx.AsyncClient, nats_client: Client, database: Database
) -> None:
    response = await client.post(STORES, json={"name": "My Shop"})

    assert response.status_code == 202, response.text
    store = response.json()
    assert store["name"] == "My Shop"
    assert store["status"] == "queued"
    assert store["simulated"] is True
    assert store["type"] == "woocommerce"
    assert store["progress"] == 0
    assert store["step"] is None
    assert store["links"]["self"] == f"{STORES}/{store['id']}"
    assert response.headers["Location"] == store["links"]["self"]  # where to follow it
    slug = store["slug"]
    assert DNS_LABEL.fullmatch(slug), slug
    assert len(slug) <= 40
    assert slug.startswith("my-shop-")

    [message] = await stream_messages(nats_client)
    event = envelope(message)
    assert message.subject == f"store.requested.{store['id']}"
    assert message.headers is not None
    assert message.headers["Nats-Msg-Id"] == event["id"]
    assert event["specversion"] == "1.0"
    assert event["type"] == TYPE + "requested"
    assert event["subject"] == store["id"]
    assert event["tenantid"]
    assert event["correlationid"]
    assert event["data"]["status"] == "queued"
    assert event["data"]["store"]["id"] == store["id"]
    assert event["data"]["store"]["slug"] == slug

    await api.state.outbox.mark()  # what it marks a moment after publishing, now
    [row] = await event_rows(database, store["id"])
    assert str(row.id) == event["id"]
    assert row.published_at is not None
    assert row.stream_sequence == message.seq


@pytest.mark.parametrize(
    ("name", "slug_base"),
    [
        ("Café Ünïcode", "cafe-unicode"),
        ("東京ストア", "store"),
        ("🛒 Emoji Shop 🛍️", "emoji-shop"),
        ("🛒🛍️", "store"),
        ("--- Shop!! ---", "shop"),
        ("x" * 29 + " " + "y" * 20, "x" * 29),  # cut at 30 chars, just after a hyphen
        ("A" * 50, "a" * 30),
        ("\U0001f469\u200d\U0001f4bb Dev Shop", "dev-shop"),  # woman technologist: a ZWJ sequence
        ("\U0001f3f3\ufe0f\u200d\U0001f308 Pride", "pride"),  # rainbow flag: a ZWJ sequence
        ("\u06a9\u062a\u0627\u0628\u200c\u0641\u0631\u0648\u0634\u06cc", "store"),  # Persian, ZWNJ
        ("\U0001fae8 Shaking Shop", "shaking-shop"),  # Unicode 15 emoji: unassigned to Python 3.11
    ],
)
async def test_any_script_is_accepted_and_slugged_to_a_dns_label(
    client: httpx.AsyncClient, name: str, slug_base: str
) -> None:
    store = await create(client, name)

    assert store["name"] == name
    assert re.fullmatch(rf"{re.escape(slug_base)}-[0-9a-f]{{6}}", store["slug"]), store["slug"]
    assert DNS_LABEL.fullmatch(store["slug"])
    assert len(store["slug"]) <= 40


async def test_a_name_is_stored_in_composed_unicode_form_without_outer_whitespace(
    client: httpx.AsyncClient,
) -> None:
    store = await create(client, "  Cafe\u0301 Ünïcode\n")

    assert store["name"] == "Café Ünïcode"
    assert store["slug"].startswith("cafe-unicode-")
    fetched = (await client.get(f"{STORES}/{store['id']}")).json()
    assert fetched["name"] == "Café Ünïcode"


async def test_two_stores_with_the_same_name_get_different_slugs(
    client: httpx.AsyncClient,
) -> None:
    first, second = await create(client, "Twin"), await create(client, "Twin")

    assert first["slug"] != second["slug"]
    assert first["id"] != second["id"]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "\t\n",
        "a" * 51,
        "\x00",
        "My\x00Shop",
        "\u200b",  # zero-width space
        "Shop\u200b",
        "My\tShop",
        "\u202eevil",  # right-to-left override
        "two\nlines",
        "\u200d",  # a joiner alone...
        "\u200dShop",  # ...or at an edge...
        "Shop\u200c",
        "Sh\u200d\u200dop",  # ...or doubled...
        "Shop \u200d Two",  # ...or next to a space joins nothing
        "\u3164",  # a Hangul filler: a letter that shows nothing, listed as a blank row
        "Shop\u3164",
        "\u2800\u2800",  # the blank Braille pattern
        "\u0301\u0301",  # combining marks with nothing to combine with
    ],
)
async def test_an_invalid_name_is_a_422_problem_and_creates_nothing(
    client: httpx.AsyncClient, nats_client: Client, database: Database, name: str
) -> None:
    response = await client.post(STORES, json={"name": name})

    body = problem(response, 422)
    assert "name" in body["detail"]
    assert (await client.get(STORES)).json()["items"] == []
    assert await event_rows(database) == []
    assert await stream_messages(nats_client) == []


async def test_a_name_of_exactly_fifty_characters_is_accepted(client: httpx.AsyncClient) -> None:
    store = await create(client, "é" * 50)

    assert store["name"] == "é" * 50


@pytest.mark.parametrize(
    "body",
    [
        {"name": "My Shop", "color": "red"},
        {"name": "My Shop", "type": "shopify"},
        {"name": "My Shop", "type": "WooCommerce"},
        {"name": 42},
        {},
        ["My Shop"],
    ],
)
async def test_a_body_outside_the_schema_is_a_422_problem(
    client: httpx.AsyncClient, database: Database, body: object
) -> None:
    response = await client.post(STORES, json=body)

    problem(response, 422)
    assert await event_rows(database) == []


async def test_the_type_woocommerce_may_be_given_explicitly(client: httpx.AsyncClient) -> None:
    response = await client.post(STORES, json={"name": "Typed", "type": "woocommerce"})

    assert response.status_code == 202
    assert response.json()["type"] == "woocommerce"


# --- authentication and addressing --------------------------------------------------------

SOME_ID = "3f2b6a8e-0c1d-4e5f-8a9b-0c1d2e3f4a5b"
PROTECTED = [
    ("GET", STORES),
    ("POST", STORES),
    ("GET", f"{STORES}/{SOME_ID}"),
    ("DELETE", f"{STORES}/{SOME_ID}"),
    ("GET", f"{STORES}/{SOME_ID}/credentials"),
    ("GET", "/api/v1/platform"),
    ("POST", "/api/v1/events/ticket"),
]


@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        (None, "Bearer"),
        # RFC 6750: a token sent and refused is named as such.
        ("Bearer wrong-token", 'Bearer error="invalid_token"'),
        ("Bearer ", "Bearer"),
        ("Basic " + base64.b64encode(f"{ADMIN_TOKEN}:".encode()).decode(), "Bearer"),
        (ADMIN_TOKEN, "Bearer"),
    ],
)
async def test_without_the_admin_bearer_token_every_endpoint_is_a_401_problem(
    anonymous: httpx.AsyncClient, authorization: str | None, challenge: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in PROTECTED:
        response = await anonymous.request(method, path, headers=headers, json={"name": "Shop"})

        assert response.status_code == 401, (method, path, response.text)
        problem(response, 401)
        assert response.headers["WWW-Authenticate"] == challenge, (method, path)


async def test_an_unauthenticated_request_creates_nothing(
    anonymous: httpx.AsyncClient, database: Database, nats_client: Client
) -> None:
    response = await anonymous.post(
        STORES, json={"name": "Sneaky"}, headers={"Authorization": "Bearer nope"}
    )

    assert response.status_code == 401
    async with database.session() as session:
        assert list(await session.exec(select(Store))) == []
    assert await stream_messages(nats_client) == []


async def test_an_unauthenticated_invalid_body_is_401_not_422(
    anonymous: httpx.AsyncClient,
) -> None:
    """Validation errors would tell a stranger about the API; authentication comes first."""
    response = await anonymous.post(STORES, json={"name": ""})

    problem(response, 401)


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("DELETE", ""), ("GET", "/credentials")]
)
async def test_an_unknown_store_is_a_404_problem_naming_it(
    client: httpx.AsyncClient, method: str, suffix: str
) -> None:
    unknown = str(uuid.uuid4())

    response = await client.request(method, f"{STORES}/{unknown}{suffix}")

    body = problem(response, 404)
    assert unknown in body["detail"]


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("DELETE", ""), ("GET", "/credentials")]
)
async def test_a_malformed_store_id_is_a_422_problem(
    client: httpx.AsyncClient, method: str, suffix: str
) -> None:
    response = await client.request(method, f"{STORES}/not-a-uuid{suffix}")

    body = problem(response, 422)
    assert "store_id" in body["detail"]


async def test_an_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    problem(await client.get("/api/v1/nothing-here"), 404)


async def test_a_store_of_another_tenant_does_not_exist_for_a_tenant_key(
    client: httpx.AsyncClient, new_tenant: NewTenant, database: Database
) -> None:
    theirs_client, mine_client = await new_tenant("theirs"), await new_tenant("mine")
    theirs = await create(theirs_client, "Theirs")
    mine = await create(mine_client, "Mine")

    listed = (await mine_client.get(STORES)).json()["items"]
    assert [s["id"] for s in listed] == [mine["id"]]
    for method, suffix in [("GET", ""), ("DELETE", ""), ("GET", "/credentials")]:
        response = await mine_client.request(method, f"{STORES}/{theirs['id']}{suffix}")
        problem(response, 404)
    async with database.session() as session:
        still = await session.get(Store, uuid.UUID(theirs["id"]))
    assert still is not None
    assert still.status is StoreStatus.QUEUED
    # The admin sees both.
    everyone = {s["id"] for s in (await client.get(STORES)).json()["items"]}
    assert everyone == {theirs["id"], mine["id"]}


# --- deleting a store ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("backing_up", "being backed up"),
        ("updating", "being changed"),
        ("restoring", "being restored"),
    ],
)
async def test_deleting_a_busy_store_is_accepted_and_waits_for_its_work_to_end(
    client: httpx.AsyncClient, nats_client: Client, database: Database, status: str, said: str
) -> None:
    """It was a 409: its owner had to come back once the work ended. A change or a restore
    runs to its end and a backup is stopped (the provisioner's part; lifecycle.py ends the
    work, then deletes the store); until then the store is as it was, and nothing else may
    be asked of it, nor later (no Retry-After)."""
    store = await create(client)
    await set_columns(database, store["id"], status=StoreStatus(status))

    response = await client.delete(f"{STORES}/{store['id']}")

    assert response.status_code == 202, response.text
    asked = response.json()
    assert (asked["status"], asked["actions"]) == (status, [])
    assert asked["delete_requested_at"] is not None
    shown = (await client.get(f"{STORES}/{store['id']}")).json()
    assert {k: shown[k] for k in asked} | {"updated_at": None} == asked | {"updated_at": None}
    backup = await client.post(f"{STORES}/{store['id']}/backups")
    assert (backup.status_code, backup.headers.get("Retry-After")) == (409, None)
    assert problem(backup, 409)["detail"] == (
        f"a store {said}, to be deleted, cannot be backed up: it is deleted as it ends"
    )
    again = await client.delete(f"{STORES}/{store['id']}")
    assert again.status_code == 202
    assert again.json()["delete_requested_at"] == asked["delete_requested_at"]
    messages = await stream_messages(nats_client, store["id"])
    assert [m.subject for m in messages] == [
        f"store.requested.{store['id']}",
        f"store.delete_queued.{store['id']}",
    ]
    assert envelope(messages[1])["data"] == {"status": status, "actions": []}
    audit = (await client.get("/api/v1/audit")).json()["items"]
    assert [a["action"] for a in audit].count("store.delete") == 1


async def test_a_ready_store_whose_queued_deletion_was_never_started_is_deleted_when_asked(
    client: httpx.AsyncClient, database: Database
) -> None:
    """Ended by a provisioner of the release before (a rolling upgrade of the platform), its
    work left it ready, its deletion recorded but not started. The reaper starts it
    (tests/reaper); its owner asking again need not wait for that."""
    store = await create(client)
    asked = datetime.now(UTC) - timedelta(minutes=5)
    await set_columns(database, store["id"], status=StoreStatus.READY, delete_requested_at=asked)
    assert (await client.get(f"{STORES}/{store['id']}")).json()["actions"] == []

    response = await client.delete(f"{STORES}/{store['id']}")

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "deleting"


@pytest.mark.parametrize("status", ["deleting", "deleted"])
async def test_deleting_a_store_again_changes_nothing_and_answers_how_it_is(
    client: httpx.AsyncClient, nats_client: Client, database: Database, status: str
) -> None:
    """A client whose DELETE's answer was lost sends it again: it was a 409 once the store
    was deleted, an error for what it had asked for and got."""
    store = await create(client)
    await set_columns(database, store["id"], status=StoreStatus(status))
    audited = len((await client.get("/api/v1/audit")).json()["items"])

    again = await client.delete(f"{STORES}/{store['id']}")

    assert again.status_code == 202, again.text
    assert again.json()["status"] == status
    subjects = [m.subject for m in await stream_messages(nats_client, store["id"])]
    assert subjects == [f"store.requested.{store['id']}"]  # nothing asked of anyone
    assert len((await client.get("/api/v1/audit")).json()["items"]) == audited


@pytest.mark.parametrize("status", ["queued", "provisioning", "ready", "failed"])
async def test_deleting_a_store_marks_it_deleting_and_publishes_delete_requested(
    api: FastAPI, client: httpx.AsyncClient, nats_client: Client, database: Database, status: str
) -> None:
    store = await create(client)
    await set_columns(database, store["id"], status=StoreStatus(status))

    response = await client.delete(f"{STORES}/{store['id']}")

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "deleting"
    assert (await client.get(f"{STORES}/{store['id']}")).json()["status"] == "deleting"
    messages = await stream_messages(nats_client, store["id"])
    assert [m.subject for m in messages] == [
        f"store.requested.{store['id']}",
        f"store.delete_requested.{store['id']}",
    ]
    deletion = envelope(messages[1])
    assert deletion["type"] == TYPE + "delete_requested"
    assert deletion["data"] == {"status": "deleting", "actions": []}
    assert messages[1].headers is not None
    assert messages[1].headers["Nats-Msg-Id"] == deletion["id"]
    await api.state.outbox.mark()  # what it marks a moment after publishing, now
    rows = await event_rows(database, store["id"])
    assert [r.type for r in rows] == [TYPE + "requested", TYPE + "delete_requested"]
    assert all(r.published_at is not None for r in rows)


# --- retrying a failed store -------------------------------------------------------------


async def failed_store(client: httpx.AsyncClient, database: Database, name: str) -> str:
    """A store that failed at its install step, after a first attempt left traces behind."""
    store_id = str((await create(client, name))["id"])
    await set_columns(
        database, store_id, status=StoreStatus.FAILED, failure_reason="helm: timed out",
        step_name="install", chart_version="0.2.0", release_revision=1, replays=2,
    )  # fmt: skip
    async with database.session() as session:  # the failed attempt's journal
        session.add(StoreStep(store_id=uuid.UUID(store_id), phase="provision", name="namespace"))
        await session.commit()
    return store_id


async def test_a_failed_store_is_retried_from_scratch_once_cleaned_up(
    client: httpx.AsyncClient, nats_client: Client, database: Database
) -> None:
    store_id = await failed_store(client, database, "Second Try")
    path = f"{STORES}/{store_id}"
    assert "retry" not in (await client.get(path)).json()["actions"]

    early = await client.post(f"{path}/retry")  # its namespace may still be going

    assert problem(early, 409)["status_now"] == "failed"
    assert "still being cleaned up" in problem(early, 409)["detail"]
    assert int(early.headers["Retry-After"]) >= 1
    # As far as the failed attempt got: 3 steps of 11.
    await set_columns(database, store_id, cleaned_up_at=utcnow(), progress=0.27)
    before = (await client.get(path)).json()
    assert "retry" in before["actions"]

    response = await client.post(f"{path}/retry")

    assert response.status_code == 202, response.text
    store = response.json()
    assert (store["id"], store["name"], store["slug"]) == (store_id, "Second Try", before["slug"])
    assert (store["status"], store["failure_reason"], store["cleaned_up_at"]) == (
        "queued", None, None,
    )  # fmt: skip
    assert (store["chart_version"], store["release_revision"]) == (None, None)
    assert store["progress"] == 0  # nothing of the new attempt done yet
    assert store["queue_position"] == 1
    messages = await stream_messages(nats_client, store_id)
    assert messages[-1].subject == f"store.requested.{store_id}"
    async with database.session() as session:
        steps = list(
            await session.exec(
                select(StoreStep).where(col(StoreStep.store_id) == uuid.UUID(store_id))
            )
        )
        row = await session.get(Store, uuid.UUID(store_id))
    assert steps == []  # every step runs afresh
    assert row is not None
    assert row.replays == 0
    audit = (await client.get("/api/v1/audit")).json()["items"]
    assert (audit[0]["action"], audit[0]["target"]) == ("store.retry", f"store/{store_id}")
    again = await client.post(f"{path}/retry")  # queued now: nothing to retry
    assert problem(again, 409)["status_now"] == "queued"


async def test_a_retried_stores_wait_counts_from_the_retry_not_from_its_making(
    client: httpx.AsyncClient, nats_client: Client, database: Database
) -> None:
    """Made (and failed) two hours ago, retried now: its owner waits from now, and its time
    to ready says so (it said two hours and more)."""
    store_id = await failed_store(client, database, "Late Retry")
    made = utcnow() - timedelta(hours=2)
    await set_columns(
        database, store_id, created_at=made, requested_at=made, cleaned_up_at=utcnow()
    )

    store = (await client.post(f"{STORES}/{store_id}/retry")).json()

    asked = datetime.fromisoformat(store["requested_at"])
    assert asked > made + timedelta(hours=1)
    assert datetime.fromisoformat(store["created_at"]) == made
    messages = await stream_messages(nats_client, store_id)
    told = envelope(messages[-1])["data"]["store"]["requested_at"]
    assert datetime.fromisoformat(told) == asked  # a dashboard following events sees it too
    await set_columns(
        database, store_id, status=StoreStatus.READY, ready_at=asked + timedelta(seconds=42)
    )
    assert (await client.get(f"{STORES}/{store_id}")).json()["ready_in_seconds"] == 42.0


async def test_a_claim_by_a_replica_older_than_requested_at_counts_from_the_claim(
    client: httpx.AsyncClient, database: Database
) -> None:
    """Such a replica set the claimed store's created_at and left its requested_at at the
    pooled store's making, three hours before."""
    store = await create(client, "Claimed Mid-Rollout")
    claimed = utcnow()
    await set_columns(
        database, store["id"], status=StoreStatus.READY, created_at=claimed,
        requested_at=claimed - timedelta(hours=3), ready_at=claimed + timedelta(seconds=7),
    )  # fmt: skip

    shown = (await client.get(f"{STORES}/{store['id']}")).json()

    assert datetime.fromisoformat(shown["requested_at"]) == claimed
    assert shown["ready_in_seconds"] == 7.0


async def test_a_retry_needs_room_under_the_tenants_cap(
    client: httpx.AsyncClient, database: Database, settings: Settings, api: FastAPI
) -> None:
    store_id = await failed_store(client, database, "Crowded Out")
    await set_columns(database, store_id, cleaned_up_at=utcnow())
    api.state.settings = settings.model_copy(update={"tenant_store_limit": 1})
    await create(client, "Took Its Place")

    refused = await client.post(f"{STORES}/{store_id}/retry")

    body = problem(refused, 409)
    assert body["limit"] == "tenant-stores"
    # Said so that it holds for a tenant over its limit (lowered below what it had) too.
    assert body["detail"] == (
        "this tenant has reached its limit of 1 store, counting those being deleted until they "
        "are gone: delete stores first, or ask an admin to raise the limit"
    )
    assert (await client.get(f"{STORES}/{store_id}")).json()["status"] == "failed"


# --- upgrading and rolling back ----------------------------------------------------------


@pytest.mark.parametrize("change", ["upgrade", "rollback"])
async def test_a_change_of_a_ready_store_marks_it_updating_and_publishes_change_requested(
    client: httpx.AsyncClient, nats_client: Client, database: Database, change: str
) -> None:
    store = await create(client)
    await set_columns(
        database, store["id"], status=StoreStatus.READY, chart_version="0.2.0", release_revision=2
    )
    async with database.session() as session:  # a journal left by an earlier change
        session.add(StoreStep(store_id=uuid.UUID(store["id"]), phase=change, name="verify"))
        await session.commit()

    response = await client.post(f"{STORES}/{store['id']}/{change}")

    assert response.status_code == 202, response.text
    assert (response.json()["status"], response.json()["change"]) == ("updating", change)
    messages = await stream_messages(nats_client, store["id"])
    assert messages[-1].subject == f"store.change_requested.{store['id']}"
    data = envelope(messages[-1])["data"]
    assert (data["status"], data["change"]) == ("updating", change)
    backups = (await client.get(f"{STORES}/{store['id']}/backups")).json()["items"]
    assert [(b["id"], b["trigger"], b["status"]) for b in backups] == [
        (data["backup_id"], f"before_{change}", "running")
    ]
    async with database.session() as session:
        journal = list(await session.exec(select(StoreStep.name)))
    assert journal == []  # the new change runs every step afresh
    audit = (await client.get("/api/v1/audit")).json()["items"]
    assert (audit[0]["action"], audit[0]["target"]) == (f"store.{change}", f"store/{store['id']}")


async def test_a_settings_change_gives_a_ready_store_the_settings_chosen_over_its_own(
    client: httpx.AsyncClient, nats_client: Client, database: Database
) -> None:
    """Those left out stay as they are; the store is updating with the new ones, backed up
    first, and the audit log says what was asked for."""
    chosen = {"currency": "EUR", "country": "DE", "language": "de_DE"}
    store = (await client.post(STORES, json={"name": "Laden", "settings": chosen})).json()
    await set_columns(database, store["id"], status=StoreStatus.READY)

    response = await client.post(
        f"{STORES}/{store['id']}/settings", json={"country": "IN", "state": "ka"}
    )

    assert response.status_code == 202, response.text
    changing = response.json()
    assert (changing["status"], changing["change"]) == ("updating", "settings")
    assert changing["settings"] == {
        "currency": "EUR", "country": "IN", "state": "KA", "language": "de_DE",
        "admin_email": None, "sample_products": True,
    }  # fmt: skip
    data = envelope((await stream_messages(nats_client, store["id"]))[-1])["data"]
    assert (data["status"], data["change"]) == ("updating", "settings")
    backups = (await client.get(f"{STORES}/{store['id']}/backups")).json()["items"]
    assert [(b["id"], b["trigger"]) for b in backups] == [(data["backup_id"], "before_settings")]
    audit = (await client.get("/api/v1/audit")).json()["items"][0]
    assert (audit["action"], audit["details"]) == (
        "store.settings",
        {"country": "IN", "state": "KA"},
    )


async def test_a_settings_change_is_refused_when_there_is_nothing_it_may_change(
    client: httpx.AsyncClient, database: Database
) -> None:
    store = await create(client)
    settings = f"{STORES}/{store['id']}/settings"

    queued = problem(await client.post(settings, json={"currency": "EUR"}), 409)
    assert queued["detail"] == "a queued store cannot be changed; it can be when it is ready"
    await set_columns(database, store["id"], status=StoreStatus.READY)
    for body, says in [
        ({}, "name a setting to change: currency, country (and state), language or admin_email"),
        ({"sample_products": False}, "sample_products is how a store starts"),
        ({"state": "MH", "country": "DE"}, "'MH' is not a state of DE (ISO 3166-2)"),
        ({"currency": "EUR", "name": "Other"}, "Extra inputs are not permitted"),
    ]:
        assert says in problem(await client.post(settings, json=body), 422)["detail"]
    assert (await client.get(f"{STORES}/{store['id']}")).json()["status"] == "ready"
    # A store gone, or going, never will be changed: no "when" is told ("when it is ready").
    for status, says in [
        (StoreStatus.DELETING, "a store being deleted cannot be changed"),
        (StoreStatus.DELETED, "a deleted store cannot be changed"),
    ]:
        await set_columns(database, store["id"], status=status)
        gone = await client.post(settings, json={"currency": "EUR"})
        assert (problem(gone, 409)["detail"], gone.headers.get("retry-after")) == (says, None)


async def test_a_state_named_alone_is_one_of_the_stores_country(
    client: httpx.AsyncClient, database: Database
) -> None:
    """It was refused ("state needs country") though the store has a country (a user's
    review): the owner had to name the country the store already had."""
    store = await create(client)  # made in the platform's default country, India
    await set_columns(database, store["id"], status=StoreStatus.READY)
    settings = f"{STORES}/{store['id']}/settings"

    elsewhere = problem(await client.post(settings, json={"state": "BY"}), 422)
    moved = await client.post(settings, json={"state": "mh"})

    assert elsewhere["detail"] == "body.state: 'BY' is not a state of IN (ISO 3166-2)"
    assert elsewhere["errors"] == [
        {"location": ["body", "state"], "message": "'BY' is not a state of IN (ISO 3166-2)"}
    ]
    assert moved.status_code == 202, moved.text
    assert (moved.json()["settings"]["country"], moved.json()["settings"]["state"]) == ("IN", "MH")


async def test_settings_asked_for_as_the_store_has_them_are_set_again(
    client: httpx.AsyncClient, database: Database
) -> None:
    """The shop may hold others (changed in WooCommerce, or a change that failed half-way):
    refused as unchanged, they could not be put back. The audit log says an admin's email
    changed, without writing it."""
    store = await create(client)
    await set_columns(database, store["id"], status=StoreStatus.READY)

    again = await client.post(
        f"{STORES}/{store['id']}/settings",
        json={"currency": "inr", "admin_email": "owner@example.com"},
    )

    assert again.status_code == 202, again.text
    assert again.json()["settings"]["currency"] == "INR"
    audit = (await client.get("/api/v1/audit")).json()["items"][0]
    assert audit["details"] == {"currency": "INR", "admin_email": "changed"}


async def test_an_admin_email_given_as_null_returns_the_store_to_the_default_one(
    client: httpx.AsyncClient, database: Database
) -> None:
    """admin@<the store's host> is the default, with no value of its own: a store given
    another address could not be changed back (null was "name a setting to change")."""
    chosen = {"admin_email": "owner@example.com", "currency": "EUR"}
    store = (await client.post(STORES, json={"name": "Mailed", "settings": chosen})).json()
    await set_columns(database, store["id"], status=StoreStatus.READY)

    back = await client.post(f"{STORES}/{store['id']}/settings", json={"admin_email": None})

    assert back.status_code == 202, back.text
    settings = back.json()["settings"]
    assert (settings["admin_email"], settings["currency"]) == (None, "EUR")
    async with database.session() as session:
        change = (await session.exec(select(StoreChange))).one()
    assert change.settings_asked == ["admin_email"]  # the recipe sets it alone, as the default
    audit = (await client.get("/api/v1/audit")).json()["items"][0]
    assert audit["details"] == {"admin_email": "default"}
    # Any other null is as if left out: nothing to change.
    await set_columns(database, store["id"], status=StoreStatus.READY)
    nothing = problem(
        await client.post(f"{STORES}/{store['id']}/settings", json={"currency": None}), 422
    )
    assert "name a setting to change" in nothing["detail"]


async def test_a_store_keeps_the_settings_its_owner_chose_over_the_platforms_defaults(
    client: httpx.AsyncClient,
) -> None:
    chosen = {"currency": "EUR", "country": "DE", "language": "de_DE", "sample_products": False}

    created = (await client.post(STORES, json={"name": "Laden", "settings": chosen})).json()
    plain = (await client.post(STORES, json={"name": "Plain"})).json()

    assert created["settings"] == {
        **chosen,
        "state": None,  # the default state (KA) is India's, not Germany's
        "admin_email": None,
    }
    assert (await client.get(f"{STORES}/{created['id']}")).json()["settings"] == (
        created["settings"]
    )
    assert plain["settings"] == {
        "currency": "INR",
        "country": "IN",
        "state": "KA",
        "language": "en_US",
        "admin_email": None,
        "sample_products": True,
    }


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{name:", "Expecting property name enclosed in double quotes (at character 1)"),
        (b"\xff\xfe", "Expecting value (at character 0)"),  # not UTF-8
        (b'{"name": "\xff"}', "it is not UTF-8"),  # was FastAPI's own http-400
        (b"[" * 30_000 + b"]" * 30_000, "it nests too deep"),
    ],
)
async def test_a_body_that_is_no_json_is_a_400_and_nothing_is_created(
    client: httpx.AsyncClient, nats_client: Client, body: bytes, says: str
) -> None:
    """Documented as 400 in every operation taking a body; it was a 422 saying
    "body.1: JSON decode error"."""
    response = await client.post(STORES, content=body, headers={"Content-Type": "application/json"})

    answer = problem(response, 400)
    assert answer["type"].endswith("/malformed-body")
    assert answer["detail"] == f"the body is not JSON: {says}"
    assert (await client.get(STORES)).json()["items"] == []
    assert await stream_messages(nats_client) == []
    operation = (await client.get("/openapi.json")).json()["paths"][STORES]["post"]
    assert "400" in operation["responses"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_not_sent_as_json_is_a_415_naming_what_it_was_sent_as(
    client: httpx.AsyncClient, nats_client: Client, content_type: str | None
) -> None:
    """FastAPI reads a body as JSON only when its Content-Type says so: this one was a 422
    saying "body: Input should be a valid dictionary", as if no field had been sent."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await client.post(STORES, content=b'{"name": "Plain Shop"}', headers=headers)

    answer = problem(response, 415)
    assert answer["type"].endswith("/unsupported-media-type")
    assert answer["detail"] == (
        "the body must be JSON, sent as Content-Type: application/json"
        f" (it was sent as {content_type or 'nothing named'})"
    )
    assert await stream_messages(nats_client) == []
    operation = (await client.get("/openapi.json")).json()["paths"][STORES]["post"]
    assert "415" in operation["responses"]
    # A field error in a JSON body is still a 422 naming the field.
    named = await client.post(
        STORES, json={"name": 7}, headers={"Content-Type": "application/json"}
    )
    assert problem(named, 422)["errors"][0]["location"] == ["body", "name"]


async def test_a_body_an_operation_would_ignore_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, database: Database, nats_client: Client
) -> None:
    """A client pinning a version ({"chart_version": ...}) expected it read: /upgrade would
    have upgraded to the platform's chart. Saying nothing ({} or no body) is accepted."""
    store = await create(client)
    await set_columns(database, store["id"], status=StoreStatus.READY, release_revision=1)
    path = f"{STORES}/{store['id']}/upgrade"

    pinned = await client.post(path, json={"chart_version": "0.1.0"})
    body = problem(pinned, 422)

    assert body["errors"] == [{"location": ["body"], "message": body["detail"]}]
    assert (await client.get(f"{STORES}/{store['id']}")).json()["status"] == "ready"
    subjects = [m.subject for m in await stream_messages(nats_client, store["id"])]
    assert subjects == [f"store.requested.{store['id']}"]  # nothing asked of the provisioner
    assert (await client.post(path, json={})).status_code == 202


async def test_a_method_a_path_does_not_take_is_a_405_naming_those_it_takes(
    client: httpx.AsyncClient,
) -> None:
    response = await client.put(STORES)

    refused = problem(response, 405)
    # Each method has a route of its own there: Starlette's own Allow named the first only.
    assert response.headers["Allow"] == "GET, HEAD, POST"
    # In the platform's words, as its other problems are: it was "Method Not Allowed" twice.
    assert (refused["title"], refused["type"].rsplit("/", 1)[1]) == (
        "Method not allowed",
        "method-not-allowed",
    )
    assert refused["detail"] == "/api/v1/stores does not take PUT; it takes GET, HEAD, POST"
    nowhere = problem(await client.get("/api/v1/nowhere"), 404)
    assert (nowhere["title"], nowhere["detail"]) == (
        "Not found",
        "nothing is served at /api/v1/nowhere",
    )
    one = await client.post(f"{STORES}/{uuid.uuid4()}")
    problem(one, 405)
    assert one.headers["Allow"] == "DELETE, GET, HEAD"
    static = await client.post("/static/app.js")  # a mount's own 405 keeps its own Allow
    assert problem(static, 405)["detail"] == "/static/app.js does not take POST; it takes GET, HEAD"
    assert static.headers["Allow"] == "GET, HEAD"


async def test_head_is_answered_wherever_get_is_without_the_body(
    client: httpx.AsyncClient,
) -> None:
    """`curl -I` and uptime checks send HEAD; FastAPI's GET routes answered it 405."""
    store = await create(client)
    for path in (STORES, f"{STORES}/{store['id']}", "/openapi.json", "/"):
        got, head = await client.get(path), await client.head(path)

        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["Content-Type"] == got.headers["Content-Type"]
    missing = await client.head(f"{STORES}/{uuid.uuid4()}")
    assert (missing.status_code, missing.content) == (404, b"")
    assert missing.headers["Content-Type"] == "application/problem+json"


async def test_codes_in_any_case_are_kept_as_iso_writes_them(client: httpx.AsyncClient) -> None:
    """WooCommerce and the store image take "EUR", "IN" and "KA" only: "eur" kept as typed
    failed the store's personalise step from the warm pool. WordPress names its locales
    "de_DE" and "de_DE_formal": "de_de" was kept as typed, and would install no language."""
    chosen = {"currency": "eur", "country": "in", "state": "ka", "language": "DE_de_Formal"}

    created = (await client.post(STORES, json={"name": "Dukaan", "settings": chosen})).json()

    assert {k: created["settings"][k] for k in chosen} == {
        "currency": "EUR", "country": "IN", "state": "KA", "language": "de_DE_formal",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("chosen", "field", "says"),
    [
        ({"currency": "EURO"}, "currency", "at most 3"),
        ({"currency": "XYZ"}, "currency", "ISO 4217"),
        ({"currency": "XXX"}, "currency", "a shop sells in"),  # ISO's "no currency"
        ({"currency": "XAU"}, "currency", "a shop sells in"),  # gold
        ({"country": "XX"}, "country", "ISO 3166-1"),
        ({"country": "DE", "state": "KA"}, "settings", "not a state of DE"),
        ({"state": "KA"}, "settings", "state needs country"),
        ({"language": "english"}, "language", "WordPress locale"),
        ({"language": "xx_YY"}, "language", "WordPress locale"),
        ({"language": "fr_xx"}, "language", "WordPress locale"),  # no country XX
        ({"language": "de_DE_x"}, "language", "WordPress locale"),  # no variant so short
        ({"language": "de_D\u212a"}, "language", "WordPress locale"),  # a Kelvin sign, not K
        ({"admin_email": "not-an-address"}, "admin_email", "email"),
        ({"colour": "blue"}, "colour", "Extra inputs are not permitted"),
    ],
)
async def test_bad_settings_are_a_422_naming_the_field_and_nothing_is_created(
    client: httpx.AsyncClient,
    nats_client: Client,
    chosen: dict[str, Any],
    field: str,
    says: str,
) -> None:
    response = await client.post(STORES, json={"name": "Shop", "settings": chosen})

    body = problem(response, 422)
    assert any(
        field in [str(part) for part in error["location"]] and says in error["message"]
        for error in body["errors"]
    ), body
    assert "Value error, " not in body["detail"]  # the validator's own words alone
    assert (await client.get(STORES)).json()["items"] == []
    assert await stream_messages(nats_client) == []


@pytest.mark.parametrize(("revision", "first"), [(1, None), (None, None), (2, 2)])
async def test_a_rollback_with_no_earlier_revision_is_refused_at_once(
    client: httpx.AsyncClient, database: Database, revision: int | None, first: int | None
) -> None:
    """Not offered, and refused as asked (it was accepted, then failed in the background,
    leaving a failed backup behind): its first revision, none recorded, or the first of its
    owner's after the warm pool's."""
    store = await create(client)
    await set_columns(
        database, store["id"], status=StoreStatus.READY, release_revision=revision,
        first_revision=first,
    )  # fmt: skip

    refused = await client.post(f"{STORES}/{store['id']}/rollback")

    body = problem(refused, 409)
    assert body["title"] == "Nothing to roll back to"
    # Its revision named: a store claimed from the pool runs revision 2 (a user's review).
    assert (
        body["detail"]
        == {
            (
                1,
                None,
            ): f"store {store['id']} runs revision 1 of its release, the first made for it: "
            "there is none of its own earlier to return to",
            (None, None): f"store {store['id']} has no release revision recorded to return to",
            (2, 2): f"store {store['id']} runs revision 2 of its release, the first made for it "
            "(the one before it was the warm pool's): there is none of its own earlier to "
            "return to",
        }[revision, first]
    )
    assert "Retry-After" not in refused.headers
    shown = (await client.get(f"{STORES}/{store['id']}")).json()
    assert (shown["status"], shown["last_change"]) == ("ready", None)
    assert (await client.get(f"{STORES}/{store['id']}/backups")).json()["items"] == []


async def test_a_change_and_how_it_ended_is_the_stores_last_change_not_its_failure(
    client: httpx.AsyncClient, database: Database, nats_client: Client
) -> None:
    outbox = Outbox(database, nats_client, source="/tests/provisioner")
    store = await create(client)
    await set_columns(database, store["id"], status=StoreStatus.READY, release_revision=2)

    asked = (await client.post(f"{STORES}/{store['id']}/rollback")).json()
    async with UnitOfWork.begin(outbox) as uow:  # what the provisioner does when it cannot
        await lifecycle.end_change(uow, uuid.UUID(store["id"]), "no earlier revision", None)
    ended = (await client.get(f"{STORES}/{store['id']}")).json()
    [listed] = (await client.get(STORES)).json()["items"]

    assert asked["last_change"]["kind"] == "rollback"
    assert (asked["last_change"]["result"], asked["last_change"]["finished_at"]) == (None, None)
    assert ended["status"] == "ready"
    assert ended["failure_reason"] is None
    assert {k: ended["last_change"][k] for k in ("kind", "result", "reason")} == {
        "kind": "rollback",
        "result": "failed",
        "reason": "no earlier revision",
    }
    assert ended["last_change"]["finished_at"] is not None
    assert listed["last_change"] == ended["last_change"]


async def test_a_failed_store_says_when_its_clean_up_finished(
    client: httpx.AsyncClient, database: Database, nats_client: Client
) -> None:
    outbox = Outbox(database, nats_client, source="/tests/provisioner")
    store = await create(client)
    store_id = uuid.UUID(store["id"])
    # It failed once installed: its release and storefront existed.
    url = "http://shop.example.test/"
    await set_columns(
        database, store["id"], chart_version="0.2.0", release_revision=1, storefront_url=url
    )
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.fail(uow, store_id, "its rollout never came up")
    failed = (await client.get(f"{STORES}/{store['id']}")).json()
    async with UnitOfWork.begin(outbox) as uow:
        await lifecycle.mark_cleaned_up(uow, store_id)
    cleaned = (await client.get(f"{STORES}/{store['id']}")).json()

    assert (failed["status"], failed["cleaned_up_at"]) == ("failed", None)
    assert (failed["chart_version"], failed["storefront_url"]) == ("0.2.0", url)
    assert cleaned["status"] == "failed"
    assert cleaned["cleaned_up_at"] is not None
    # Uninstalled, its namespace deleted: no release to name, no storefront to link to.
    assert (cleaned["chart_version"], cleaned["release_revision"]) == (None, None)
    assert cleaned["storefront_url"] is None
    assert [e["type"] for e in cleaned["events"]][-2:] == [TYPE + "failed", TYPE + "cleaned_up"]


@pytest.mark.parametrize("status", ["queued", "provisioning", "updating", "failed", "deleted"])
async def test_only_a_ready_store_can_be_changed(
    client: httpx.AsyncClient, nats_client: Client, database: Database, status: str
) -> None:
    store = await create(client)
    await set_columns(database, store["id"], status=StoreStatus(status))

    for change in ("upgrade", "rollback"):
        body = problem(await client.post(f"{STORES}/{store['id']}/{change}"), 409)
        assert body["status_now"] == status
    subjects = [m.subject for m in await stream_messages(nats_client, store["id"])]
    assert subjects == [f"store.requested.{store['id']}"]


async def test_deleting_twice_is_accepted_twice_but_requests_one_deletion(
    client: httpx.AsyncClient, nats_client: Client, database: Database
) -> None:
    store = await create(client)
    await set_columns(database, store["id"], status=StoreStatus.READY)

    first = await client.delete(f"{STORES}/{store['id']}")
    second = await client.delete(f"{STORES}/{store['id']}")

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["status"] == second.json()["status"] == "deleting"
    subjects = [m.subject for m in await stream_messages(nats_client, store["id"])]
    assert subjects.count(f"store.delete_requested.{store['id']}") == 1
    rows = await event_rows(database, store["id"])
    assert [r.type for r in rows].count(TYPE + "delete_requested") == 1


async def test_concurrent_deletes_request_one_deletion(
    client: httpx.AsyncClient, nats_client: Client, database: Database
) -> None:
    store = await create(client)
    await set_columns(database, store["id"], status=StoreStatus.READY)

    responses = await asyncio.gather(*(client.delete(f"{STORES}/{store['id']}") for _ in range(5)))

    assert [r.status_code for r in responses] == [202] * 5
    rows = await event_rows(database, store["id"])
    assert [r.type for r in rows].count(TYPE + "delete_requested") == 1
    subjects = [m.subject for m in await stream_messages(nats_client, store["id"])]
    assert subjects.count(f"store.delete_requested.{store['id']}") == 1


# --- listing and reading ------------------------------------------------------------------


async def test_the_list_is_newest_first(client: httpx.AsyncClient) -> None:
    created = [await create(client, f"Shop {n}") for n in range(4)]

    response = await client.get(STORES)

    assert response.status_code == 200
    assert [s["id"] for s in response.json()["items"]] == [s["id"] for s in reversed(created)]


async def test_the_list_filters_by_status(client: httpx.AsyncClient, database: Database) -> None:
    first, second, third = [await create(client, f"Shop {n}") for n in range(3)]
    await set_columns(database, first["id"], status=StoreStatus.READY)
    await set_columns(database, third["id"], status=StoreStatus.READY)

    ready = (await client.get(STORES, params={"status": "ready"})).json()["items"]
    queued = (await client.get(STORES, params={"status": "queued"})).json()["items"]
    failed = (await client.get(STORES, params={"status": "failed"})).json()["items"]

    assert [s["id"] for s in ready] == [third["id"], first["id"]]
    assert all(s["status"] == "ready" for s in ready)
    assert [s["id"] for s in queued] == [second["id"]]
    assert failed == []


async def test_the_list_refuses_the_warm_pools_status(client: httpx.AsyncClient) -> None:
    """A pooled store is no one's: asking for them was answered by an empty page, which said
    the pool was empty. It is said instead where to look."""
    refused = problem(await client.get(STORES, params={"status": ["ready", "pooled"]}), 422)

    assert refused["detail"] == (
        "query.status.1: no owner's store is pooled: the warm pool's stores are no one's until"
        " claimed, and the woostore_pool_stores metric counts them"
    )


async def test_an_unknown_status_is_told_the_statuses_an_owners_store_can_have(
    client: httpx.AsyncClient,
) -> None:
    """The valid statuses named to an unknown one, and those the API document lists, were
    every status, `pooled` among them: asked for next, it was refused."""
    refused = problem(await client.get(STORES, params={"status": "bogus"}), 422)
    document = (await client.get("/openapi.json")).json()

    owners = "'queued', 'provisioning', 'ready', 'updating', 'backing_up', 'restoring', 'failed',"
    assert refused["detail"] == f"query.status.0: Input should be {owners} 'deleting' or 'deleted'"
    listing = document["paths"][STORES]["get"]["parameters"]
    status = next(p for p in listing if p["name"] == "status")
    assert status["schema"]["anyOf"][0]["items"]["enum"] == [
        s.value for s in StoreStatus if s is not StoreStatus.POOLED
    ]


async def test_the_list_leaves_deleted_stores_out_unless_asked_for_them(
    client: httpx.AsyncClient, database: Database
) -> None:
    kept, gone = [await create(client, f"Shop {n}") for n in range(2)]
    await set_columns(database, gone["id"], status=StoreStatus.DELETED, deleted_at=utcnow())

    def ids(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["items"]]

    assert ids(await client.get(STORES)) == [kept["id"]]
    assert ids(await client.get(STORES, params={"status": "deleted"})) == [gone["id"]]
    both = await client.get(STORES, params={"status": ["queued", "deleted"]})
    assert ids(both) == [gone["id"], kept["id"]]
    counts = (await client.get(f"{STORES}/counts")).json()
    assert (counts["total"], counts["by_status"]["deleted"]) == (1, 1)  # as the list counts


async def test_the_list_honours_its_limit(client: httpx.AsyncClient) -> None:
    created = [await create(client, f"Shop {n}") for n in range(3)]

    items = (await client.get(STORES, params={"limit": 2})).json()["items"]

    assert [s["id"] for s in items] == [created[2]["id"], created[1]["id"]]


@pytest.mark.parametrize("params", [{"status": "sleeping"}, {"limit": "0"}, {"limit": "501"}])
async def test_an_invalid_list_query_is_a_422_problem(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    problem(await client.get(STORES, params=params), 422)


async def test_a_query_parameter_the_operation_does_not_take_is_refused_not_ignored(
    client: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """An admin's `?tenant=` (for `tenant_id`) listed every tenant's stores, and a misspelt
    status every status (a user's review): each is named, with what the operation takes."""
    acme = await new_tenant("acme")
    await create(acme)

    mistyped = await client.get(STORES, params={"tenant": "acme", "stauts": "failed"})

    assert problem(mistyped, 422)["errors"] == [
        {"location": ["query", name], "message": f"this operation takes no {name}; it takes "
         "cursor, limit, q, status, tenant_id"}
        for name in ("stauts", "tenant")
    ]  # fmt: skip
    assert (await client.get(STORES, params={"status": "queued", "limit": 5})).status_code == 200
    # Read once the caller is known, as a body is: a stranger's is a 401 whatever it asks.
    assert (
        await client.get(STORES, params={"x": "1"}, headers={"Authorization": ""})
    ).status_code == 401
    taken_by_none = problem(await client.get(f"{STORES}/counts", params={"x": "1"}), 422)
    assert taken_by_none["errors"][0]["message"] == "this operation takes no x; it takes tenant_id"


async def test_a_store_is_read_with_its_event_history_in_order(
    api: FastAPI, client: httpx.AsyncClient, nats_client: Client, database: Database
) -> None:
    store = await create(client)
    store_id = uuid.UUID(store["id"])
    # What the provisioner would do: provision with a step, then become ready.
    provisioner = Outbox(database, nats_client, source="/tests/provisioner")
    async with UnitOfWork.begin(provisioner) as uow:
        row = await uow.session.get(Store, store_id, with_for_update=True)
        assert row is not None
        transition(row, StoreStatus.PROVISIONING)
        row.step_name, row.step_title, row.step_index, row.step_total = "install", "Install", 1, 2
        step = StepInfo(name="install", title="Install", index=1, total=2)
        uow.emit(
            row,
            Progress(
                status=StoreStatus.PROVISIONING,
                phase="provision",
                step=step,
                state="started",
                progress=0.0,
            ),
        )
    during = (await client.get(f"{STORES}/{store_id}")).json()
    assert during["status"] == "provisioning"
    assert during["step"] == {"name": "install", "title": "Install", "index": 1, "total": 2}
    async with UnitOfWork.begin(provisioner) as uow:
        row = await uow.session.get(Store, store_id, with_for_update=True)
        assert row is not None
        row.storefront_url = "http://shop.example"
        row.admin_url = "http://shop.example/wp-admin/"
        transition(row, StoreStatus.READY)
        uow.emit(row, Ready(storefront_url=row.storefront_url, admin_url=row.admin_url))
    assert (await client.delete(f"{STORES}/{store_id}")).status_code == 202
    for outbox in (api.state.outbox, provisioner):  # what each marks a moment after publishing
        await outbox.mark()

    response = await client.get(f"{STORES}/{store_id}")

    assert response.status_code == 200
    detail = response.json()
    assert detail["status"] == "deleting"
    assert detail["storefront_url"] == "http://shop.example"
    events = detail["events"]
    assert [e["type"] for e in events] == [
        TYPE + "requested",
        TYPE + "progress",
        TYPE + "ready",
        TYPE + "delete_requested",
    ]
    assert [e["data"]["status"] for e in events] == ["queued", "provisioning", "ready", "deleting"]
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    messages = await stream_messages(nats_client, str(store_id))
    in_stream = [envelope(m)["id"] for m in messages]
    assert [e["id"] for e in events] == in_stream
    # Each one's place in the stream: the event stream can be followed on from the last.
    assert [e["sequence"] for e in events] == [m.seq for m in messages]
    assert detail["earlier_events"] is False

    # A store kept for years has thousands of events: the latest are asked for, oldest first.
    latest = (await client.get(f"{STORES}/{store_id}", params={"events": 2})).json()
    assert [e["id"] for e in latest["events"]] == in_stream[-2:]
    assert latest["earlier_events"] is True
    none = (await client.get(f"{STORES}/{store_id}", params={"events": 0})).json()
    assert (none["events"], none["earlier_events"]) == ([], True)
    problem(await client.get(f"{STORES}/{store_id}", params={"events": 1001}), 422)


# --- credentials --------------------------------------------------------------------------


async def test_credentials_of_a_store_not_ready_are_a_409_problem(
    client: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    store = await create(client)
    cipher = CredentialCipher(settings.secret_key.get_secret_value())
    # Even with a password recorded, a store that is not ready does not hand it out.
    await set_columns(database, store["id"], admin_password_encrypted=cipher.encrypt("pw-123"))

    response = await client.get(f"{STORES}/{store['id']}/credentials")

    body = problem(response, 409)
    assert body["status_now"] == "queued"
    assert body["detail"] == "credentials are available once the store is ready"
    shown = (await client.get(f"{STORES}/{store['id']}")).json()
    assert "credentials" not in shown["links"]  # offered only where it answers
    # A deleted store's are not coming (it was told they were, once the store was ready).
    await set_columns(database, store["id"], status=StoreStatus.DELETED)
    gone = problem(await client.get(f"{STORES}/{store['id']}/credentials"), 409)
    assert gone["detail"] == "a deleted store's credentials go with it"


@pytest.mark.parametrize("status", ["backing_up", "updating", "restoring"])
async def test_credentials_stay_readable_while_a_ready_store_is_worked_on(
    client: httpx.AsyncClient, settings: Settings, database: Database, status: str
) -> None:
    """A nightly backup (or an upgrade, a restore) must not lock the owner out of wp-admin:
    the store serves its shop meanwhile, with the same admin password."""
    store = await create(client)
    cipher = CredentialCipher(settings.secret_key.get_secret_value())
    await set_columns(
        database,
        store["id"],
        status=StoreStatus(status),
        admin_password_encrypted=cipher.encrypt("pw-123"),
    )

    response = await client.get(f"{STORES}/{store['id']}/credentials")

    assert response.status_code == 200, response.text
    assert response.json()["password"] == "pw-123"
    shown = (await client.get(f"{STORES}/{store['id']}")).json()
    assert shown["links"]["credentials"] == f"{STORES}/{store['id']}/credentials"
    # A HEAD (an uptime check's) reads no password, and so records no reading of one.
    read = await audited_reads(database, store["id"])
    peeked = await client.head(f"{STORES}/{store['id']}/credentials")
    assert (peeked.status_code, peeked.headers["Allow"]) == (405, "GET")
    assert await audited_reads(database, store["id"]) == read


async def audited_reads(database: Database, store_id: str) -> int:
    async with database.session() as session:
        found = await session.exec(
            select(AuditEntry)
            .where(col(AuditEntry.target) == f"store/{store_id}")
            .where(col(AuditEntry.action) == "store.credentials.read")
        )
        return len(list(found))


async def test_credentials_of_a_ready_store_without_a_password_are_a_409_problem(
    client: httpx.AsyncClient, database: Database
) -> None:
    store = await create(client)
    await set_columns(database, store["id"], status=StoreStatus.READY)

    body = problem(await client.get(f"{STORES}/{store['id']}/credentials"), 409)
    assert body["detail"] == "no admin password was recorded for this store"


async def test_the_password_is_given_to_the_owner_of_a_ready_store_and_nowhere_else(
    client: httpx.AsyncClient, nats_client: Client, database: Database, settings: Settings
) -> None:
    password = "Zq9-unique-admin-password-7Xw"
    cipher = CredentialCipher(settings.secret_key.get_secret_value())
    encrypted = cipher.encrypt(password)
    store = await create(client)
    store_id = uuid.UUID(store["id"])
    provisioner = Outbox(database, nats_client, source="/tests/provisioner")
    async with UnitOfWork.begin(provisioner) as uow:
        row = await uow.session.get(Store, store_id, with_for_update=True)
        assert row is not None
        transition(row, StoreStatus.PROVISIONING)
        row.admin_password_encrypted = encrypted
        row.storefront_url = "http://shop.example"
        row.admin_url = "http://shop.example/wp-admin/"
        transition(row, StoreStatus.READY)
        uow.emit(row, Ready(storefront_url=row.storefront_url, admin_url=row.admin_url))

    response = await client.get(f"{STORES}/{store_id}/credentials")

    assert response.status_code == 200, response.text
    assert response.json() == {"username": "admin", "password": password}
    assert response.headers["cache-control"] == "no-store"
    other_responses = [
        await client.get(STORES),
        await client.get(f"{STORES}/{store_id}"),
        await client.delete(f"{STORES}/{store_id}"),
    ]
    for other in other_responses:
        assert other.status_code < 300
        assert password not in other.text
        assert encrypted not in other.text
    messages = await stream_messages(nats_client)
    assert len(messages) == 3  # requested, ready, delete_requested
    for message in messages:
        assert message.data is not None
        assert password.encode() not in message.data
        assert encrypted.encode() not in message.data
    rows = await event_rows(database)
    assert len(rows) == 3
    for row_event in rows:
        assert password not in json.dumps(row_event.envelope)
        assert encrypted not in json.dumps(row_event.envelope)


# --- the actions a store offers -----------------------------------------------------------


async def test_every_answer_about_a_store_carries_the_actions_its_state_allows(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    store = await create(client)
    assert store["actions"] == ["delete"]  # cancelling it
    cipher = CredentialCipher(settings.secret_key.get_secret_value())
    await set_columns(
        database, store["id"], status=StoreStatus.READY, release_revision=1,
        admin_password_encrypted=cipher.encrypt("pw-123"),
    )  # fmt: skip
    path = f"{STORES}/{store['id']}"

    # Nothing to roll back to at the first revision, nor to restore before a backup.
    listed = (await client.get(STORES)).json()["items"]
    offered = ["delete", "upgrade", "settings", "backup", "credentials"]
    assert [s["actions"] for s in listed] == [offered]
    assert (await client.get(path)).json()["actions"] == offered
    await a_complete_backup(database, store["id"])
    await set_columns(database, store["id"], release_revision=2)
    assert (await client.get(path)).json()["actions"] == [
        "delete", "upgrade", "rollback", "settings", "backup", "restore", "credentials",
    ]  # fmt: skip
    # The answers to requests carry the actions of the state they leave the store in.
    upgrading = (await client.post(f"{path}/upgrade")).json()
    assert upgrading["actions"] == ["delete", "credentials"]
    await set_columns(database, store["id"], status=StoreStatus.READY)
    assert (await client.delete(path)).json()["actions"] == []


REQUESTS = {
    "delete": ("DELETE", ""),
    "upgrade": ("POST", "/upgrade"),
    "rollback": ("POST", "/rollback"),
    "backup": ("POST", "/backups"),
    "restore": ("POST", "/restore"),  # to a complete backup of the store's
    "retry": ("POST", "/retry"),
    "credentials": ("GET", "/credentials"),
}


@pytest.mark.parametrize("status", list(StoreStatus))
async def test_what_a_store_offers_is_accepted_and_the_rest_is_refused_by_the_api(
    client: httpx.AsyncClient, database: Database, settings: Settings, status: StoreStatus
) -> None:
    """The actions are advice: the API checks each request itself, whatever a client shows."""
    cipher = CredentialCipher(settings.secret_key.get_secret_value())
    for action, (method, suffix) in REQUESTS.items():
        store = await create(client, f"{status.value} {action}")
        await set_columns(
            database, store["id"], status=status, release_revision=2,
            admin_password_encrypted=cipher.encrypt("pw-123"),
        )  # fmt: skip
        path = f"{STORES}/{store['id']}"
        body = {"backup_id": await a_complete_backup(database, store["id"])}
        offered = (await client.get(path)).json()["actions"]

        response = await client.request(
            method, path + suffix, json=body if action == "restore" else None
        )

        if action in offered:
            assert response.status_code in (200, 202), (action, response.text)
        elif action == "delete" and status in (StoreStatus.DELETING, StoreStatus.DELETED):
            assert response.status_code == 202  # asking again changes nothing
            assert response.json()["status"] == status.value
        else:
            assert problem(response, 409)["status_now"] == status.value, action


async def a_complete_backup(database: Database, store_id: str) -> str:
    """A complete backup of the store's, counted as the lifecycle counts one."""
    backup = StoreBackup(
        store_id=uuid.UUID(store_id), trigger=BackupTrigger.REQUESTED, status=BackupStatus.COMPLETE
    )
    counted = col(Store.complete_backups) + 1
    async with database.session() as session:
        session.add(backup)
        await session.exec(
            update(Store).where(col(Store.id) == backup.store_id).values(complete_backups=counted)
        )
        await session.commit()
    return str(backup.id)


async def test_queued_stores_show_their_place_in_the_one_queue(
    client: httpx.AsyncClient, database: Database
) -> None:
    first, second, third, fourth = [await create(client, f"Queue {n}") for n in range(4)]
    assert (first["queue_position"], fourth["queue_position"]) == (1, 4)

    await set_columns(database, first["id"], status=StoreStatus.PROVISIONING)

    listed = {s["id"]: s for s in (await client.get("/api/v1/stores")).json()["items"]}
    assert listed[first["id"]]["queue_position"] is None
    assert [listed[s["id"]]["queue_position"] for s in (second, third, fourth)] == [1, 2, 3]
    # A page without the queue's head counts it still: the newest two are 3rd and 2nd.
    newest = (await client.get("/api/v1/stores", params={"limit": 2})).json()["items"]
    assert [(s["id"], s["queue_position"]) for s in newest] == [(fourth["id"], 3), (third["id"], 2)]
    detail = (await client.get(f"/api/v1/stores/{third['id']}")).json()
    assert detail["queue_position"] == 2


async def test_a_retried_store_is_placed_behind_the_stores_queued_before_its_retry(
    client: httpx.AsyncClient, database: Database
) -> None:
    """Places follow the order stores entered the queue, as the provisioner takes them, not
    the order they were made: a store made first but retried last waits behind the others."""
    retried = await failed_store(client, database, "Made First")
    await set_columns(database, retried, cleaned_up_at=utcnow())
    second, third = [await create(client, f"Queued {n}") for n in (2, 3)]

    again = await client.post(f"{STORES}/{retried}/retry")

    assert again.status_code == 202, again.text
    assert again.json()["queue_position"] == 3
    listed = {s["id"]: s["queue_position"] for s in (await client.get(STORES)).json()["items"]}
    assert (listed[second["id"]], listed[third["id"]], listed[retried]) == (1, 2, 3)


async def test_a_retried_create_with_the_same_idempotency_key_returns_the_same_store(
    client: httpx.AsyncClient, nats_client: Client
) -> None:
    headers = {"Idempotency-Key": "order-7f3a"}
    first = await client.post("/api/v1/stores", json={"name": "Retry Shop"}, headers=headers)
    again = await client.post("/api/v1/stores", json={"name": "Retry Shop"}, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["queue_position"] == first.json()["queue_position"] == 1  # as it is now
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(await stream_messages(nats_client, first.json()["id"])) == 1  # one provisioning


async def test_an_idempotency_key_reused_with_another_body_is_a_422_problem(
    client: httpx.AsyncClient, database: Database
) -> None:
    headers = {"Idempotency-Key": "order-7f3b"}
    await client.post("/api/v1/stores", json={"name": "First"}, headers=headers)

    response = await client.post("/api/v1/stores", json={"name": "Second"}, headers=headers)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/idempotency-key-reused")
    async with database.session() as session:
        names = list(await session.exec(select(Store.name)))
    assert names == ["First"]


async def test_parallel_creates_with_one_idempotency_key_make_one_store(
    client: httpx.AsyncClient, database: Database, nats_client: Client
) -> None:
    headers = {"Idempotency-Key": "burst-1"}
    responses = await asyncio.gather(
        *(client.post("/api/v1/stores", json={"name": "Burst"}, headers=headers) for _ in range(20))
    )

    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    async with database.session() as session:
        assert len(list(await session.exec(select(Store.id)))) == 1
    assert len(await stream_messages(nats_client)) == 1


async def test_pages_follow_the_cursor_through_every_store_once_newest_first(
    client: httpx.AsyncClient,
) -> None:
    made = [(await create(client, f"Page {n}"))["id"] for n in range(7)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/stores", params=params)).json()
        seen += [s["id"] for s in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == list(reversed(made))


async def test_a_cursor_that_was_not_given_out_is_a_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/stores", params={"cursor": "not-a-cursor"})

    assert response.status_code == 400
    assert response.json()["type"].endswith("/invalid-cursor")
