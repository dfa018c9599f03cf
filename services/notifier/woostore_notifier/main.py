"""woostore-notifier: store events to dashboards and programs, over Server-Sent Events.

``GET /api/v1/events`` streams every store event the caller may see: a tenant's own stores'
events, or every event for an admin. Each SSE ``id`` is the
event's JetStream stream sequence, so ``Last-Event-ID`` (sent by browsers on reconnect, or
``?last_event_id=`` on a first connection) resumes exactly after that event. Each connection
reads through its own ordered consumer, replaying from the stream; one connection per
browser tab carries every store.

Streams are bounded: each key may hold ``WOOSTORE_EVENT_STREAMS_PER_KEY`` open on a notifier
process, each tenant ``WOOSTORE_TENANT_EVENT_STREAMS``, the process
``WOOSTORE_MAX_EVENT_STREAMS`` in all (each stream costs a JetStream
consumer), and a resume reaches back at most ``WOOSTORE_EVENT_REPLAY_WINDOW_SECONDS``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import uvicorn
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Counter as MetricCounter
from prometheus_client import Gauge
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from woostore_shared.access import Authenticator, Principal
from woostore_shared.db import Database
from woostore_shared.events import NO_TENANT
from woostore_shared.logging import configure_logging, get_logger
from woostore_shared.messaging import connect, require_connected
from woostore_shared.ops import serve_ops
from woostore_shared.problems import TYPE_BASE, problem_response
from woostore_shared.secrets import InvalidTicket, TicketSigner
from woostore_shared.settings import Settings
from woostore_shared.topology import STREAM_NAME

log = get_logger(__name__)
HEARTBEAT_SECONDS = 15
RECONNECT_MILLISECONDS = 2000
RECHECK_SECONDS = 30  # how often a long-lived stream checks its key was not revoked
SEND_TIMEOUT_SECONDS = 30  # a client that stops reading is dropped, not waited on forever
_Held = TypeVar("_Held")  # what a stream is counted by: a key's subject, a tenant's id
LIMIT_RETRY_SECONDS = 30  # streams end when their clients go; try again a little later
CONNECTED = Gauge("woostore_sse_connections", "Open event-stream connections")
REFUSED = MetricCounter("woostore_sse_refused", "Event streams refused at a limit", ["limit"])
REPLAY_TRUNCATED_HEADER = "Woostore-Replay-Truncated"
# Versions before work orders handed lost work out again by repeating its event on STORES
# with this header; such copies stay in the stream for its 30 days and are not new events.
LEGACY_REPLAY_HEADER = "Woostore-Replay"


def _problem(status: int, title: str, detail: str) -> Response:
    return problem_response(status, title, detail, type_="about:blank")


class StreamSlots:
    """The event streams open in this process, per key, per tenant and in all. Each stream
    holds a JetStream consumer and a task, so without a bound one key, or one tenant minting
    keys, could exhaust the notifier (and its NATS server) for every other tenant."""

    def __init__(self, per_key: int, per_tenant: int, total: int) -> None:
        self.per_key = per_key
        self.per_tenant = per_tenant
        self.total = total
        self._by_key: Counter[str] = Counter()
        self._by_tenant: Counter[uuid.UUID] = Counter()

    def take(self, principal: Principal) -> Response | None:
        """Hold a slot for the principal's new stream, or the 429 that refuses it."""
        if self._by_key.total() >= self.total:
            return self._refuse(
                "event-streams", self.total, "the event stream is at its connection limit"
            )
        if self._by_tenant[principal.tenant_id] >= self.per_tenant:
            return self._refuse(
                "tenant-event-streams",
                self.per_tenant,
                f"this tenant has its maximum of {self.per_tenant} event streams open",
            )
        if self._by_key[principal.subject] >= self.per_key:
            return self._refuse(
                "event-streams-per-key",
                self.per_key,
                f"this key has its maximum of {self.per_key} event streams open; "
                "close one (one stream per tab carries every store)",
            )
        self._by_key[principal.subject] += 1
        self._by_tenant[principal.tenant_id] += 1
        CONNECTED.inc()
        return None

    def give_back(self, principal: Principal) -> None:
        _forget_one(self._by_key, principal.subject)
        _forget_one(self._by_tenant, principal.tenant_id)
        CONNECTED.dec()

    @staticmethod
    def _refuse(limit: str, allowed: int, detail: str) -> Response:
        REFUSED.labels(limit).inc()
        return problem_response(
            429,
            "Limit reached",
            detail,
            type_=TYPE_BASE + "limit-reached",
            headers={"Retry-After": str(LIMIT_RETRY_SECONDS)},
            limit=limit,
            allowed=allowed,
        )


def _forget_one(counter: Counter[_Held], key: _Held) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]  # a key or tenant without a stream is not kept


