"""woostore-notifier: store events to dashboards and programs, over Server-Sent Events.

``GET /api/v1/events`` streams every store event the caller may see: a tenant's own stores'
events, or every event for an admin. Each SSE ``id`` is the
event's JetStream stream sequence, so ``Last-Event-ID`` (sent by browsers on reconnect, or
``?last_event_id=`` on a first connection) resumes exactly after that event. Each connection
reads through its own ordered consumer, replaying from the stream; one connection per
browser tab carries every store.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client import Gauge
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from woostore_shared.access import Authenticator, Principal
from woostore_shared.db import Database
from woostore_shared.logging import configure_logging, get_logger
from woostore_shared.messaging import connect, require_connected
from woostore_shared.ops import ops_routes
from woostore_shared.outbox import REPLAY_HEADER
from woostore_shared.secrets import InvalidTicket, TicketSigner
from woostore_shared.settings import Settings
from woostore_shared.topology import STREAM_NAME

log = get_logger(__name__)
HEARTBEAT_SECONDS = 15
RECONNECT_MILLISECONDS = 2000
RECHECK_SECONDS = 30  # how often a long-lived stream checks its key was not revoked
SEND_TIMEOUT_SECONDS = 30  # a client that stops reading is dropped, not waited on forever
CONNECTED = Gauge("woostore_sse_connections", "Open event-stream connections")


def _problem(status: int, title: str, detail: str) -> Response:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
        # RFC 9110: a 401 names the scheme that would be accepted
        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )


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
    if REPLAY_HEADER in (message.headers or {}):
        return False  # work handed out again, not a new event
    if principal.is_admin:
        return True
    tenant: object = json.loads(message.data).get("tenantid")
    return tenant == str(principal.tenant_id)


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

    config = (
        ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        if after is None
        else ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1)
    )
    subscription = await state.js.subscribe(
        "store.>", stream=STREAM_NAME, ordered_consumer=True, config=config
    )

    async def events() -> AsyncIterator[ServerSentEvent]:
        CONNECTED.inc()
        try:
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
        finally:
            CONNECTED.dec()
            await subscription.unsubscribe()

    return EventSourceResponse(events(), ping=HEARTBEAT_SECONDS, send_timeout=SEND_TIMEOUT_SECONDS)


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nats = await connect(settings.nats_url, "woostore-notifier")
        app.state.settings = settings
        app.state.nats = nats
        app.state.js = nats.jetstream()
        secret = settings.secret_key.get_secret_value()
        app.state.tickets = TicketSigner(secret)
        db = Database(settings.database_url)
        app.state.db = db
        app.state.authenticator = Authenticator(
            db, admin_token=settings.admin_token.get_secret_value(), secret_key=secret
        )
        yield
        await nats.close()
        await db.dispose()

    async def nats_ready() -> None:
        await require_connected(app.state.nats)

    async def database_ready() -> None:
        await app.state.db.ping()

    app = Starlette(
        routes=[
            Route("/api/v1/events", stream_events),
            *ops_routes({"nats": nats_ready, "database": database_ready}),
        ],
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
