"""woostore-notifier: store events to dashboards and programs, over Server-Sent Events.

``GET /api/v1/events`` streams every store event the caller may see. Each SSE ``id`` is the
event's JetStream stream sequence, so ``Last-Event-ID`` (sent by browsers on reconnect, or
``?last_event_id=`` on a first connection) resumes exactly after that event. Each connection
reads through its own ordered consumer, replaying from the stream; one connection per
browser tab carries every store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client import Gauge
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from woostore_shared.logging import configure_logging, get_logger
from woostore_shared.messaging import connect, require_connected
from woostore_shared.ops import ops_routes
from woostore_shared.outbox import REPLAY_HEADER
from woostore_shared.secrets import InvalidTicket, TicketSigner, tokens_match
from woostore_shared.settings import Settings
from woostore_shared.topology import STREAM_NAME

log = get_logger(__name__)
HEARTBEAT_SECONDS = 15
RECONNECT_MILLISECONDS = 2000
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


def _authenticated(request: Request, settings: Settings, tickets: TicketSigner) -> bool:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return tokens_match(header[7:], settings.admin_token.get_secret_value())
    ticket = request.query_params.get("ticket")
    if ticket is None:
        return False
    try:
        tickets.verify(ticket)
    except InvalidTicket:
        return False
    return True


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
    if not _authenticated(request, state.settings, state.tickets):
        return _problem(401, "Unauthorized", "a bearer token or a valid ticket is required")
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
            async for message in subscription.messages:
                if REPLAY_HEADER in (message.headers or {}):
                    continue  # work handed out again, not a new event
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
        app.state.tickets = TicketSigner(settings.secret_key.get_secret_value())
        yield
        await nats.close()

    async def nats_ready() -> None:
        await require_connected(app.state.nats)

    app = Starlette(
        routes=[
            Route("/api/v1/events", stream_events),
            *ops_routes({"nats": nats_ready}),
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