class _HeldEventSourceResponse(EventSourceResponse):
    """Runs ``release`` once the response ends, however it ends: a client that goes away
    cancels the response, possibly before the event generator ever started."""

    def __init__(self, *args: Any, release: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._release()


async def _principal(request: Request) -> Principal | None:
    """From a bearer API key (programs), or a ticket from POST /api/v1/events/ticket
    (browsers: an EventSource cannot send headers)."""
    state = request.app.state
    authenticator: Authenticator = state.authenticator
    tickets: TicketSigner = state.tickets
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return await authenticator.by_token(header[7:])
    ticket = request.query_params.get("ticket")
    if ticket is None:
        return None
    try:
        opened = tickets.open(ticket)
    except InvalidTicket:
        return None
    return await authenticator.by_ticket(opened)


def _visible(message: Msg, principal: Principal) -> bool:
    if LEGACY_REPLAY_HEADER in (message.headers or {}):
        return False
    tenant: object = json.loads(message.data).get("tenantid")
    if tenant == str(NO_TENANT):
        return False  # a store in the warm pool: nobody's yet, not even shown to admins
    return principal.is_admin or tenant == str(principal.tenant_id)


def now() -> datetime:
    return datetime.now(UTC)


async def _replay_from(
    js: JetStreamContext, after: int | None, window: timedelta
) -> tuple[ConsumerConfig, bool]:
    """Where a stream starts, and whether the window cut its replay short. Without an id,
    at the next new event; else right after ``after``, unless the next event is older than
    the window: then at the oldest event within it (a stream kept 30 days is not replayed
    to every client that asks)."""
    if after is None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.NEW), False
    oldest = now() - window
    try:
        following = await js.get_msg(STREAM_NAME, seq=after + 1, subject="store.>", next=True)
    except NotFoundError:
        following = None  # nothing after it yet: only new events will follow
    if following is not None and following.time is not None and following.time < oldest:
        return ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=oldest
        ), True
    return ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
    ), False


def _resume_after(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    # ASCII only (str.isdigit also accepts "²" and other scripts' digits), and below the last
    # uint64 sequence: resuming starts at the next one, which must exist in JetStream's range.
    if not (raw.isascii() and raw.isdigit()) or int(raw) >= 2**64 - 1:
        raise ValueError("Last-Event-ID must be a stream sequence (a non-negative integer)")
    return int(raw)


async def stream_events(request: Request) -> Response:
    state = request.app.state
    principal = await _principal(request)
    if principal is None:
        detail = (
            "the bearer token is not a valid API key or was revoked"
            if "authorization" in request.headers
            else "a bearer token (an API key) or a valid ticket is required"
        )
        return _problem(401, "Unauthorized", detail)
    try:
        after = _resume_after(request)
    except ValueError as error:
        return _problem(400, "Invalid Last-Event-ID", str(error))

    settings: Settings = state.settings
    slots: StreamSlots = state.stream_slots
    refused = slots.take(principal)
    if refused is not None:
        return refused
    try:
        window = timedelta(seconds=settings.event_replay_window_seconds)
        config, truncated = await _replay_from(state.js, after, window)
        subscription = await state.js.subscribe(
            "store.>", stream=STREAM_NAME, ordered_consumer=True, config=config
        )
    except BaseException:
        slots.give_back(principal)
        raise

    async def release() -> None:
        slots.give_back(principal)
        await subscription.unsubscribe()

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(retry=RECONNECT_MILLISECONDS, comment="connected")
        checked = time.monotonic()
        while True:
            try:
                message = await subscription.next_msg(timeout=RECHECK_SECONDS)
            except NatsTimeoutError:
                message = None
            if time.monotonic() - checked >= RECHECK_SECONDS:
                # A revoked key's stream ends within RECHECK_SECONDS, not at disconnect.
                if await state.authenticator.by_subject(principal.subject) is None:
                    log.info("event stream closed: key revoked", actor=principal.actor)
                    return
                checked = time.monotonic()
            if message is not None and _visible(message, principal):
                yield ServerSentEvent(
                    data=message.data.decode(), id=str(message.metadata.sequence.stream)
                )

    return _HeldEventSourceResponse(
        events(),
        ping=HEARTBEAT_SECONDS,
        send_timeout=SEND_TIMEOUT_SECONDS,
        # Events before the window were skipped: a program should list the stores again.
        headers={REPLAY_TRUNCATED_HEADER: "true"} if truncated else None,
        release=release,
    )


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nats = await connect(settings.nats_url, "woostore-notifier")
        app.state.settings = settings
        app.state.nats = nats
        app.state.js = nats.jetstream()
        secret = settings.secret_key.get_secret_value()
        app.state.tickets = TicketSigner(secret)
        app.state.stream_slots = StreamSlots(
            settings.event_streams_per_key,
            settings.tenant_event_streams,
            settings.max_event_streams,
        )
        db = Database(settings.database_url)
        app.state.db = db
        app.state.authenticator = Authenticator(
            db, admin_token=settings.admin_token.get_secret_value(), secret_key=secret
        )
        app.state.ops = await serve_ops(
            settings.ops_host,
            settings.ops_port,
            {"nats": lambda: require_connected(nats), "database": db.ping},
        )
        yield
        await app.state.ops.stop()
        await nats.close()
        await db.dispose()

    app = Starlette(
        routes=[Route("/api/v1/events", stream_events)],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=[settings.allowed_origin],
                allow_methods=["GET"],
                allow_headers=["Authorization", "Last-Event-ID"],
            )
        ],
        lifespan=lifespan,
    )
    return app


def main() -> None:
    settings = Settings()
    settings.require_runtime()
    configure_logging(settings, "notifier")
    uvicorn.run(
        create_app(settings),
        host=settings.notifier_host,
        port=settings.notifier_port,
        log_config=None,
        timeout_graceful_shutdown=3,  # open streams never end by themselves
    )
