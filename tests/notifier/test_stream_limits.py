"""What bounds the event stream: streams per key and per notifier process, and how far back
a resume may reach. Each stream holds a connection, a task and a share of every send, so
these are what keep one caller from exhausting the notifier for everyone."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from nats.aio.client import Client

import woostore_notifier.main as notifier
from tests.notifier.test_notifier_events import (
    DEADLINE_SECONDS,
    EVENTS,
    admin,
    ids_and_bodies,
    problem,
    publish,
    take,
)
from tests.support import DEFAULT_SETTINGS, add_key, served
from woostore_shared.db import Database
from woostore_shared.models import (
    DEFAULT_TENANT_ID,
    Role,
    Store,
    StoreStatus,
    Tenant,
    namespace_for,
)
from woostore_shared.settings import Settings
from woostore_shared.topology import STREAM_NAME


@asynccontextmanager
async def notifier_with(settings: Settings, **limits: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        served(notifier.create_app(settings.model_copy(update=limits))) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield http


async def another_key(
    database: Database, tenant_id: uuid.UUID = DEFAULT_TENANT_ID
) -> dict[str, str]:
    _, token = await add_key(database, "another", Role.TENANT, tenant_id)
    return {"Authorization": f"Bearer {token}"}


async def another_tenant(database: Database) -> uuid.UUID:
    tenant = Tenant(name=f"tenant-{uuid.uuid4().hex[:8]}")
    async with database.session() as session:
        session.add(tenant)
        await session.commit()
    return tenant.id


async def a_store_of(database: Database, tenant: uuid.UUID | None = DEFAULT_TENANT_ID) -> uuid.UUID:
    """A store's row, for a stream narrowed to it (the notifier looks it up), without its
    events: the tests publish those themselves. Of no tenant: a pooled store."""
    slug = f"shop-{uuid.uuid4().hex[:8]}"
    store = Store(
        tenant_id=tenant, name="Shop", slug=slug, namespace=namespace_for(slug),
        status=StoreStatus.READY if tenant else StoreStatus.POOLED, simulated=True,
        settings=DEFAULT_SETTINGS.model_dump(mode="json"), correlation_id="c0ffee",
    )  # fmt: skip
    async with database.session() as session:
        session.add(store)
        await session.commit()
    return store.id


async def open_streams(
    stack: AsyncExitStack, http: httpx.AsyncClient, headers: dict[str, str], count: int
) -> None:
    for _ in range(count):
        source = await stack.enter_async_context(aconnect_sse(http, "GET", EVENTS, headers=headers))
        assert source.response.status_code == 200


async def wait_until_accepted(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """A closed stream's slot comes back once the server has seen the client go."""
    give_up = time.monotonic() + DEADLINE_SECONDS
    while True:
        async with aconnect_sse(http, "GET", EVENTS, headers=headers) as source:
            if source.response.status_code == 200:
                return
            assert source.response.status_code == 429
        if time.monotonic() > give_up:
            pytest.fail("a stream's slot was not given back after its client left")
        await asyncio.sleep(0.05)


async def test_a_key_holds_at_most_its_streams_and_gets_a_slot_back_when_one_closes(
    settings: Settings, nats_client: Client, database: Database
) -> None:
    async with notifier_with(settings, event_streams_per_key=1) as http:
        async with AsyncExitStack() as streams:
            await open_streams(streams, http, admin(), 1)

            refused = await http.get(EVENTS, headers=admin())
            body = problem(refused, 429)
            assert body["limit"] == "event-streams-per-key"
            assert body["allowed"] == 1
            assert body["detail"] == (
                "this key has its maximum of 1 event stream open; "
                "close one (one stream per tab carries every store)"
            )
            assert int(refused.headers["Retry-After"]) > 0
            # Another key is not held back by this one.
            await open_streams(streams, http, await another_key(database), 1)

        await wait_until_accepted(http, admin())


async def test_a_tenant_holds_at_most_its_streams_however_many_keys_it_has(
    settings: Settings, nats_client: Client, database: Database
) -> None:
    tenant = await another_tenant(database)
    async with (
        notifier_with(settings, event_streams_per_key=2, tenant_event_streams=3) as http,
        AsyncExitStack() as streams,
    ):
        await open_streams(streams, http, await another_key(database, tenant), 2)
        await open_streams(streams, http, await another_key(database, tenant), 1)

        body = problem(await http.get(EVENTS, headers=await another_key(database, tenant)), 429)
        assert body["limit"] == "tenant-event-streams"
        assert body["allowed"] == 3
        assert body["detail"] == "this tenant has its maximum of 3 event streams open"
        # Another tenant is not held back by this one.
        await open_streams(streams, http, await another_key(database), 2)


async def test_the_notifier_holds_at_most_its_streams_in_all(
    settings: Settings, nats_client: Client, database: Database
) -> None:
    async with notifier_with(settings, max_event_streams=2) as http, AsyncExitStack() as streams:
        await open_streams(streams, http, admin(), 2)

        body = problem(await http.get(EVENTS, headers=await another_key(database)), 429)
        assert body["limit"] == "event-streams"
        assert body["allowed"] == 2


async def test_a_resume_older_than_the_replay_window_is_told_to_refetch_then_follows(
    settings: Settings, nats_client: Client
) -> None:
    window = 0.5
    old = await publish(nats_client, 3)
    stored = (await nats_client.jetstream().get_msg(STREAM_NAME, old[0][0])).time
    assert stored is not None
    async with asyncio.timeout(DEADLINE_SECONDS):  # the clock, not an event, moves on
        while time.time() <= stored.timestamp() + window:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async with (
        notifier_with(settings, event_replay_window_seconds=window) as http,
        aconnect_sse(http, "GET", EVENTS, headers={**admin(), "Last-Event-ID": "0"}) as source,
    ):
        events = source.aiter_sse()
        [refetch] = await take(events, 1)
        recent = await publish(nats_client, 2)
        followed = await take(events, 2)

    assert refetch.event == "refetch"
    assert json.loads(refetch.data) == {"reason": "older-than-window"}
    assert int(refetch.id) == old[-1][0]  # a reconnect resumes after what it skipped
    assert ids_and_bodies(followed) == recent


async def test_a_resume_within_the_replay_window_is_exact(
    settings: Settings, nats_client: Client
) -> None:
    published = await publish(nats_client, 4)

    async with (
        notifier_with(settings, event_replay_window_seconds=3600) as http,
        aconnect_sse(http, "GET", EVENTS, headers={**admin(), "Last-Event-ID": "1"}) as source,
    ):
        replayed = await take(source.aiter_sse(), 3)

    assert ids_and_bodies(replayed) == published[1:]
