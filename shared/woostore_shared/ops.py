"""Health, readiness and metrics endpoints, the same on every service.

``/healthz`` answers while the process's event loop runs; ``/readyz`` runs the service's
readiness checks (database, NATS...) and answers 503 naming the ones failing, within
``_CHECK_TIMEOUT`` whatever hangs; ``/metrics``
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


class _Readiness:
    """The service's checks, run at once, each given ``_CHECK_TIMEOUT``. One that takes
    longer is reported as timed out and left to end in the background, never awaited: a
    query cancelled on a hung PostgreSQL waits for the server to take the cancel, and
    /readyz gave no answer at all for half a minute. A check still running from an earlier
    probe is not started again, so a hung dependency piles nothing up."""

    def __init__(self, checks: Mapping[str, ReadinessCheck]) -> None:
        self._checks = checks
        self._running: dict[str, asyncio.Task[object]] = {}

    async def failing(self) -> dict[str, str]:
        tasks = {name: self._run(name, check) for name, check in self._checks.items()}
        if tasks:
            await asyncio.wait(tasks.values(), timeout=_CHECK_TIMEOUT)
        return {name: why for name, task in tasks.items() if (why := _failure(task))}

    def _run(self, name: str, check: ReadinessCheck) -> asyncio.Task[object]:
        task = self._running.get(name)
        if task is None or task.done():
            task = asyncio.ensure_future(_checked(check))
            task.add_done_callback(_failure)  # its error is read, even if nobody waits
            self._running[name] = task
        return task

    def stop(self) -> None:
        for task in self._running.values():
            task.cancel()


async def _checked(check: ReadinessCheck) -> object:
    # Called in the task, so that a check failing before it awaits (the provisioner's
    # broker has no connection to look at yet, say) fails the task, not /readyz itself.
    return await check()


def _failure(task: asyncio.Task[object]) -> str | None:
    """Why a check failed (its error's name), or None if it passed."""
    if not task.done():
        return "TimeoutError"
    if task.cancelled():
        return "CancelledError"
    error = task.exception()  # any failure means "not ready"; the reason is reported
    return None if error is None else type(error).__name__


def _ops_routes(checks: _Readiness, reported: _Readiness) -> list[Route]:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        failing, degraded = await asyncio.gather(checks.failing(), reported.failing())
        body: dict[str, object] = {"status": "unready" if failing else "ready", "failing": failing}
        if degraded:
            body["degraded"] = degraded
        return JSONResponse(body, 503 if failing else 200)

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
    readiness: tuple[_Readiness, ...]

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task
        for checks in self.readiness:
            checks.stop()


async def serve_ops(
    host: str,
    port: int,
    checks: Mapping[str, ReadinessCheck],
    reported: Mapping[str, ReadinessCheck] | None = None,
) -> OpsServer:
    """Start the ops endpoints in the background of the current event loop. ``/readyz`` is
    503 while any of ``checks`` fails; one of ``reported`` failing is named under
    ``degraded`` and leaves it ready (what the service can do without)."""
    readiness = (_Readiness(checks), _Readiness(reported or {}))
    config = uvicorn.Config(
        Starlette(routes=_ops_routes(*readiness)),
        host=host,
        port=port,
        log_config=None,
        lifespan="off",
        ws="none",  # no WebSocket here: wsproto and h11, loaded otherwise, cost 1 MB a process
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why the server could not start
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    log.info("ops endpoints listening", url=f"http://{host}:{bound}", port=bound)
    return OpsServer(server, task, bound, readiness)
