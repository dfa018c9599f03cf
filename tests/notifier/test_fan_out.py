"""One subscription per notifier, fanned out: what each client is shown, how a resume is
served from memory or from the stream, what a client is told when its resume point cannot
be served, and that a client that stops reading is dropped without holding the others up.

Real nats-server and PostgreSQL; the notifier under a real uvicorn."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

import woostore_notifier.main as notifier
from tests.notifier.test_notifier_events import (
    DEADLINE_SECONDS,
    EVENTS,
    admin,
    ids_and_bodies,
    publish,
    take,
)
from tests.notifier.test_stream_limits import a_store_of, another_tenant
from tests.support import ADMIN_TOKEN, add_key, served
from woostore_notifier import hub as hub_module
from woostore_notifier import keys, replay
from woostore_notifier.hub import EventHub
from woostore_shared.access import Authenticator
from woostore_shared.db import Database
from woostore_shared.models import DEFAULT_TENANT_ID, Role
from woostore_shared.secrets import TicketSigner
from woostore_shared.settings import Settings
from woostore_shared.topology import STREAM_NAME


@asynccontextmanager
async def running(settings: Settings, **overrides: Any) -> AsyncIterator[Starlette]:
    """A notifier started now (so it reads back what the stream holds at this moment)."""
    app = notifier.create_app(settings.model_copy(update=overrides))
    async with served(app) as url:
        app.state.url = url
        yield app


@asynccontextmanager
async def following(
    app: Starlette,
    headers: dict[str, str],
    after: int | None = None,
    named: bool = False,
    store: uuid.UUID | None = None,
    tenant: uuid.UUID | None = None,
) -> AsyncIterator[AsyncIterator[ServerSentEvent]]:
    resume = {} if after is None else {"Last-Event-ID": str(after)}
    params = {"event_names": "true"} if named else {}
    if store is not None:
        params["store_id"] = str(store).upper()  # any way a UUID is written
    if tenant is not None:
        params["tenant_id"] = str(tenant)
    async with (
        httpx.AsyncClient(base_url=app.state.url, timeout=10) as http,
        aconnect_sse(http, "GET", EVENTS, headers={**headers, **resume}, params=params) as source,
    ):
        assert source.response.status_code == 200
        yield source.aiter_sse()


def metric(exposition: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


async def metrics(app: Starlette) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.get(f"http://127.0.0.1:{app.state.ops.port}/metrics")).text


async def test_each_client_is_shown_its_tenants_events_and_nobody_a_pooled_stores(
    settings: Settings, nats_client: Client, database: Database
) -> None:
    other = await another_tenant(database)
    _, token = await add_key(database, "other tenant", Role.TENANT, other)
    ours = await publish(nats_client, 2)
    await publish(nats_client, 2, tenant_id=None)  # stores in the warm pool
    theirs = await publish(nats_client, 2, tenant_id=other)

    async with (
        running(settings) as app,
        following(app, admin(), after=0) as everything,
        following(app, {"Authorization": f"Bearer {token}"}, after=0) as their_own,
    ):
        assert ids_and_bodies(await take(everything, 4)) == ours + theirs
        assert ids_and_bodies(await take(their_own, 2)) == theirs
        live = await publish(nats_client, 1, tenant_id=other)
        assert ids_and_bodies(await take(everything, 1)) == live
        assert ids_and_bodies(await take(their_own, 1)) == live


async def test_a_stream_narrowed_to_a_store_is_sent_that_stores_events_alone(
    settings: Settings, nats_client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the stream, from memory and live. Another tenant's key naming it is told it does
    not exist: it was sent nothing, for ever, as for a store gone quiet."""
    monkeypatch.setattr(replay, "PAGE", 40)  # read from the stream in several pages
    other = await another_tenant(database)
    _, token = await add_key(database, "other tenant", Role.TENANT, other)
    shop = await a_store_of(database)
    early = await publish(nats_client, 3, store_id=shop)
    await publish(nats_client, 120)  # other stores'
    in_memory = await publish(nats_client, 2, store_id=shop)

    async with running(settings, event_memory=100) as app:
        assert app.state.hub.floor > early[-1][0]  # the first ones are read from the stream
        async with (
            following(app, admin(), after=0, store=shop) as narrowed,
            following(app, admin(), after=0) as everything,
            httpx.AsyncClient(base_url=app.state.url, timeout=10) as http,
        ):
            assert ids_and_bodies(await take(narrowed, 5)) == early + in_memory
            assert len(await take(everything, 125)) == 125  # the same cursors, not narrowed
            others = await publish(nats_client, 5)
            live = await publish(nats_client, 1, store_id=shop)
            assert ids_and_bodies(await take(narrowed, 1)) == live
            assert ids_and_bodies(await take(everything, 6)) == others + live
            pooled = await a_store_of(database, None)  # no owner's: the API's 404 too
            for key, params in [
                (token, {"store_id": str(shop)}),  # another tenant's
                (ADMIN_TOKEN, {"store_id": str(nothing := uuid.uuid4())}),
                (ADMIN_TOKEN, {"store_id": str(pooled)}),
                (ADMIN_TOKEN, {"store_id": str(shop), "tenant_id": str(other)}),  # of neither
            ]:
                unseen = await http.get(
                    EVENTS, headers={"Authorization": f"Bearer {key}"}, params=params
                )
                assert unseen.status_code == 404
                assert unseen.json()["detail"] == f"store {params['store_id']} does not exist"
        their_own = await a_store_of(database, other)
        async with following(app, {"Authorization": f"Bearer {token}"}, store=their_own):
            pass  # opened: a tenant's key narrows to a store of its own tenant's

        async def database_away(*_: object) -> None:
            raise OSError("the database is away")

        monkeypatch.setattr(Authenticator, "unseen", database_away)
        async with following(app, admin(), store=nothing):
            pass  # opened: not known, and a stream of nothing is harmless (a 500 before)


