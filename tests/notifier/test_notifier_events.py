"""GET /api/v1/events: store events over Server-Sent Events, resumable by stream sequence.

The notifier runs under a real uvicorn against a real nats-server; events are published
to the STORES stream the way the outbox publishes them, and read back with httpx-sse.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from itsdangerous import TimestampSigner
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import col, update
from starlette.applications import Starlette
from starlette.requests import Request

import woostore_notifier.main as notifier
from tests.support import ADMIN_TOKEN, add_key, served, until
from woostore_devstack.embedded import free_port
from woostore_notifier import keys
from woostore_notifier.connections import Connections
from woostore_notifier.frames import LEGACY_REPLAY_HEADER
from woostore_notifier.hub import EventHub
from woostore_shared.access import Authenticator, Principal, TenantSuspended
from woostore_shared.db import Database
from woostore_shared.events import Progress, StepInfo, make_event
from woostore_shared.models import DEFAULT_TENANT_ID, ApiKey, StoreStatus, Tenant, utcnow
from woostore_shared.outbox import Outbox
from woostore_shared.problems import DATABASE_RETRY_SECONDS, TYPE_BASE
from woostore_shared.secrets import TICKET_TTL_SECONDS, TicketSigner
from woostore_shared.settings import Settings
from woostore_shared.topology import STREAM_NAME
from woostore_shared.unit_of_work import UnitOfWork

EVENTS = "/api/v1/events"
PROBLEM_JSON = "application/problem+json"
DEADLINE_SECONDS = 15.0


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def publish(
    nats: Client,
    count: int,
    tenant_id: uuid.UUID | None = DEFAULT_TENANT_ID,
    store_id: uuid.UUID | None = None,
) -> list[tuple[int, str]]:
    """Publish ``count`` CloudEvents of the tenant's stores (``None``: a pooled store's) as
    the outbox does, each of a store of its own unless ``store_id`` is given; return (stream
    sequence, body)."""
    js = nats.jetstream()
    published: list[tuple[int, str]] = []
    for index in range(count):
        step = StepInfo(name="install", title="Install", index=1, total=3)
        event = make_event(
            Progress(
                status=StoreStatus.PROVISIONING,
                phase="provision",
                step=step,
                state="started",
                progress=index / count,
            ),
            store_id=store_id or uuid.uuid4(),
            tenant_id=tenant_id,
            correlation_id=uuid.uuid4().hex,
            source="/tests",
        )
        assert event.nats_subject.startswith("store.progress.")
        body = event.model_dump_json()
        ack = await js.publish(
            event.nats_subject,
            body.encode(),
            stream=STREAM_NAME,
            headers={"Nats-Msg-Id": str(event.id)},
        )
        published.append((ack.seq, body))
    return published


async def take(events: AsyncIterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    """The next ``count`` events carrying data (not the retry hint or keep-alive comments)."""
    received: list[ServerSentEvent] = []
    async with asyncio.timeout(DEADLINE_SECONDS):
        while len(received) < count:
            event = await anext(events)
            if event.data:
                received.append(event)
    return received


def ids_and_bodies(events: list[ServerSentEvent]) -> list[tuple[int, str]]:
    return [(int(e.id), e.data) for e in events]


def resume_after(how: str, sequence: int) -> dict[str, Any]:
    """Request arguments resuming after ``sequence``, the way a browser or a program does."""
    if how == "header":
        return {"headers": {**admin(), "Last-Event-ID": str(sequence)}}
    return {"headers": admin(), "params": {"last_event_id": str(sequence)}}


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith(TYPE_BASE)  # as the API's: one kind of error, one type
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == response.request.url.path
    return body


# --- resuming -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resuming_after_n_delivers_exactly_the_later_events_in_order(
    http: httpx.AsyncClient, nats_client: Client, how: str
) -> None:
    published = await publish(nats_client, 5)
    assert [seq for seq, _ in published] == [1, 2, 3, 4, 5]

    async with aconnect_sse(http, "GET", EVENTS, **resume_after(how, 2)) as source:
        events = source.aiter_sse()
        assert source.response.status_code == 200
        replayed = await take(events, 3)
        later = await publish(nats_client, 1)
        live = await take(events, 1)

    assert ids_and_bodies(replayed) == published[2:]
    assert ids_and_bodies(live) == later  # nothing else came in between
    for event in replayed + live:
        assert json.loads(event.data)["type"] == "io.woostore.store.progress"


async def test_resuming_after_zero_replays_the_whole_stream(
    http: httpx.AsyncClient, nats_client: Client
) -> None:
    published = await publish(nats_client, 3)

    async with aconnect_sse(http, "GET", EVENTS, **resume_after("header", 0)) as source:
        events = source.aiter_sse()
        replayed = await take(events, 3)

    assert ids_and_bodies(replayed) == published


async def test_resuming_after_the_last_event_delivers_only_the_next_ones(
    http: httpx.AsyncClient, nats_client: Client
) -> None:
    published = await publish(nats_client, 3)

    async with aconnect_sse(http, "GET", EVENTS, **resume_after("header", 3)) as source:
        events = source.aiter_sse()
        assert source.response.status_code == 200
        later = await publish(nats_client, 2)
        received = await take(events, 2)

    assert ids_and_bodies(received) == later
    assert [seq for seq, _ in later] == [published[-1][0] + 1, published[-1][0] + 2]


async def test_without_last_event_id_only_new_events_are_delivered(
    http: httpx.AsyncClient, nats_client: Client, notifier: Starlette
) -> None:
    old = await publish(nats_client, 3)
    # "New" is after what the notifier had read when the stream opened: an event published a
    # moment before may still be on its way to it, and is then sent (once; CI saw it so).
    async with asyncio.timeout(DEADLINE_SECONDS):
        while notifier.state.hub.head < old[-1][0]:  # noqa: ASYNC110  (a condition, with a deadline)
            await asyncio.sleep(0.01)

    async with aconnect_sse(http, "GET", EVENTS, headers=admin()) as source:
        events = source.aiter_sse()
        assert source.response.status_code == 200
        async with asyncio.timeout(DEADLINE_SECONDS):
            opening = await anext(events)
        new = await publish(nats_client, 2)
        received = await take(events, 2)

    assert ids_and_bodies(received) == new
    assert [seq for seq, _ in new] == [4, 5]
    # The first frame holds no event but says where the stream starts, so a client that
    # loses it before any event resumes there, neither missing nor repeating one.
    assert (opening.retry is not None, opening.data, opening.id) == (True, "", "3")


async def test_a_resumed_stream_starts_with_no_id_of_its_own(
    http: httpx.AsyncClient, nats_client: Client
) -> None:
    """Its client knows where it is. The stream's head there would be wrong: a client that
    lost the stream while it was replaying would skip what was left of the replay."""
    await publish(nats_client, 2)
    async with aconnect_sse(http, "GET", EVENTS, **resume_after("header", 1)) as source:
        async with asyncio.timeout(DEADLINE_SECONDS):
            opening = await anext(source.aiter_sse())

    assert (opening.retry is not None, opening.data, opening.id) == (True, "", "")


async def test_the_last_event_id_header_wins_over_the_query_parameter(
    http: httpx.AsyncClient, nats_client: Client
) -> None:
    """A reconnecting EventSource sends the header; its URL still carries the first value."""
    published = await publish(nats_client, 5)

    async with aconnect_sse(
        http,
        "GET",
        EVENTS,
        headers={**admin(), "Last-Event-ID": "4"},
        params={"last_event_id": "1"},
    ) as source:
        events = source.aiter_sse()
        received = await take(events, 1)

    assert ids_and_bodies(received) == published[4:]


async def test_the_stream_asks_browsers_to_reconnect_after_two_to_five_seconds_spread(
    http: httpx.AsyncClient,
) -> None:
    hints = set()
    for _ in range(10):
        async with aconnect_sse(http, "GET", EVENTS, headers=admin()) as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            async with asyncio.timeout(DEADLINE_SECONDS):
                first = await anext(source.aiter_sse())
        assert first.retry is not None
        hints.add(first.retry)

    assert all(2000 <= hint <= 5000 for hint in hints)
    assert len(hints) > 1  # spread: the same one ten times in 3,001 is a broken spread


@pytest.mark.parametrize(
    "value",
    [
        "abc", "-1", "1.5", "0x10", "1e3", "18446744073709551615", "99999999999999999999999",
        pytest.param("9" * 5000, id="5000-digits"),  # past the 4,300 Python reads
    ],
)  # fmt: skip
@pytest.mark.parametrize("how", ["header", "query"])
async def test_a_last_event_id_that_is_not_a_sequence_is_a_400_problem(
    http: httpx.AsyncClient, how: str, value: str
) -> None:
    if how == "header":
        response = await http.get(EVENTS, headers={**admin(), "Last-Event-ID": value})
    else:
        response = await http.get(EVENTS, headers=admin(), params={"last_event_id": value})

    body = problem(response, 400)
    assert "Last-Event-ID" in body["detail"]


@pytest.mark.parametrize("value", ["yes", "True", ""])
async def test_event_names_other_than_true_or_false_are_a_400_problem(
    http: httpx.AsyncClient, value: str
) -> None:
    response = await http.get(EVENTS, headers=admin(), params={"event_names": value})

    body = problem(response, 400)
    assert body["type"].endswith("invalid-event-names")
    assert "event_names must be true or false (or 1 or 0)" in body["detail"]


@pytest.mark.parametrize("value", ["shop-1", "", "12345"])
async def test_a_store_id_that_is_not_a_uuid_is_a_400_problem(
    http: httpx.AsyncClient, value: str
) -> None:
    response = await http.get(EVENTS, headers=admin(), params={"store_id": value})

    body = problem(response, 400)
    assert body["type"].endswith("invalid-store-id")
    assert body["detail"] == f"store_id must be a store's id (a UUID), not {value!r}"


@pytest.mark.parametrize("value", ["\uff11\uff12", "\u00b2", "\u0663"])
async def test_a_last_event_id_of_non_ascii_digits_is_a_400_problem(
    http: httpx.AsyncClient, value: str
) -> None:
    response = await http.get(EVENTS, headers=admin(), params={"last_event_id": value})

    problem(response, 400)


async def test_the_largest_resumable_sequence_is_accepted(http: httpx.AsyncClient) -> None:
    async with http.stream(
        "GET", EVENTS, headers=admin(), params={"last_event_id": str(2**64 - 2)}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")


# --- who may listen -----------------------------------------------------------------------


def expired_ticket(signer: TicketSigner, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ticket signed one minute more than its lifetime ago."""
    issued_at = int(time.time()) - TICKET_TTL_SECONDS - 60
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda _self: issued_at)
        return signer.issue("admin")


