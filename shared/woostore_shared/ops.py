"""Health, readiness and metrics endpoints, the same on every service.

``/healthz`` answers while the process's event loop runs; ``/readyz`` runs the service's
readiness checks (database, NATS...) and answers 503 naming the ones failing; ``/metrics``
is the Prometheus exposition. Every service serves them with :func:`serve_ops` on a port of
their own (``WOOSTORE_OPS_PORT``), never on the API's or the notifier's public port: the
Ingress routes those to the world, and these are for the kubelet and Prometheus only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from woostore_shared.logging import get_logger

ReadinessCheck = Callable[[], Awaitable[object]]
log = get_logger(__name__)
_CHECK_TIMEOUT = 2.0


class Starting:
    """A readiness check that fails until the service says it has started: its ops port
    answers from the first moment (naming what it still waits for), its public port only
    once it has started."""

    def __init__(self) -> None:
        self._started = False

    def done(self) -> None:
        self._started = True

    async def __call__(self) -> None:
        if not self._started:
            raise ConnectionError("still starting")


def _ops_routes(checks: Mapping[str, ReadinessCheck]) -> list[Route]:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        failing: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), _CHECK_TIMEOUT)
            except Exception as error:  # any failure means "not ready"; the reason is reported
                failing[name] = type(error).__name__
        status = 503 if failing else 200
        return JSONResponse(
            {"status": "unready" if failing else "ready", "failing": failing}, status
        )

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]


class _EmbeddedServer(uvicorn.Server):
    """Runs inside a service's event loop: the service, not uvicorn, owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class OpsServer:
    """The ops endpoints running in the background of a service's event loop."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int  # the one bound, when asked for 0

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def serve_ops(host: str, port: int, checks: Mapping[str, ReadinessCheck]) -> OpsServer:
    """Start the ops endpoints in the background of the current event loop."""
    config = uvicorn.Config(
        Starlette(routes=_ops_routes(checks)), host=host, port=port, log_config=None, lifespan="off"
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why the server could not start
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    log.info("ops endpoints listening", url=f"http://{host}:{bound}", port=bound)
    return OpsServer(server, task, bound)
