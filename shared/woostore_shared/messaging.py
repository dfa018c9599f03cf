"""Connecting to NATS, the same way in every service."""

from __future__ import annotations

import nats
from nats.aio.client import Client

from woostore_shared.logging import get_logger

log = get_logger(__name__)


async def connect(url: str, name: str) -> Client:
    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,  # keep trying: the broker restarting is routine
        reconnect_time_wait=1,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


async def require_connected(client: Client) -> None:
    if not client.is_connected:
        raise ConnectionError("not connected to NATS")
