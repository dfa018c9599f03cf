"""Claiming stores from the warm pool through POST /stores: atomic under concurrency, only
what fits, counted against the right caps, and shown as the owner's new store."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime

import httpx
import pytest
from nats.aio.client import Client
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import select

from tests.api.conftest import NewTenant
from tests.api.http import STORES, create, problem
from tests.support import add_pooled_store
from woostore_shared.db import Database
from woostore_shared.models import Store, StoreStatus
from woostore_shared.outbox import Outbox
from woostore_shared.settings import Settings
from woostore_shared.work import Lane

POOL = 5
CREATES = 50


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """With a warm pool; a test may set more (``indirect`` parametrisation)."""
    room = {"max_live_stores": 100, "max_queued_stores": 100}  # the burst's 45 cold stores
    more = getattr(request, "param", {})
    return settings.model_copy(update={"warm_pool_size": POOL, **room, **more})


@pytest.fixture
def outbox(database: Database, nats_client: Client) -> Outbox:
    return Outbox(database, nats_client, source="/tests")


async def _stores(database: Database) -> list[Store]:
    async with database.session() as session:
        return list(await session.exec(select(Store)))


async def test_fifty_concurrent_creates_take_the_five_pooled_stores_once_each(
    client: httpx.AsyncClient, new_tenant: NewTenant, outbox: Outbox, database: Database
) -> None:
    pooled = {(await add_pooled_store(outbox)).id for _ in range(POOL)}
    tenants = [await new_tenant(f"burst-{i}-{uuid.uuid4().hex[:6]}", 20) for i in range(5)]

    answers = await asyncio.gather(
        *(
            tenants[i % len(tenants)].post(STORES, json={"name": f"Burst {i}"})
            for i in range(CREATES)
        )
    )

    assert [a.status_code for a in answers] == [202] * CREATES
    made = [a.json() for a in answers]
    assert Counter(m["origin"] for m in made) == {"pool": POOL, "cold": CREATES - POOL}
    claimed = [uuid.UUID(m["id"]) for m in made if m["origin"] == "pool"]
    assert set(claimed) == pooled  # each pooled store given once, to one owner
    rows = {store.id: store for store in await _stores(database)}
    assert len(rows) == CREATES  # no store made beyond the requests
    assert all(rows[i].tenant_id is not None and rows[i].claimed_at for i in claimed)
    assert not [s for s in rows.values() if s.status is StoreStatus.POOLED]
    # Claims wait on their own lane, never in the cold queue.
    assert all(m["queue_position"] is None for m in made if m["origin"] == "pool")
    cold = [m for m in made if m["origin"] == "cold"]
    now = {
        m["id"]: (await client.get(f"{STORES}/{m['id']}")).json()["queue_position"] for m in cold
    }
    assert sorted(now.values()) == list(range(1, CREATES - POOL + 1))
    # An answer's place is read once its store is made: a store queued ahead of it whose
    # create commits later is not counted yet, so two answers in a burst can name the same
    # place. An answer may name a better place than its store has, never a worse one.
    assert all(1 <= m["queue_position"] <= now[m["id"]] for m in cold)


async def test_a_claim_is_the_owners_new_store_with_the_owners_choices(
    client: httpx.AsyncClient, outbox: Outbox, database: Database, nats_client: Client
) -> None:
    pooled = await add_pooled_store(outbox)

    made = await client.post(
        STORES, json={"name": "Corner Shop", "settings": {"currency": "EUR", "country": "DE"}}
    )

    assert made.status_code == 202, made.text
    store = made.json()
    assert store["id"] == str(pooled.id)
    assert store["origin"] == "pool"
    assert store["status"] == "queued"
    assert store["name"] == "Corner Shop"
    assert store["slug"].startswith("corner-shop-")
    assert store["settings"]["currency"] == "EUR"
    assert store["storefront_url"] is None  # the pool's address is not the owner's
    # Asked for now: the owner's wait counts from the claim, not from the pool's making.
    asked = datetime.fromisoformat(store["requested_at"])
    assert asked == datetime.fromisoformat(store["created_at"]) > pooled.requested_at
    shown = (await client.get(f"{STORES}/{pooled.id}")).json()
    # Its history starts at the owner's request: the pool's events were nobody's.
    assert [e["type"] for e in shown["events"]] == ["io.woostore.store.requested"]
    assert shown["events"][0]["data"]["store"]["origin"] == "pool"
    async with database.session() as session:
        row = await session.get(Store, pooled.id)
    assert row is not None
    assert row.namespace == pooled.namespace  # its resources stay where they were made
    orders = await nats_client.jetstream().get_last_msg("WORK", f"work.{Lane.PERSONALISE}.{row.id}")
    assert orders.data is not None


async def test_a_claim_writes_the_store_once(client: httpx.AsyncClient, outbox: Outbox) -> None:
    """The owner's details and the time of the event announcing them in one UPDATE."""
    await add_pooled_store(outbox)
    updates: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("UPDATE stores "):
            updates.append(statement)

    event.listen(Engine, "before_cursor_execute", note)
    try:
        made = await client.post(STORES, json={"name": "Written Once"})
    finally:
        event.remove(Engine, "before_cursor_execute", note)

    assert made.json()["origin"] == "pool"
    assert len(updates) == 1, updates


@pytest.mark.parametrize(
    "made_under",
    [{"chart_version": "0.0.1-old"}, {"base_domain": "stores.old.example"}],
    ids=["another-chart", "another-base-domain"],
)
async def test_only_a_pooled_store_on_the_platforms_chart_and_domain_is_claimed(
    client: httpx.AsyncClient, outbox: Outbox, database: Database, made_under: dict[str, str]
) -> None:
    stale = await add_pooled_store(outbox, **made_under)

    made = await create(client, "Fresh Shop")

    assert made["origin"] == "cold"
    assert made["id"] != str(stale.id)
    async with database.session() as session:
        row = await session.get(Store, stale.id)
    assert row is not None
    assert row.status is StoreStatus.POOLED
    assert row.tenant_id is None


@pytest.mark.parametrize("settings", [{"max_live_stores": 2}], indirect=True)
async def test_a_claim_counts_against_the_tenant_but_needs_no_room_on_the_platform(
    new_tenant: NewTenant, outbox: Outbox
) -> None:
    await add_pooled_store(outbox)
    await add_pooled_store(outbox)  # the platform's two live stores: both in the pool
    owner = await new_tenant(f"capped-{uuid.uuid4().hex[:6]}", 1)
    other = await new_tenant(f"other-{uuid.uuid4().hex[:6]}")

    first = await owner.post(STORES, json={"name": "First"})
    assert first.status_code == 202, first.text
    assert first.json()["origin"] == "pool"
    again = await owner.post(STORES, json={"name": "Second"})
    assert problem(again, 409)["limit"] == "tenant-stores"  # the claimed store is its own
    claimed = await other.post(STORES, json={"name": "Other"})
    assert claimed.json()["origin"] == "pool"  # the platform is full, but the pool is in it
    cold = await other.post(STORES, json={"name": "Another"})
    assert problem(cold, 429)["limit"] == "platform-stores"
