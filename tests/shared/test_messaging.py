"""Connecting to NATS: a server that goes silent is left for another."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.support import until
from woostore_devstack.embedded import NatsServer
from woostore_shared import messaging


class Freezer:
    """A TCP relay in front of a server whose connections can be frozen: bytes already
    relayed stay relayed, none move further, and neither end hears of it. What a client sees
    of a server whose node was lost. Connections made after a freeze flow again."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.frozen: list[asyncio.Event] = []
        self.closed = asyncio.Event()  # the test is over: every relay ends

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
        frozen = asyncio.Event()
        self.frozen.append(frozen)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await source.read(65536):
                    if frozen.is_set():
                        await self.closed.wait()  # held: never passed on
                        return
                    sink.write(chunk)
                    await sink.drain()

        try:
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
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
        freezer.closed.set()
        server.close()
        await server.wait_closed()


async def test_a_server_gone_silent_is_left_after_two_unanswered_pings(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay is frozen, as a server's node lost: with nats-py's own pings (every 2
    minutes) the client would stay on it for 6 minutes, hearing nothing and sending into it."""
    monkeypatch.setattr(messaging, "PING_SECONDS", 0.2)
    async with frozen_relay(nats_server) as (freezer, url):
        client = await messaging.connect(url, "test")
        try:
            await client.flush(timeout=5)
            freezer.freeze()

            await until(lambda: client.stats["reconnects"] >= 1, "the client left the server")
            await client.flush(timeout=5)  # through a new connection, which flows
        finally:
            await client.close()