def tampered_tickets(signer: TicketSigner) -> list[str]:
    genuine = signer.issue("admin")
    payload, timestamp, signature = genuine.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    other_payload = signer.issue("intruder").split(".")[0]
    return [
        f"{payload}.{timestamp}.{flipped}",  # signature changed
        f"{other_payload}.{timestamp}.{signature}",  # payload swapped
        f"{payload}.{timestamp}",  # signature dropped
    ]


async def test_without_a_bearer_token_or_ticket_the_stream_is_a_401_problem(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get(EVENTS)

    problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        # RFC 6750, as the API answers: a token sent and refused is named as such.
        ({"Authorization": "Bearer wrong-token"}, 'Bearer error="invalid_token"'),
        ({"Authorization": "Bearer"}, "Bearer"),
        ({"Authorization": f"Basic {ADMIN_TOKEN}"}, "Bearer"),
    ],
)
async def test_a_wrong_bearer_token_is_a_401_problem(
    http: httpx.AsyncClient, headers: dict[str, str], challenge: str
) -> None:
    response = await http.get(EVENTS, headers=headers)

    problem(response, 401)
    assert response.headers["WWW-Authenticate"] == challenge


async def test_a_ticket_from_the_ticket_signer_opens_the_stream(
    http: httpx.AsyncClient, nats_client: Client, settings: Settings, database: Database
) -> None:
    secret = settings.secret_key.get_secret_value()
    admin = Authenticator(
        database, admin_token=settings.admin_token.get_secret_value(), secret_key=secret
    )
    ticket = TicketSigner(secret).issue(admin.admin_subject)
    published = await publish(nats_client, 2)

    async with aconnect_sse(
        http, "GET", EVENTS, params={"ticket": ticket, "last_event_id": "0"}
    ) as source:
        events = source.aiter_sse()
        assert source.response.status_code == 200
        received = await take(events, 2)

    assert ids_and_bodies(received) == published


