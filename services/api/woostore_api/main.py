"""woostore-api: the REST API, and the dashboard's static files at ``/``."""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse
from nats.aio.client import Client
from secure.middleware import SecureASGIMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from woostore_api.access.router import router as access_router
from woostore_api.audit.router import router as audit_router
from woostore_api.auth import CurrentCaller
from woostore_api.deps import SettingsDep, TicketsDep
from woostore_api.edge import (
    REVALIDATE,
    Assets,
    BodyLimit,
    HeadAsGet,
    RequestMetrics,
    no_store,
    note_route,
    security_headers,
)
from woostore_api.problems import install_problem_handlers, problem_responses
from woostore_api.remembered import Remembered
from woostore_api.stores.router import router as stores_router
from woostore_api.stores.schemas import Platform, Ticket
from woostore_api.stores.service import STEP_TIMES_REMEMBERED_SECONDS, step_times
from woostore_shared.access import Authenticator
from woostore_shared.asyncapi import document as asyncapi_document
from woostore_shared.db import Database
from woostore_shared.logging import configure_logging
from woostore_shared.messaging import connect, require_connected
from woostore_shared.ops import Starting, serve_ops
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import SESSION_TTL_SECONDS, CredentialCipher, TicketSigner
from woostore_shared.settings import Settings
from woostore_shared.tracing import configure_tracing

STATIC = Path(__file__).parent / "static"
VERSION = version("woostore-api")

platform_router = APIRouter(tags=["platform"])


@platform_router.get("/platform", response_model=Platform, responses=problem_responses(401, 422))
async def platform(settings: SettingsDep, _: CurrentCaller) -> Platform:
    """Where the event stream is, whether stores run on a real or a simulated cluster, and
    the store chart an upgrade moves a store to."""
    return Platform(
        cluster=settings.cluster_mode.value,
        events_url=settings.events_url,
        base_domain=settings.base_domain,
        version=VERSION,
        store_chart_version=settings.store_chart_version,
    )


@platform_router.get("/asyncapi.json")
async def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the store events (public, like the OpenAPI document)."""
    return asyncapi_document(VERSION)


@platform_router.post(
    "/events/ticket",
    response_model=Ticket,
    responses=problem_responses(401, 403, 422),
    dependencies=[Depends(no_store)],
)
async def event_ticket(tickets: TicketsDep, caller: CurrentCaller) -> Ticket:
    """A short-lived ticket for the event stream: EventSource cannot send an Authorization
    header, and a long-lived key does not belong in a URL. The stream shows what the
    caller may see: its tenant's events, or every event for an admin."""
    return Ticket(ticket=tickets.issue(caller.principal.subject), expires_in=tickets.max_age)


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    """The dashboard's static files: no trace starts there."""
    path: str = scope["path"]
    return path.startswith("/static/")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # /readyz answers from the start, not ready until NATS is first reached (it says
        # which). Once started, NATS gone leaves it ready, named under "degraded": the outbox
        # keeps taking stores, and unready, every API pod would leave its Service.
        nats, db, starting = Client(), Database.of_service(settings, "woostore-api"), Starting()
        app.state.ops = await serve_ops(
            settings.ops_host,
            settings.ops_port,
            {"database": db.ping, "started": starting},
            reported={"nats": lambda: require_connected(nats)},
        )
        await connect(settings.nats_url, "woostore-api", nats)
        secret = settings.secret_key.get_secret_value()
        app.state.settings = settings
        app.state.db = db
        app.state.outbox = Outbox(db, nats, source="/woostore/api")
        app.state.cipher = CredentialCipher(secret)
        app.state.tickets = TicketSigner(secret)
        app.state.sessions = TicketSigner(secret, "session", SESSION_TTL_SECONDS)
        app.state.authenticator = Authenticator(
            db, admin_token=settings.admin_token.get_secret_value(), secret_key=secret
        )
        app.state.step_times = Remembered(
            partial(step_times, db), seconds=STEP_TIMES_REMEMBERED_SECONDS
        )
        app.state.nats = nats
        starting.done()
        yield
        await app.state.ops.stop()
        await app.state.outbox.close()
        await nats.close()
        await db.dispose()

    app = FastAPI(
        title="WooStore API",
        version=VERSION,
        description="Provision isolated WooCommerce stores. Errors are RFC 9457 problem details.",
        lifespan=lifespan,
        dependencies=[Depends(note_route)],  # each request timed by its route (edge.py)
        # FastAPI's own OpenTelemetry: a span per request, named by its route, the root of
        # the trace of what it asks for (tracing.py); it continues a client's traceparent.
        # One span a request: no spans for dependencies and serialisation, which cost more
        # CPU than a create's work in the database. Traces only, on tracing.py's provider:
        # metrics are Prometheus's (edge.py), logs structlog's, and exporters tracing.py's
        # (FASTAPI_OTEL_AUTO_CONFIGURE would add a second one, sending every span twice).
        telemetry={
            "operation_spans": False,
            "metrics": False,
            "logs": False,
            "auto_configure": False,
            "exclude": _untraced,
        },
        # FastAPI's own pages load Swagger UI and ReDoc from a CDN, with inline scripts.
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    app.add_middleware(HeadAsGet)  # innermost: every other layer sees the HEAD it was sent
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Added last, so outermost: refusals of the body limit get the headers too.
    app.add_middleware(SecureASGIMiddleware, secure=security_headers(settings))
    # Outermost of all: the audit log records the client a trusted proxy saw, and a cookie is
    # Secure when the client's connection was HTTPS. Only here: main() turns uvicorn's off.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    app.add_middleware(RequestMetrics)  # outermost: refused requests are timed too
    api = APIRouter(prefix="/api/v1")
    api.include_router(stores_router)
    api.include_router(access_router)
    api.include_router(audit_router)
    api.include_router(platform_router)
    app.include_router(api)
    app.mount("/static", Assets(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=REVALIDATE)

    if settings.api_docs:
        app.mount(
            "/docs/assets",
            Assets(packages=[("fastapi_offline", "static")]),
            name="docs-assets",
        )

        @app.get("/docs", include_in_schema=False)
        async def docs() -> FileResponse:
            return FileResponse(STATIC / "docs.html")

    return app


def main() -> None:
    settings = Settings.load()
    settings.require_runtime(makes_stores=True)
    configure_logging(settings, "api")
    configure_tracing("api")
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        ws="none",  # the API speaks no WebSocket: wsproto and h11 are left unloaded
        proxy_headers=False,  # create_app applies them, from WOOSTORE_FORWARDED_ALLOW_IPS
    )
