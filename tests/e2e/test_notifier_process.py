"""The notifier as its own process (its console command, as deployed): told to stop, it ends
its event streams itself, so its clients see a stream that ended, not one cut off, and
its log has no error for each of them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import aconnect_sse

from woostore_devstack.platform import Platform, running_services

pytestmark = pytest.mark.e2e
STREAMS = 3
DEADLINE_SECONDS = 20.0


@pytest.fixture
def notifier_alone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_services(tmp_path_factory.mktemp("notifier"), ("notifier",), {}) as platform:
        yield platform


async def test_a_stopping_notifier_ends_its_streams_cleanly(notifier_alone: Platform) -> None:
    platform = notifier_alone

    async def follow(opened: asyncio.Event) -> list[str]:
        """The stream's messages, until it ends; an error if it was cut off mid-response."""
        async with (
            httpx.AsyncClient(timeout=DEADLINE_SECONDS) as http,
            aconnect_sse(http, "GET", platform.events_url, headers=platform.headers) as source,
        ):
            assert source.response.status_code == 200
            seen = []
            async for message in source.aiter_sse():
                # A ping comes through as a message too once a frame has set an id (httpx-sse
                # dispatches the id it keeps); it carries nothing.
                if message.data or message.retry is not None:
                    seen.append(message.event)
                opened.set()
            return seen

    opened = [asyncio.Event() for _ in range(STREAMS)]
    streams = [asyncio.create_task(follow(event)) for event in opened]
    async with asyncio.timeout(DEADLINE_SECONDS):
        for event in opened:
            await event.wait()  # its retry hint came: it is being served

    await asyncio.to_thread(platform.stop, "notifier")

    async with asyncio.timeout(DEADLINE_SECONDS):
        ended = await asyncio.gather(*streams)  # raises RemoteProtocolError if one was cut
    assert all(seen == ["message"] for seen in ended)  # the retry hint, then the end
    log = (platform.data_dir / "notifier.log").read_text()
    assert "event hub started" in log
    assert "Exception in ASGI application" not in log
