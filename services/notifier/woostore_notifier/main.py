"""woostore-notifier: store events to dashboards and programs, over Server-Sent Events.

``GET /api/v1/events`` streams every store event the caller may see: a tenant's own stores'
events, or every event for an admin. Each SSE ``id`` is the event's JetStream stream
sequence, so ``Last-Event-ID`` (sent by browsers on reconnect, or ``?last_event_id=`` on a
first connection) resumes exactly after that event, on any replica and after a restart.

Each process reads the events once (``hub``), encodes each once, and fans them out to its
clients; a resume is served from the hub's memory, or from the stream through a shared
replay (``replay``) when it reaches further back. An id that cannot be served (older than
``WOOSTORE_EVENT_REPLAY_WINDOW_SECONDS``, aged out of the stream, or from a stream that was
lost) gets a ``refetch`` event: the client must fetch its state again.

Events are unnamed (``onmessage`` hears them all) unless the client asks with
``?event_names=true``: each then starts with an ``event:`` line naming its type, ``ready``
for ``io.woostore.store.ready``, for ``addEventListener("ready", ...)``. ``?store_id=``
narrows a stream to one store's events (a program or the CLI following one store), and an
admin's ``?tenant_id=`` to one tenant's.

Streams are bounded: each key may hold ``WOOSTORE_EVENT_STREAMS_PER_KEY`` open on a notifier
process, each tenant ``WOOSTORE_TENANT_EVENT_STREAMS``, the process
``WOOSTORE_MAX_EVENT_STREAMS`` in all (``connections``).
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from types import FrameType

import psycopg
import uvicorn
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from woostore_notifier import keys
from woostore_notifier.connections import Connections, Refusal
from woostore_notifier.database import PlainDatabase
from woostore_notifier.frames import View
from woostore_notifier.hub import EventHub
from woostore_notifier.keys import Keys
from woostore_notifier.replay import StreamReplay
from woostore_notifier.stream import EventStream, KeepServerSend
from woostore_shared.access import Authenticator, Principal, TenantSuspended
from woostore_shared.logging import configure_logging, get_logger
from woostore_shared.messaging import connect, require_connected
from woostore_shared.ops import Starting, serve_ops
from woostore_shared.problems import database_unavailable, http_problem, problem_for
from woostore_shared.secrets import TicketSigner
from woostore_shared.settings import Settings
from woostore_shared.topology import ACCESS_WITHDRAWN
from woostore_shared.tracing import configure_tracing

log = get_logger(__name__)
SWEEP_SECONDS = 1.0
GC_THRESHOLD = 70_000  # allocations between young collections; Python's default is 700
READ_BACK_SECONDS = 60.0  # the longest a starting notifier reads its memory back
LIMIT_RETRY_SECONDS = 30  # streams end when their clients go; try again a little later


async def _http_problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)  # the only exception it is registered for
    return http_problem(request, error)


async def _database_away(request: Request, error: Exception) -> Response:
    """A key's lookup the database could not answer (unreachable, restarting, or every
    connection in use: psycopg's OperationalError, PoolTimeout among them): a 503 the client
    sends again shortly, as the API answers, not a 500 and a traceback in the log."""
    log.warning("database unavailable", path=request.url.path, error=type(error).__name__)
    return database_unavailable(request)


def _resume_after(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    # ASCII only (str.isdigit also accepts "²" and other scripts' digits), and below the last
    # uint64 sequence: resuming starts at the next one, which must exist in JetStream's range.
    # Its 20 digits at most before it is read: Python refuses to read over 4,300.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20 or int(raw) >= 2**64 - 1:
        raise ValueError("Last-Event-ID must be a stream sequence (a non-negative integer)")
    return int(raw)


# Another is refused, not ignored: `?lastEventId=` or `?store=` would give a stream that
# silently starts from now, or says every store's events.
PARAMETERS = ("ticket", "last_event_id", "event_names", "store_id", "tenant_id")


def _unknown(request: Request) -> str | None:
    """What the request asks with that the stream does not know, if anything."""
    unknown = sorted(set(request.query_params) - set(PARAMETERS))
    if not unknown:
        return None
    return f"the event stream takes no {', '.join(unknown)}; it takes {', '.join(PARAMETERS)}"


def _named(request: Request) -> bool:
    """Whether the client asked for ``event:`` lines (``?event_names=true``)."""
    raw = request.query_params.get("event_names", "false")
    if raw not in _FLAGS:
        raise ValueError(f"event_names must be true or false (or 1 or 0), not {raw!r}")
    return _FLAGS[raw]


_FLAGS = {"true": True, "1": True, "false": False, "0": False}


def _narrowed_to(request: Request, parameter: str, of: str) -> str | None:
    """The one store or tenant whose events the client asked for (``?store_id=``,
    ``?tenant_id=``), as events write ids; None for every one it may see."""
    raw = request.query_params.get(parameter)
    if raw is None:
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ValueError(f"{parameter} must be a {of}'s id (a UUID), not {raw!r}") from None


async def _unseen(
    authenticator: Authenticator, principal: Principal, store: str | None, tenant: str | None
) -> str | None:
    """The store or tenant a stream is narrowed to that ``principal`` finds nothing of
    (mistyped, another tenant's): its stream would say nothing, for ever, as of one gone
    quiet. One query, for such a stream only (a tenant's key naming its own tenant: none).
    Not known while the database is away: the stream opens, and says what it is sent."""
    tenant = None if tenant == str(principal.tenant_id) and not principal.is_admin else tenant
    if store is None and tenant is None:
        return None
    store_id = None if store is None else uuid.UUID(store)
    tenant_id = None if tenant is None else uuid.UUID(tenant)
    try:
        return await authenticator.unseen(principal, store_id, tenant_id)
    except Exception:  # the database is away, or its pool exhausted
        log.warning("could not look up what an event stream is narrowed to", exc_info=True)
        return None


async def stream_events(request: Request) -> Response | EventStream:
    state = request.app.state
    try:
        principal, suspended = await state.keys.principal(request), False
    except TenantSuspended:
        principal, suspended = None, True
    if principal is None:
        if suspended:
            detail = TenantSuspended.detail
        elif "authorization" in request.headers:
            detail = "the bearer token is not a valid API key or was revoked"
        elif "ticket" in request.query_params:
            detail = (
                "the ticket is not valid: used already, expired, its key revoked or its tenant "
                "suspended"
            )
        else:
            detail = "a bearer token (an API key) or a valid ticket is required"
        # RFC 6750, as the API answers: a token sent and refused is named as such.
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        refused = scheme.lower() == "bearer" and bool(token.strip())
        challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if refused else None
        return problem_for(request, 401, "Unauthorized", detail, "unauthorized", challenge)
    if (unknown := _unknown(request)) is not None:
        return problem_for(request, 400, "Unknown parameter", unknown, "unknown-parameter")
    try:
        after = _resume_after(request)
    except ValueError as error:
        return problem_for(
            request, 400, "Invalid Last-Event-ID", str(error), "invalid-last-event-id"
        )
    try:
        named = _named(request)
    except ValueError as error:
        return problem_for(request, 400, "Invalid event_names", str(error), "invalid-event-names")
    try:
        store = _narrowed_to(request, "store_id", "store")
    except ValueError as error:
        return problem_for(request, 400, "Invalid store_id", str(error), "invalid-store-id")
    try:
        tenant = _narrowed_to(request, "tenant_id", "tenant")
    except ValueError as error:
        return problem_for(request, 400, "Invalid tenant_id", str(error), "invalid-tenant-id")
    own = None if principal.is_admin else str(principal.tenant_id)
    if tenant is not None and own not in (None, tenant):
        detail = "a tenant key reads only its own tenant's events"  # as the API says of data
        return problem_for(request, 403, "Forbidden", detail, "forbidden")
    connections: Connections = state.connections
    client = connections.take(principal)
    if isinstance(client, Refusal):
        return problem_for(
            request, 429, "Limit reached", client.detail, "limit-reached",
            {"Retry-After": str(LIMIT_RETRY_SECONDS)}, limit=client.limit, allowed=client.allowed,
        )  # fmt: skip
    # The ticket spent last but for the store's or tenant's lookup, which a ticket spent
    # already (read from an access log, say) must not get to ask.
    try:
        admitted = await state.keys.admitted(request)
        unseen = await _unseen(state.authenticator, principal, store, tenant) if admitted else None
    except BaseException:  # the database away as the ticket was spent, say
        connections.give_back(client)
        raise
    if not admitted or unseen is not None:
        connections.give_back(client)
    if not admitted:
        detail = "the ticket is not valid: used already, or expired"
        return problem_for(request, 401, "Unauthorized", detail, "unauthorized")
    if unseen is not None:
        return problem_for(request, 404, "Not found", f"{unseen} does not exist", "not-found")
    return EventStream(
        client,
        after,
        view=View(client.tenant or tenant, store),
        hub=state.hub,
        replay=state.replay,
        connections=connections,
        window_seconds=state.settings.event_replay_window_seconds,
        named=named,
    )


async def _sweep(
    connections: Connections, hub: EventHub, known: Keys, withdrawn: asyncio.Event
) -> None:
    """End the streams of clients that stopped reading, and of keys no longer valid: looked
    at every ``keys.REMEMBER_SECONDS``, or at once when the API says a key was withdrawn."""
    checked = time.monotonic()
    owed = False  # a withdrawal's check that failed: made again at the next sweep
    while True:
        with suppress(TimeoutError):
            async with asyncio.timeout(SWEEP_SECONDS):
                await withdrawn.wait()
        connections.drop_slow(hub.floor)
        if owed or withdrawn.is_set() or time.monotonic() - checked >= keys.REMEMBER_SECONDS:
            told, asked = owed or withdrawn.is_set(), connections.subjects()
            withdrawn.clear()  # one check covers every withdrawal heard before it
            try:
                connections.drop_withdrawn(await known.withdrawn(asked))
            except Exception:  # the database is away: ask again at the next sweep
                log.exception("could not check the keys of open event streams")
                # Not a full interval away, since it was asked for; nor at once, again and
                # again while the database is away.
                owed = told
                continue
            owed, checked = False, time.monotonic()


def create_app(settings: Settings) -> _Notifier:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # /readyz answers from the start, not ready until NATS is reached (it says which).
        nats, db, starting = (
            NatsClient(),
            PlainDatabase(settings.database_url, "woostore-notifier"),
            Starting(),
        )
        await db.open()  # it connects as it is asked, each time
        app.state.ops = await serve_ops(
            settings.ops_host,
            settings.ops_port,
            {"nats": lambda: require_connected(nats), "database": db.ping, "started": starting},
        )
        await connect(settings.nats_url, "woostore-notifier", nats)
        js = nats.jetstream()
        hub = EventHub(js, settings.event_memory)
        await hub.start()
        async with asyncio.timeout(READ_BACK_SECONDS):
            await hub.ready.wait()
        secret = settings.secret_key.get_secret_value()
        authenticator = Authenticator(
            db, admin_token=settings.admin_token.get_secret_value(), secret_key=secret
        )
        app.state.settings = settings
        app.state.loop = asyncio.get_running_loop()
        app.state.hub = hub
        app.state.replay = StreamReplay(js)
        app.state.authenticator = authenticator
        app.state.keys = Keys(authenticator, TicketSigner(secret))
        app.state.connections = Connections(
            settings.event_streams_per_key,
            settings.tenant_event_streams,
            settings.max_event_streams,
        )
        withdrawn = asyncio.Event()

        async def heard_of_a_withdrawal(_: Msg) -> None:
            withdrawn.set()

        await nats.subscribe(ACCESS_WITHDRAWN, cb=heard_of_a_withdrawal)
        sweeping = asyncio.create_task(
            _sweep(app.state.connections, hub, app.state.keys, withdrawn)
        )
        starting.done()
        yield
        sweeping.cancel()
        with suppress(asyncio.CancelledError):
            await sweeping
        await hub.stop()
        await app.state.ops.stop()
        await nats.close()
        await db.dispose()

    app = _Notifier(
        routes=[Route("/api/v1/events", stream_events)],
        exception_handlers={HTTPException: _http_problem, psycopg.OperationalError: _database_away},
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=[settings.allowed_origin],
                allow_methods=["GET"],
                allow_headers=["Authorization", "Last-Event-ID"],
            ),
        ],
        lifespan=lifespan,
    )
    return app


def main() -> None:
    # Each open stream holds a few long-lived objects (a task, a connection, its buffers): at
    # 10,000 streams the cyclic collector, run at its default pace, walked them all so often
    # that it took a quarter of the process's time (py-spy). The notifier makes little
    # cyclic garbage; collecting a hundred times less often costs a little memory instead.
    gc.set_threshold(GC_THRESHOLD, 50, 100)
    settings = Settings.load()
    settings.require_runtime()
    configure_logging(settings, "notifier")
    configure_tracing("notifier")
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.notifier_host,
        port=settings.notifier_port,
        log_config=None,
        ws="none",  # Server-Sent Events, no WebSocket: wsproto and h11 are left unloaded
        timeout_graceful_shutdown=3,  # open streams never end by themselves
        # After a restart every client reconnects within seconds. uvicorn's default queue of
        # 2,048 connections not yet accepted overflowed in the benchmark's storm (the kernel's
        # ListenOverflows), and a dropped connection waits out TCP's retransmission back-off.
        # The kernel caps this at net.core.somaxconn (4,096 by default).
        backlog=settings.max_event_streams,
    )
    _Server(config, app).run()


class _Notifier(Starlette):
    """The notifier's app, with ``KeepServerSend`` outside all the rest, Starlette's own
    ServerErrorMiddleware included: the streams' body writes go straight to the server."""

    def build_middleware_stack(self) -> ASGIApp:
        return KeepServerSend(super().build_middleware_stack())


class _Server(uvicorn.Server):
    """Ends the event streams as soon as the process is told to stop. They never end by
    themselves: uvicorn would wait out its grace period for them, then cancel each one and
    log it as an error, 10,000 errors for 10,000 clients."""

    def __init__(self, config: uvicorn.Config, app: _Notifier) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        state = self._app.state
        if hasattr(state, "hub"):  # started: a signal runs this between two steps of the loop
            state.loop.call_soon_threadsafe(state.hub.end_streams)