async def test_a_narrowed_resume_read_from_the_stream_says_where_it_is_page_by_page(
    settings: Settings, nats_client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages with nothing of its store's send a ping with the page's last id: a narrow view
    read a day back went silent for seconds, and `woostore events` without --follow, which
    waits a second for more, stopped early with exit 0 (a diff review)."""
    monkeypatch.setattr(replay, "PAGE", 40)
    await publish(nats_client, 250)  # other stores'
    shop = await a_store_of(database)
    mine = await publish(nats_client, 1, store_id=shop)

    async with running(settings, event_memory=100) as app:
        assert app.state.hub.floor > 2 * replay.PAGE  # several pages read from the stream
        async with following(app, admin(), after=0, store=shop) as narrowed:
            seen: list[ServerSentEvent] = []
            async with asyncio.timeout(DEADLINE_SECONDS):
                while not (seen and seen[-1].data):
                    seen.append(await anext(narrowed))

    pings = [int(event.id) for event in seen[:-1] if event.id]
    assert len(pings) >= 2
    assert pings == sorted(pings)
    assert pings[-1] < mine[0][0]
    assert ids_and_bodies(seen[-1:]) == mine


async def test_an_admins_stream_narrowed_to_a_tenant_is_sent_its_events_alone(
    settings: Settings, nats_client: Client, database: Database
) -> None:
    """A tenant's key may name its own tenant, not another's (403, as the API refuses)."""
    other = await another_tenant(database)
    _, token = await add_key(database, "other tenant", Role.TENANT, other)
    await publish(nats_client, 2)  # the default tenant's
    theirs = await publish(nats_client, 2, tenant_id=other)
    their_key = {"Authorization": f"Bearer {token}"}

    async with (
        running(settings) as app,
        following(app, admin(), after=0, tenant=other) as narrowed,
        following(app, their_key, after=0, tenant=other) as own,
    ):
        assert ids_and_bodies(await take(narrowed, 2)) == theirs
        assert ids_and_bodies(await take(own, 2)) == theirs
        await publish(nats_client, 1)
        live = await publish(nats_client, 1, tenant_id=other)
        assert ids_and_bodies(await take(narrowed, 1)) == live
        async with httpx.AsyncClient(base_url=app.state.url, timeout=10) as http:
            params = {"tenant_id": str(DEFAULT_TENANT_ID)}
            refused = await http.get(EVENTS, headers=their_key, params=params)
            invalid = await http.get(EVENTS, headers=admin(), params={"tenant_id": "acme"})
            nobody = uuid.uuid4()  # a stream of no tenant would say nothing, for ever
            unknown = await http.get(EVENTS, headers=admin(), params={"tenant_id": str(nobody)})
    assert (unknown.status_code, unknown.json()["detail"]) == (
        404,
        f"tenant {nobody} does not exist",
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == "a tenant key reads only its own tenant's events"
    assert invalid.status_code == 400
    assert invalid.json()["detail"] == "tenant_id must be a tenant's id (a UUID), not 'acme'"


async def test_a_resume_from_further_back_than_memory_reads_the_stream_exactly(
    settings: Settings, nats_client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "PAGE", 40)  # several pages, one of them partly in memory
    other = await another_tenant(database)
    _, token = await add_key(database, "other tenant", Role.TENANT, other)
    published = await publish(nats_client, 150)
    theirs = await publish(nats_client, 20, tenant_id=other)
    published += theirs + await publish(nats_client, 80)

    async with running(settings, event_memory=100) as app:
        assert app.state.hub.floor > 7  # what the resumes below need is not all in memory
        async with following(app, admin(), after=7) as events:
            assert ids_and_bodies(await take(events, 243)) == published[7:]
            live = await publish(nats_client, 1)
            assert ids_and_bodies(await take(events, 1)) == live
        async with following(app, {"Authorization": f"Bearer {token}"}, after=0) as events:
            assert ids_and_bodies(await take(events, 20)) == theirs


async def test_events_are_named_for_the_clients_that_ask_from_the_stream_memory_and_live(
    settings: Settings, nats_client: Client
) -> None:
    """Both clients at once, at the same cursors: they must not share one encoding."""
    published = await publish(nats_client, 150)

    async with (
        running(settings, event_memory=100) as app,
        following(app, admin(), after=0, named=True) as named,
        following(app, admin(), after=0) as unnamed,
    ):
        assert app.state.hub.floor > 0  # the first ones are read from the stream
        named_events, unnamed_events = await take(named, 150), await take(unnamed, 150)
        live = await publish(nats_client, 1)
        named_events += await take(named, 1)
        unnamed_events += await take(unnamed, 1)

    assert ids_and_bodies(named_events) == ids_and_bodies(unnamed_events) == published + live
    assert {event.event for event in named_events} == {"progress"}
    assert {event.event for event in unnamed_events} == {"message"}  # SSE's default name


async def test_a_notifier_started_later_resumes_where_another_left_off(
    settings: Settings, nats_client: Client
) -> None:
    async with running(settings) as first, following(first, admin()) as events:
        seen = await publish(nats_client, 2)
        [*_, last] = await take(events, 2)
    missed = await publish(nats_client, 3)

    async with running(settings) as second, following(second, admin(), int(last.id)) as events:
        assert int(last.id) == seen[-1][0]
        assert ids_and_bodies(await take(events, 3)) == missed


async def test_an_id_the_stream_never_reached_is_told_to_refetch(
    settings: Settings, nats_client: Client
) -> None:
    published = await publish(nats_client, 3)
    async with running(settings) as app, following(app, admin(), after=1000) as events:
        [refetch] = await take(events, 1)
        live = await publish(nats_client, 1)
        assert ids_and_bodies(await take(events, 1)) == live
    assert refetch.event == "refetch"
    assert json.loads(refetch.data) == {"reason": "unknown-id"}
    assert int(refetch.id) == published[-1][0]


async def test_an_id_aged_out_of_the_stream_is_told_to_refetch(
    settings: Settings, nats_client: Client
) -> None:
    await publish(nats_client, 5)
    await nats_client.jetstream().purge_stream(STREAM_NAME)  # as max_age would, in 30 days
    kept = await publish(nats_client, 2)
    async with running(settings) as app, following(app, admin(), after=2) as events:
        [refetch] = await take(events, 1)
    assert refetch.event == "refetch"
    assert json.loads(refetch.data) == {"reason": "aged-out"}
    assert int(refetch.id) == kept[-1][0]


async def publish_large(nats: Client, count: int, size: int) -> None:
    js = nats.jetstream()
    padding = "x" * size
    for _ in range(count):
        body = {"type": "io.woostore.store.progress", "tenantid": str(DEFAULT_TENANT_ID)}
        await js.publish(
            f"store.progress.{uuid.uuid4()}",
            json.dumps({**body, "padding": padding}).encode(),
            stream=STREAM_NAME,
        )


async def test_a_client_that_stops_reading_is_dropped_and_the_others_keep_up(
    settings: Settings, nats_client: Client
) -> None:
    async with running(settings, event_memory=100) as app, AsyncExitStack() as stack:
        port = int(app.state.url.rsplit(":", 1)[1])
        stalled = socket.socket()
        stack.callback(stalled.close)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        token = admin()["Authorization"]
        stalled.sendall(
            f"GET {EVENTS} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n\r\n".encode()
        )
        events = await stack.enter_async_context(following(app, admin()))
        give_up = time.monotonic() + DEADLINE_SECONDS
        while metric(await metrics(app), "woostore_sse_connections") != 2:
            assert time.monotonic() < give_up, "the stalled client's stream did not open"
            await asyncio.sleep(0.05)

        # 8 MB: more than the stalled client's socket buffers hold, and 10 times memory. The
        # reading client keeps up: it is never more than half of memory behind.
        for _ in range(20):
            await publish_large(nats_client, 50, 8_000)
            assert len(await take(events, 50)) == 50

        give_up = time.monotonic() + DEADLINE_SECONDS
        while metric(await metrics(app), "woostore_sse_connections") != 1:
            assert time.monotonic() < give_up, "the stalled client was not dropped"
            await asyncio.sleep(0.1)
        exposition = await metrics(app)
        assert metric(exposition, "woostore_sse_dropped_total", reason="fell-behind") == 1


async def test_a_storm_of_connections_asks_the_database_once_per_key_and_per_batch(
    settings: Settings, nats_client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = await add_key(database, "one key, many tabs", Role.TENANT)
    secret = settings.secret_key.get_secret_value()
    subject = Authenticator(
        database, admin_token=settings.admin_token.get_secret_value(), secret_key=secret
    ).admin_subject
    tickets = [TicketSigner(secret).issue(subject) for _ in range(20)]
    asked: list[str] = []

    def counted(name: str) -> None:
        original = getattr(Authenticator, name)

        async def asking(self: Authenticator, *args: Any) -> Any:
            asked.append(name)
            return await original(self, *args)

        monkeypatch.setattr(Authenticator, name, asking)

    for name in ("by_token", "by_subject", "spend_tickets"):
        counted(name)
    # A batch window all 20 tickets arrive within, however loaded the machine: at most two
    # batches (the first may close as the last tickets come).
    monkeypatch.setattr(keys, "SPEND_SECONDS", 0.5)
    limits = {"event_streams_per_key": 40, "tenant_event_streams": 40}

    async with running(settings, **limits) as app, AsyncExitStack() as stack:

        async def opened(**request: Any) -> int:
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=app.state.url, timeout=10)
            )
            source = await stack.enter_async_context(aconnect_sse(http, "GET", EVENTS, **request))
            return source.response.status_code

        by_key = [opened(headers={"Authorization": f"Bearer {token}"}) for _ in range(20)]
        by_ticket = [opened(params={"ticket": ticket}) for ticket in tickets]
        assert await asyncio.gather(*by_key, *by_ticket) == [200] * 40

    assert asked.count("by_token") == 1
    assert asked.count("by_subject") == 1
    assert asked.count("spend_tickets") <= 2  # batched; one per ticket without batching


async def test_wakes_are_spaced_by_what_serving_the_last_one_took(nats_client: Client) -> None:
    """Thousands of clients make a wake slow to serve (their writes); the hub then wakes
    them less often, so that delivery leaves the loop time for the clients connecting. One
    client here holds the loop for 50 ms at each wake, as a crowd's writes would."""
    hub = EventHub(nats_client.jetstream(), memory=100)
    await hub.start()
    woken: list[float] = []

    async def slow_to_serve() -> None:
        while not hub.closed:
            await hub.next_wake()
            woken.append(time.monotonic())
            time.sleep(0.05)  # noqa: ASYNC251 - holding the loop is the point

    crowd = asyncio.create_task(slow_to_serve())
    try:
        async with asyncio.timeout(DEADLINE_SECONDS):
            while len(woken) < 6:  # events come faster than wakes: every wake brings some
                await publish(nats_client, 1)
                await asyncio.sleep(0.01)
        observed = woken[:6]  # not the wake that stopping the hub makes
    finally:
        await hub.stop()
        await crowd
    # After the first wake, the hub knows what one takes.
    gaps = [later - earlier for earlier, later in itertools.pairwise(observed)]
    assert min(gaps) >= hub_module.PASS_SHARE * 0.05, gaps


async def test_a_ping_moves_a_quiet_clients_id_past_the_events_it_may_not_see(
    settings: Settings, nats_client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant's id stayed at its own last event while other tenants' went by: resuming
    after a quiet day, it was replayed them all to find none of its own, and told to read
    its state again for nothing."""
    monkeypatch.setattr(hub_module, "HEARTBEAT_SECONDS", 0.1)
    quiet = await another_tenant(database)
    _, token = await add_key(database, "quiet tenant", Role.TENANT, quiet)
    async with (
        running(settings) as app,
        following(app, {"Authorization": f"Bearer {token}"}) as events,
    ):
        others = await publish(nats_client, 3)  # the default tenant's
        shown = []
        async with asyncio.timeout(DEADLINE_SECONDS):
            while int((message := await anext(events)).id or 0) < others[-1][0]:
                shown.append(message.data)
            shown.append(message.data)

    assert set(shown) == {""}  # pings (and the first frame): not one of the others' events