async def test_a_ticket_opens_one_stream_once_whichever_replica_it_reaches(
    http: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    secret = settings.secret_key.get_secret_value()
    admin = Authenticator(
        database, admin_token=settings.admin_token.get_secret_value(), secret_key=secret
    )
    signer = TicketSigner(secret)
    raced, reused = signer.issue(admin.admin_subject), signer.issue(admin.admin_subject)

    async def opening(client: httpx.AsyncClient, ticket: str) -> int:
        async with client.stream("GET", EVENTS, params={"ticket": ticket}) as response:
            return response.status_code

    async with (
        served(notifier.create_app(settings)) as replica_url,
        httpx.AsyncClient(base_url=replica_url, timeout=10) as replica,
    ):
        # Presented to two replicas at once, a ticket opens one stream.
        assert sorted(await asyncio.gather(opening(http, raced), opening(replica, raced))) == [
            200,
            401,
        ]
        assert await opening(replica, reused) == 200
        spent = problem(await http.get(EVENTS, params={"ticket": reused}), 401)
        problem(await replica.get(EVENTS, params={"ticket": reused}), 401)
    assert "used already" in spent["detail"]  # not "a ticket is required": one was given


async def test_a_ticket_presented_twice_at_once_opens_one_stream(
    settings: Settings, database: Database
) -> None:
    """Both in one batch of tickets spent: the batch's statement names the ticket spent once,
    and both were told so (a review)."""
    secret = settings.secret_key.get_secret_value()
    authenticator = Authenticator(
        database, admin_token=settings.admin_token.get_secret_value(), secret_key=secret
    )
    signer = TicketSigner(secret)
    known = keys.Keys(authenticator, signer)
    ticket = signer.issue(authenticator.admin_subject)
    presented = Request(
        {"type": "http", "headers": [], "query_string": f"ticket={ticket}".encode()}
    )

    opened = await asyncio.gather(known.admitted(presented), known.admitted(presented))

    assert sorted(opened) == [False, True]


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("lastEventId", "5"), ("store", "0b7c4f5e-1d2a-4c3b-9e8f-7a6b5c4d3e2f"), ("since", "0")],
)
async def test_a_parameter_the_stream_does_not_take_is_a_400_problem(
    http: httpx.AsyncClient, parameter: str, value: str
) -> None:
    """Ignored, a mistyped resume started the stream from now, and ``?store=`` gave every
    store's events (a user's review)."""
    response = await http.get(EVENTS, headers=admin(), params={parameter: value})

    body = problem(response, 400)
    assert body["type"].endswith("unknown-parameter")
    assert body["detail"] == (
        f"the event stream takes no {parameter}; it takes ticket, last_event_id, event_names,"
        " store_id, tenant_id"
    )


