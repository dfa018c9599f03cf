"""The API keeps accepting stores while NATS is down (the outbox), and stays ready, saying
so on /readyz.

Also the ops and platform endpoints: /healthz, /readyz, /metrics, the event-stream ticket
and /api/v1/platform.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from datetime import timedelta

import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.aio.client import Client
from nats.aio.msg import Msg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import col, select

from tests.api.http import STORES, create
from tests.support import envelope, stream_messages, until
from woostore_devstack.embedded import NatsServer
from woostore_shared.db import Database
from woostore_shared.events import CloudEvent
from woostore_shared.models import Store, StoreEvent, StoreStatus, WorkOrderRecord
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import TICKET_TTL_SECONDS, InvalidTicket, TicketSigner
from woostore_shared.settings import Settings
from woostore_shared.topology import WORK_STREAM

REQUEST_COUNT = "woostore_api_request_duration_seconds_count"


async def event_rows(db: Database) -> list[StoreEvent]:
    async with db.session() as session:
        return list(await session.exec(select(StoreEvent).order_by(col(StoreEvent.time))))


async def order_rows(db: Database) -> list[WorkOrderRecord]:
    async with db.session() as session:
        return list(await session.exec(select(WorkOrderRecord)))


# --- the outbox ---------------------------------------------------------------------------


async def test_a_store_requested_while_nats_is_down_is_kept_and_relayed_with_its_work_once(
    api: FastAPI,
    client: httpx.AsyncClient,
    nats_server: NatsServer,
    nats_client: Client,
    database: Database,
) -> None:
    api_nats: Client = api.state.nats
    nats_server.stop()
    await until(lambda: not api_nats.is_connected, "the API has noticed NATS is gone")

    response = await client.post(STORES, json={"name": "Offline Shop"})

    assert response.status_code == 202, response.text
    store_id = uuid.UUID(response.json()["id"])
    async with database.session() as session:
        store = await session.get(Store, store_id)
    assert store is not None
    assert store.status is StoreStatus.QUEUED
    [row] = await event_rows(database)
    assert row.store_id == store_id
    assert row.subject == f"store.requested.{store_id}"
    assert row.published_at is None
    assert row.stream_sequence is None
    [order] = await order_rows(database)
    assert (order.store_id, order.lane, order.published_at) == (store_id, "provision", None)

    nats_server.restart()
    await until(lambda: api_nats.is_connected, "the API has reconnected")
    await until(lambda: nats_client.is_connected, "the test client has reconnected")
    relay = Outbox(database, nats_client, source="/tests/relay")

    # nats-py also sends the publish it buffered while disconnected once it reconnects, so
    # the stream may hold the event already: the relay's copy must be de-duplicated.
    assert await relay.relay(older_than=timedelta(0)) == 2  # the event, then its work order

    [work] = await stream_messages(nats_client, stream=WORK_STREAM)
    assert work.subject == f"work.provision.{store_id}"
    assert work.headers is not None
    assert work.headers["Nats-Msg-Id"] == str(order.id)
    assert all(o.published_at is not None for o in await order_rows(database))
    [message] = await stream_messages(nats_client)
    assert message.subject == f"store.requested.{store_id}"
    assert message.headers is not None
    assert message.headers["Nats-Msg-Id"] == str(row.id)
    [relayed] = await event_rows(database)
    assert relayed.published_at is not None
    assert relayed.stream_sequence == message.seq
    assert await relay.relay(older_than=timedelta(0)) == 0, "a published event is not relayed"

    # Publishing the same event again (a relay racing the writer) is de-duplicated by the
    # server through its Nats-Msg-Id.
    assert await relay.deliver([CloudEvent.model_validate(relayed.envelope)], []) == 1
    assert len(await stream_messages(nats_client)) == 1


# --- ops: on their own port, never on the public one --------------------------------------


async def test_the_public_app_serves_no_ops_endpoints(
    anonymous: httpx.AsyncClient, ops: httpx.AsyncClient
) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await anonymous.get(path)).status_code == 404, path
        assert (await ops.get(path)).status_code == 200, path


async def test_healthz_answers_ok(ops: httpx.AsyncClient) -> None:
    response = await ops.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_when_the_database_and_nats_are_up(
    ops: httpx.AsyncClient,
) -> None:
    response = await ops.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "failing": {}}


async def test_readyz_stays_ready_naming_nats_degraded_while_nats_is_down(
    api: FastAPI, ops: httpx.AsyncClient, nats_server: NatsServer
) -> None:
    """The API takes stores while NATS is down (the outbox): were it unready, Kubernetes
    would take every API pod out of its Service for as long as NATS is gone."""
    api_nats: Client = api.state.nats
    nats_server.stop()
    await until(lambda: not api_nats.is_connected, "the API has noticed NATS is gone")

    response = await ops.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready", "failing": {}, "degraded": {"nats": "ConnectionError"}
    }  # fmt: skip

    nats_server.restart()
    await until(lambda: api_nats.is_connected, "the API has reconnected")
    assert (await ops.get("/readyz")).json() == {"status": "ready", "failing": {}}


async def test_readyz_names_nats_degraded_while_nats_is_hung_and_the_client_hears_it_after(
    api: FastAPI, ops: httpx.AsyncClient, nats_server: NatsServer
) -> None:
    """Stopped, not gone: the client stays connected until its pings go unanswered (40-60 s),
    and readiness said nothing meanwhile (a user's review). Asked by a flush, the late answer
    stopped nats-py's reader for good, and the API heard nothing more; asked by a request
    nobody answers, someone's `nats sub ">"` heard it and made every service unready (reviews)."""
    debugging = await nats.connect(nats_server.url)

    async def listen(_: Msg) -> None:
        return None  # hears everything, answers nothing

    await debugging.subscribe(">", cb=listen)
    assert (await ops.get("/readyz")).json() == {"status": "ready", "failing": {}}
    os.kill(nats_server.process.pid, signal.SIGSTOP)
    try:
        response = await ops.get("/readyz")
    finally:
        os.kill(nats_server.process.pid, signal.SIGCONT)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready", "failing": {}, "degraded": {"nats": "TimeoutError"}
    }  # fmt: skip
    assert (await ops.get("/readyz")).json() == {"status": "ready", "failing": {}}
    api_nats: Client = api.state.nats
    heard: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def hear(message: Msg) -> None:
        heard.set_result(message.data)

    await api_nats.subscribe("woostore.test.heard", cb=hear)
    await api_nats.publish("woostore.test.heard", b"still listening")
    assert await asyncio.wait_for(heard, 5) == b"still listening"
    await debugging.close()


