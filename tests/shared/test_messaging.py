"""Connecting to NATS: a server that goes silent is left for another, by every service's
client (``messaging.connect``) and by the provisioner's FastStream broker alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from nats.aio.client import Client
from structlog.testing import capture_logs

from tests.support import until
from woostore_devstack.embedded import NatsServer
from woostore_provisioner.main import build_app
from woostore_shared import messaging
from woostore_shared.settings import Settings


class Freezer:
    """A TCP relay in front of a server whose connections can be frozen: bytes already
    relayed stay relayed, none move further, and neither end hears of it. What a client sees
    of a server whose node was lost. Connections made after a freeze flow again."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.frozen: list[asyncio.Event] = []
        self.relays: list[asyncio.Future[tuple[None, None]]] = []

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
        frozen = asyncio.Event()
        self.frozen.append(frozen)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await source.read(65536):
                    if not frozen.is_set():
                        sink.write(chunk)
                        await sink.drain()

        both = asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self.relays.append(both)
        try:
            await both
        finally:
            for opened in (writer, upstream_writer):
                opened.close()

    def freeze(self) -> None:
        for frozen in self.frozen:
            frozen.set()


@contextlib.asynccontextmanager
async def frozen_relay(nats_server: NatsServer) -> AsyncIterator[tuple[Freezer, str]]:
    host, port = nats_server.url.removeprefix("nats://").rsplit(":", 1)
    freezer = Freezer(host, int(port))
    server = await asyncio.start_server(freezer.relay, "127.0.0.1", 0)
    try:
        yield freezer, f"nats://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for relay in freezer.relays:  # else, from Python 3.12, wait_closed waits on them
            relay.cancel()
        server.close()
        await server.wait_closed()


async def plain_client(url: str, _tmp_path: Path) -> tuple[Client, Callable[[], Awaitable[None]]]:
    client = await messaging.connect(url, "test")
    return client, client.close


async def provisioners_broker(
    url: str, tmp_path: Path
) -> tuple[Client, Callable[[], Awaitable[None]]]:
    settings = Settings(nats_url=url, database_url="postgresql://unused@localhost/unused",
                        data_dir=tmp_path)  # fmt: skip
    broker = build_app(settings).broker
    return await broker.connect(), broker.stop  # type: ignore[union-attr]


@pytest.mark.parametrize("connected", [plain_client, provisioners_broker])
async def test_a_server_gone_silent_is_left_after_two_unanswered_pings(
    nats_server: NatsServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    connected: Callable[[str, Path], Awaitable[tuple[Client, Callable[[], Awaitable[None]]]]],
) -> None:
    """The relay is frozen, as a server's node lost: with nats-py's own pings (every 2
    minutes) a client stayed on it for 6 minutes, hearing nothing and sending into it."""
    monkeypatch.setattr(messaging, "PING_SECONDS", 0.2)
    async with frozen_relay(nats_server) as (freezer, url):
        client, close = await connected(url, tmp_path)
        try:
            await client.flush(timeout=5)
            freezer.freeze()

            await until(lambda: client.stats["reconnects"] >= 1, "the client left the server")
            await client.flush(timeout=5)  # through a new connection, which flows
        finally:
            await close()


async def test_closing_the_connection_is_no_warning_and_losing_it_is(
    nats_server: NatsServer,
) -> None:
    """Every clean stop of every service, and make run's setup, warned "nats disconnected":
    an operator learns to ignore the line that says NATS went away."""
    with capture_logs() as logs:
        client = await messaging.connect(nats_server.url, "tests")
        nats_server.stop()
        await until(lambda: not client.is_connected, "the client has seen NATS go")
        nats_server.restart()
        await until(lambda: client.is_connected, "the client is back")
        await client.close()

    said = [(line["log_level"], line["event"]) for line in logs]
    assert said.count(("warning", "nats disconnected")) == 1  # when it went, not at the close
    assert said.index(("info", "nats reconnected")) < len(said) - 1
    assert said[-1] == ("info", "nats connection closed")