async def test_a_stream_refused_leaves_its_ticket_for_the_next_try(
    http: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    """A ticket opens one stream, once: a stream refused for a mistyped parameter or a key's
    streams at their limit opened none, yet its ticket was spent, and the 429's Retry-After
    could not be heeded (a user's review). A store not found spends it: a ticket spent
    already (read from an access log) learns nothing of which stores exist."""
    secret = settings.secret_key.get_secret_value()
    authenticator = Authenticator(
        database, admin_token=settings.admin_token.get_secret_value(), secret_key=secret
    )
    signer = TicketSigner(secret)
    ticket = signer.issue(authenticator.admin_subject)
    app = notifier.create_app(settings.model_copy(update={"event_streams_per_key": 1}))
    async with (
        served(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as notifier_of_one,
    ):
        problem(await notifier_of_one.get(EVENTS, params={"ticket": ticket, "store": "x"}), 400)
        bad = {"ticket": ticket, "store_id": "shop-1"}
        problem(await notifier_of_one.get(EVENTS, params=bad), 400)
        async with notifier_of_one.stream("GET", EVENTS, headers=admin()) as first:
            assert first.status_code == 200
            full = await notifier_of_one.get(EVENTS, params={"ticket": ticket})
            assert (full.status_code, full.headers["Retry-After"]) == (429, "30")
        await until(lambda: not app.state.connections.subjects(), "the first stream ended")
        async with notifier_of_one.stream("GET", EVENTS, params={"ticket": ticket}) as opened:
            assert opened.status_code == 200

        spent = problem(await notifier_of_one.get(EVENTS, params={"ticket": ticket}), 401)
        assert spent["detail"] == "the ticket is not valid: used already, or expired"
        unknown = {"store_id": str(uuid.uuid4())}
        asked = problem(
            await notifier_of_one.get(EVENTS, params={"ticket": ticket, **unknown}), 401
        )
        assert asked["detail"] == spent["detail"]  # not "does not exist"
        another = signer.issue(authenticator.admin_subject)
        problem(await notifier_of_one.get(EVENTS, params={"ticket": another, **unknown}), 404)
        problem(await notifier_of_one.get(EVENTS, params={"ticket": another}), 401)


async def test_a_key_the_database_cannot_look_up_is_told_to_retry_as_the_api_tells_it(
    settings: Settings, nats_client: Client, database: Database
) -> None:
    """It was a 500 in plain text, with a traceback logged for each request (a user's review,
    stopping PostgreSQL under `make run`)."""
    _, token = await add_key(database, "looked up nowhere")
    nowhere = f"postgresql+psycopg://woostore:x@127.0.0.1:{free_port()}/woostore"
    away = settings.model_copy(update={"database_url": nowhere})
    async with (
        served(notifier.create_app(away)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        answer = await client.get(EVENTS, headers={"Authorization": f"Bearer {token}"})

    refused = problem(answer, 503)
    assert refused["type"] == TYPE_BASE + "database-unavailable"
    assert answer.headers["Retry-After"] == str(DATABASE_RETRY_SECONDS)


async def test_an_invalid_ticket_is_a_401_problem(
    http: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = TicketSigner(settings.secret_key.get_secret_value())
    invalid = {
        "expired": expired_ticket(signer, monkeypatch),
        "signed with another key": TicketSigner("another-secret-key").issue("admin"),
        "the admin token": ADMIN_TOKEN,
        "empty": "",
        **{f"tampered {n}": t for n, t in enumerate(tampered_tickets(signer))},
    }

    for what, ticket in invalid.items():
        response = await http.get(EVENTS, params={"ticket": ticket})

        assert response.status_code == 401, what
        problem(response, 401)
    # The expired ticket was well made: only its age rejects it.
    assert signer.verify(invalid["expired"], max_age=TICKET_TTL_SECONDS + 3600) == "admin"


async def test_a_path_or_method_the_notifier_does_not_serve_is_a_problem_too(
    http: httpx.AsyncClient,
) -> None:
    """Answered as the API answers them (application/problem+json), not in plain text."""
    missing = problem(await http.get("/api/v1/nope", headers=admin()), 404)
    other_method = await http.post(EVENTS, headers=admin())

    assert missing["type"] == TYPE_BASE + "not-found"
    assert problem(other_method, 405)["type"] == TYPE_BASE + "method-not-allowed"
    assert set(other_method.headers["Allow"].split(", ")) == {"GET", "HEAD"}


# --- CORS and resources -------------------------------------------------------------------


async def test_the_dashboard_origin_may_read_the_stream(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    origin = settings.allowed_origin

    preflight = await http.options(
        EVENTS,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, last-event-id",
        },
    )
    async with aconnect_sse(http, "GET", EVENTS, headers={**admin(), "Origin": origin}) as source:
        stream_headers = source.response.headers

    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed
    assert "last-event-id" in allowed
    assert stream_headers["Access-Control-Allow-Origin"] == origin


async def test_another_origin_is_not_allowed(http: httpx.AsyncClient) -> None:
    response = await http.get(EVENTS, headers={"Origin": "https://evil.example"})
    preflight = await http.options(
        EVENTS,
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )

    assert response.status_code == 401
    assert "Access-Control-Allow-Origin" not in response.headers
    assert preflight.status_code == 400
    assert "Access-Control-Allow-Origin" not in preflight.headers


def open_connections(exposition: str) -> float:
    for family in text_string_to_metric_families(exposition):
        if family.name == "woostore_sse_connections":
            return family.samples[0].value
    raise AssertionError("woostore_sse_connections is not exposed")


async def test_open_streams_are_counted_and_share_the_notifiers_one_consumer(
    http: httpx.AsyncClient, ops: httpx.AsyncClient, nats_client: Client
) -> None:
    js = nats_client.jetstream()
    consumers = (await js.stream_info(STREAM_NAME)).state.consumer_count
    assert consumers == 1  # the notifier's own, read by all its streams
    before = open_connections((await ops.get("/metrics")).text)

    async with AsyncExitStack() as streams:
        readers = []  # kept referenced: dropping one would close its stream
        for _ in range(3):
            source = await streams.enter_async_context(
                aconnect_sse(http, "GET", EVENTS, headers=admin())
            )
            readers.append(source.aiter_sse())
            async with asyncio.timeout(DEADLINE_SECONDS):
                await anext(readers[-1])  # the retry hint: the stream has started
        assert open_connections((await ops.get("/metrics")).text) == before + 3
        assert (await js.stream_info(STREAM_NAME)).state.consumer_count == consumers

    give_up = time.monotonic() + DEADLINE_SECONDS
    while open_connections((await ops.get("/metrics")).text) != before:
        if time.monotonic() > give_up:
            pytest.fail("the closed streams are still counted")
        await asyncio.sleep(0.05)


async def test_the_notifier_is_healthy_and_ready_on_its_ops_port_only(
    http: httpx.AsyncClient, ops: httpx.AsyncClient
) -> None:
    assert (await ops.get("/healthz")).status_code == 200
    ready = await ops.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "failing": {}}
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await http.get(path)).status_code == 404, path


async def test_a_copy_an_older_version_published_to_hand_work_out_again_is_not_streamed(
    http: httpx.AsyncClient, nats_client: Client
) -> None:
    [(_, body)] = await publish(nats_client, 1)
    replay = await nats_client.jetstream().publish(
        "store.progress.replayed",
        body.encode(),
        stream=STREAM_NAME,
        headers={"Nats-Msg-Id": "x:replay:1", LEGACY_REPLAY_HEADER: "1"},
    )
    after = await publish(nats_client, 1)

    async with aconnect_sse(http, "GET", EVENTS, **resume_after("header", 0)) as source:
        events = await take(source.aiter_sse(), 2)

    assert replay.seq not in [int(e.id) for e in events]
    assert ids_and_bodies(events)[1] == after[0]


# --- keys -----------------------------------------------------------------------------------


# A stream's last frame once its key's access is withdrawn: a client told it stops, where one
# that saw the stream merely drop reconnected to be refused (a user's review). It says why: a
# program may wait for a suspended tenant's resumption, never for a revoked key.
REVOKED = ("end", {
    "reason": "access-withdrawn",
    "cause": "key-revoked",
    "detail": "the event stream was ended: its key was revoked",
})  # fmt: skip
SUSPENDED = ("end", {
    "reason": "access-withdrawn",
    "cause": "tenant-suspended",
    "detail": "the event stream was ended: its tenant was suspended; its keys work again once "
    "an admin resumes it",
})  # fmt: skip


def named(frames: list[ServerSentEvent]) -> list[tuple[str, Any]]:
    return [(frame.event, json.loads(frame.data)) for frame in frames]


async def test_a_key_withdrawn_through_a_unit_of_work_ends_its_streams_at_once(
    http: httpx.AsyncClient, nats_client: Client, database: Database
) -> None:
    """The API's revocation (or suspension, or deletion of the tenant) tells the notifiers
    as it commits: the key's stream ends, and the key opens no new one, long before the
    sweep's 30 s. Before, a new stream opened with a remembered key for up to 30 s (a user's
    review, after suspending a tenant)."""
    assert keys.REMEMBER_SECONDS >= 2 * DEADLINE_SECONDS  # only the nudge can end it in time
    key, token = await add_key(database, "withdrawn")
    headers = {"Authorization": f"Bearer {token}"}
    async with aconnect_sse(http, "GET", EVENTS, headers=headers) as source:
        events = source.aiter_sse()
        published = await publish(nats_client, 1)
        assert ids_and_bodies(await take(events, 1)) == published

        async with UnitOfWork.begin(Outbox(database, nats_client, source="/tests")) as uow:
            await uow.session.exec(
                update(ApiKey).where(col(ApiKey.id) == key.id).values(revoked_at=utcnow())
            )
            uow.withdraw_access("key.revoke")
        async with asyncio.timeout(DEADLINE_SECONDS):
            rest = [event async for event in events if event.data]

    assert named(rest) == [REVOKED]
    problem(await http.get(EVENTS, headers=headers), 401)


async def test_a_key_looked_up_as_the_keys_are_checked_is_looked_up_again(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lookup under way as a withdrawal's check ran answered with what it read before the
    key was revoked: the stream it let open was unseen by that check, and lived until the
    next sweep, 30 s on (a diff review's 5c)."""
    key, token = await add_key(database, "revoked midway")
    read, release = asyncio.Event(), asyncio.Event()
    by_token = Authenticator.by_token

    async def held_once(self: Authenticator, token: str) -> Principal | None:
        found = await by_token(self, token)
        if not read.is_set():  # the first lookup: it read the key as live, then waits
            read.set()
            await release.wait()
        return found

    monkeypatch.setattr(Authenticator, "by_token", held_once)
    secret = settings.secret_key.get_secret_value()
    authenticator = Authenticator(
        database, admin_token=settings.admin_token.get_secret_value(), secret_key=secret
    )
    known = keys.Keys(authenticator, TicketSigner(secret))
    bearer = Request({"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())]})

    opening = asyncio.create_task(known.principal(bearer))
    async with asyncio.timeout(DEADLINE_SECONDS):
        await read.wait()
    async with database.session() as session:
        await session.exec(
            update(ApiKey).where(col(ApiKey.id) == key.id).values(revoked_at=utcnow())
        )
        await session.commit()
    assert await known.withdrawn({str(key.id)}) == {str(key.id): "key-revoked"}  # the check
    release.set()

    async with asyncio.timeout(DEADLINE_SECONDS):
        assert await opening is None


async def test_a_withdrawals_check_that_failed_is_made_again_at_the_next_sweep(
    settings: Settings, nats_client: Client, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was made again at once, again and again for as long as the database was away: a
    loop that held the notifier's and asked the database without a pause."""
    secret = settings.secret_key.get_secret_value()
    authenticator = Authenticator(
        database, admin_token=settings.admin_token.get_secret_value(), secret_key=secret
    )
    known = keys.Keys(authenticator, TicketSigner(secret))
    checks: list[float] = []
    three = asyncio.Event()

    async def database_away(subjects: set[str]) -> dict[str, str]:
        await asyncio.sleep(0)  # as a connection refused: the loop runs meanwhile
        checks.append(time.monotonic())
        if len(checks) == 3:
            three.set()
        raise OSError("the database is away")

    monkeypatch.setattr(known, "withdrawn", database_away)
    withdrawn = asyncio.Event()
    withdrawn.set()  # heard from the API
    hub = EventHub(nats_client.jetstream(), memory=10)  # its floor only: no stream is open
    sweeping = asyncio.create_task(notifier._sweep(Connections(1, 1, 1), hub, known, withdrawn))
    try:
        async with asyncio.timeout(DEADLINE_SECONDS):
            await three.wait()
    finally:
        sweeping.cancel()

    gaps = [later - earlier for earlier, later in itertools.pairwise(checks)]
    assert min(gaps) >= 0.95 * notifier.SWEEP_SECONDS, gaps  # 0.1-0.2 s before


@pytest.mark.parametrize("ended_by", ["revoking the key", "suspending its tenant"])
async def test_a_stream_opened_with_a_key_ends_soon_after_the_key_is_revoked(
    http: httpx.AsyncClient,
    nats_client: Client,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    ended_by: str,
) -> None:
    monkeypatch.setattr(keys, "REMEMBER_SECONDS", 0.2)
    key, token = await add_key(database, "revoked soon")
    headers = {"Authorization": f"Bearer {token}"}

    async with aconnect_sse(http, "GET", EVENTS, headers=headers) as source:
        assert source.response.status_code == 200
        events = source.aiter_sse()
        published = await publish(nats_client, 1)
        assert ids_and_bodies(await take(events, 1)) == published

        ending = (
            update(ApiKey).where(col(ApiKey.id) == key.id).values(revoked_at=utcnow())
            if ended_by == "revoking the key"
            else update(Tenant).where(col(Tenant.id) == key.tenant_id).values(suspended_at=utcnow())
        )
        async with database.session() as session:
            await session.exec(ending)
            await session.commit()
        # The server ends the stream: iterating finishes instead of waiting for events.
        async with asyncio.timeout(DEADLINE_SECONDS):
            rest = [event async for event in events if event.data]
    assert named(rest) == [REVOKED if ended_by == "revoking the key" else SUSPENDED]
    refused = problem(await http.get(EVENTS, headers=headers), 401)
    if ended_by == "suspending its tenant":  # and told why, as the API tells it
        assert refused["detail"] == TenantSuspended.detail


async def test_the_check_of_open_streams_keys_says_why_each_withdrawn_one_opens_nothing(
    settings: Settings, database: Database
) -> None:
    """One query for all of them: a revoked key, a key of a suspended tenant, of a deleted
    one (whose keys its deletion revoked), a key never seen, and the admin token's subject of
    a token replaced since; a live key and the admin token's are not withdrawn."""
    suspended, deleted = Tenant(name="paused-one"), Tenant(name="gone-one")
    async with database.session() as session:
        session.add_all([suspended, deleted])
        await session.commit()
    live, _ = await add_key(database, "live")
    revoked, _ = await add_key(database, "revoked")
    paused, _ = await add_key(database, "paused", tenant_id=suspended.id)
    gone, _ = await add_key(database, "gone", tenant_id=deleted.id)
    now = utcnow()
    async with database.session() as session:
        keys_ended = col(ApiKey.id).in_([revoked.id, gone.id])  # as the deletion revokes them
        await session.exec(update(ApiKey).where(keys_ended).values(revoked_at=now))
        await session.exec(update(Tenant).where(col(Tenant.id) == suspended.id).values(
            suspended_at=now))  # fmt: skip
        await session.exec(update(Tenant).where(col(Tenant.id) == deleted.id).values(
            deleted_at=now))  # fmt: skip
        await session.commit()
    authenticator = Authenticator(
        database,
        admin_token=settings.admin_token.get_secret_value(),
        secret_key=settings.secret_key.get_secret_value(),
    )
    never_seen, replaced = str(uuid.uuid4()), "admin-token:from-before"
    asked = {str(k.id) for k in (live, revoked, paused, gone)} | {never_seen, replaced}

    withdrawn = await authenticator.withdrawn(asked | {authenticator.admin_subject})

    assert withdrawn == {
        str(revoked.id): "key-revoked",
        str(paused.id): "tenant-suspended",
        str(gone.id): "tenant-deleted",
        never_seen: "key-revoked",
        replaced: "key-revoked",
    }