def requested_total(exposition: str) -> float:
    for family in text_string_to_metric_families(exposition):
        if family.name == "woostore_stores_requested":
            [sample] = [s for s in family.samples if s.name.endswith("_total")]
            return sample.value
    raise AssertionError("woostore_stores_requested_total is not exposed")


async def test_metrics_are_prometheus_text_and_count_requested_stores(
    client: httpx.AsyncClient, ops: httpx.AsyncClient
) -> None:
    before = await ops.get("/metrics")

    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    assert "# TYPE woostore_stores_requested_total counter" in before.text
    key = {"Idempotency-Key": "counted-once"}
    for _ in range(2):  # the second is a replay, not a store requested
        assert (await client.post(STORES, json={"name": "Counted"}, headers=key)).status_code == 202
    after = await ops.get("/metrics")
    assert requested_total(after.text) == requested_total(before.text) + 1


# --- platform -----------------------------------------------------------------------------


async def test_an_event_ticket_is_a_short_lived_ticket_for_the_admin(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post("/api/v1/events/ticket")

    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == TICKET_TTL_SECONDS
    signer = TicketSigner(settings.secret_key.get_secret_value())
    subject = signer.verify(body["ticket"])
    # It names the admin token by a fingerprint: the ticket (a URL parameter) never holds it.
    assert subject.startswith("admin-token:")
    assert settings.admin_token.get_secret_value() not in body["ticket"] + subject
    with pytest.raises(InvalidTicket):
        TicketSigner("another-secret-key").verify(body["ticket"])


async def test_the_platform_says_the_cluster_is_simulated_where_events_are_and_its_chart(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.get("/api/v1/platform")

    assert response.status_code == 200
    body = response.json()
    assert body["cluster"] == "simulated"
    assert body["events_url"] == settings.events_url
    assert body["base_domain"] == settings.base_domain
    assert body["version"]
    assert body["store_chart_version"] == settings.store_chart_version


async def test_the_dashboard_is_served_at_the_root(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


async def test_a_request_is_the_root_of_the_trace_its_events_and_work_orders_carry(
    client: httpx.AsyncClient, nats_client: Client, spans: InMemorySpanExporter
) -> None:
    store = await create(client, "Traced Shop")

    # One span a request: the request's, named by its route, and nothing under it.
    [request] = spans.get_finished_spans()
    assert request.name == "POST /api/v1/stores"
    assert request.parent is None  # the root: the client sent no traceparent
    trace_id = format(request.context.trace_id, "032x")
    [requested] = await stream_messages(nats_client, store["id"])
    assert envelope(requested)["traceparent"].split("-")[1] == trace_id
    [order] = await stream_messages(nats_client, store["id"], stream=WORK_STREAM)
    assert json.loads(order.data or b"{}")["traceparent"].split("-")[1] == trace_id

    # A client that sends its own traceparent continues its trace.
    theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = await client.post(
        STORES, json={"name": "Their Trace"}, headers={"traceparent": theirs}
    )
    [event] = await stream_messages(nats_client, response.json()["id"])
    assert envelope(event)["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"


async def test_the_dashboards_files_start_no_trace(
    anonymous: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    assert (await anonymous.get("/static/app.js")).status_code == 200
    assert (await anonymous.get("/api/v1/asyncapi.json")).status_code == 200

    assert [s.name for s in spans.get_finished_spans()] == ["GET /api/v1/asyncapi.json"]


async def test_requests_are_timed_by_route_template_never_by_id(client: httpx.AsyncClient) -> None:
    def count(route: str, status: str) -> float:
        labels = {"method": "GET", "route": route, "status": status}
        return REGISTRY.get_sample_value(REQUEST_COUNT, labels) or 0.0

    store = await create(client, "Timed Shop")
    one, missing = count("/api/v1/stores/{store_id}", "200"), count("unmatched", "404")

    assert (await client.get(f"{STORES}/{store['id']}")).status_code == 200
    assert (await client.get("/no/such/path")).status_code == 404

    assert count("/api/v1/stores/{store_id}", "200") == one + 1
    assert count("unmatched", "404") == missing + 1
    assert count(f"{STORES}/{store['id']}", "200") == 0
