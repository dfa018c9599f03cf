"""Connecting to NATS, the same way in every service."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError

from woostore_shared.logging import get_logger

log = get_logger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RETRY_SECONDS = 1
# How often a client asks the server whether it is there; after two unanswered, the third
# ping's turn leaves it for another (or the same, once back). A server gone without a word
# (its node lost, a NAT's mapping dropped) is noticed in about a minute: with nats-py's
# 2 minutes it took 6, while no work arrived and nothing was published.
PING_SECONDS = 20


async def log_nats_error(error: Exception) -> None:
    """NATS's error callback: once a second while NATS is away, the error in one line (the
    client's default logs a traceback each time)."""
    log.warning("nats unreachable, trying again", error=f"{type(error).__name__}: {error}")


class StoppedWaiting(Exception):
    """The process was told to stop before NATS could be reached."""


def servers(url: str) -> list[str]:
    """The NATS servers of ``url``: one, or several comma-separated (the nodes of a cluster,
    any of which will do to start; the servers then tell the client of the others)."""
    return [part.strip() for part in url.split(",") if part.strip()]


def staying_connected() -> dict[str, Any]:
    """How every service's NATS client keeps its server, or finds it again: nats-py's
    options, for :func:`connect` and for the provisioner's FastStream broker alike."""
    return {
        "max_reconnect_attempts": -1,  # keep trying: the broker restarting is routine
        "reconnect_time_wait": RETRY_SECONDS,
        "ping_interval": PING_SECONDS,
        "max_outstanding_pings": 2,
        "error_cb": log_nats_error,
    }


async def connect(url: str, name: str, client: Client | None = None) -> Client:
    """Connects ``client`` (a new one when none is given: a readiness check may hold it
    before it is connected), trying again every second while NATS cannot be reached, and
    saying so. A SIGINT or SIGTERM meanwhile ends the wait with ``StoppedWaiting`` once the
    signal's own handler has run, so a service that never reached NATS still stops at once
    (it used to wait, deaf to SIGTERM, until Kubernetes killed it after its grace period)."""
    client = client or Client()

    async def on_disconnect() -> None:
        if client.is_closed:  # closed by this process, as it stops: nothing went wrong
            log.info("nats connection closed")
        else:
            log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    connecting = asyncio.ensure_future(
        client.connect(
            servers(url),
            name=name,
            **staying_connected(),
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
    )
    with _cancelled_by_stop_signals(connecting):
        try:
            await connecting
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise  # the caller was cancelled, not the connection
            await client.close()
            raise StoppedWaiting("told to stop before NATS could be reached") from None
    return client


@contextmanager
def _cancelled_by_stop_signals(task: asyncio.Future[None]) -> Iterator[None]:
    """While active, a stop signal cancels ``task``, then reaches the handler it had before
    (uvicorn's, or asyncio's for a service that set its own), which is put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals (a service's is; a test's may not be)
        return
    loop = asyncio.get_running_loop()
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def stop(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(task.cancel)
        handler = before[signal.Signals(signum)]
        if callable(handler):
            handler(signum, frame)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


# A readiness check's round trip to NATS, within the ops check's 2 s (ops.py).
ANSWERED_WITHIN_SECONDS = 1


async def require_connected(client: Client) -> None:
    """Connected, and answered by the server now: one that stopped answering (hung, its host
    frozen) leaves the client connected until its pings go unanswered, 40-60 s (a user's
    review saw every service ready while each write waited out its publish timeout). Asked
    as a request to an inbox nobody listens on, which the server answers at once with "no
    responders"; not by ``flush``, whose timeout leaves nats-py's reader to fail on the late
    answer, and the client deaf to every message after (a review)."""
    if not client.is_connected:
        raise ConnectionError("not connected to NATS")
    with suppress(NoRespondersError):  # the server's answer
        await client.request(client.new_inbox(), b"", timeout=ANSWERED_WITHIN_SECONDS)
