"""Connecting to NATS, the same way in every service."""

from __future__ import annotations

import asyncio
import secrets
import signal
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

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
    review saw every service ready while each write waited out its publish timeout)."""
    if not client.is_connected:
        raise ConnectionError("not connected to NATS")
    echo = _ECHOES.get(client)
    if echo is None:
        echo = _ECHOES[client] = _Echo(client.new_inbox())
    await echo.heard_back(client, ANSWERED_WITHIN_SECONDS)


class _Echo:
    """A message the client sends to a subscription of its own, heard back through the
    server. Not ``flush``: its timeout leaves nats-py's reader to fail on the late answer,
    and the client deaf to every message after; nor a request to an inbox nobody hears,
    which a `nats sub ">"` of someone debugging would hear and never answer (reviews)."""

    def __init__(self, subject: str) -> None:
        self._subject = subject
        self._subscribed = False  # the client subscribes again itself after a reconnection
        self._waiting: dict[bytes, asyncio.Future[None]] = {}

    async def heard_back(self, client: Client, within: float) -> None:
        if not self._subscribed:
            self._subscribed = True  # once, however many checks come at once
            try:
                await client.subscribe(self._subject, cb=self._hear)
            except BaseException:
                self._subscribed = False
                raise
        token = secrets.token_hex(8).encode()
        self._waiting[token] = asyncio.get_running_loop().create_future()
        try:
            await client.publish(self._subject, token)
            await asyncio.wait_for(self._waiting[token], within)
        finally:
            self._waiting.pop(token, None)

    async def _hear(self, message: Msg) -> None:
        heard = self._waiting.get(message.data)
        if heard is not None and not heard.done():
            heard.set_result(None)


_ECHOES: weakref.WeakKeyDictionary[Client, _Echo] = weakref.WeakKeyDictionary()
