"""The notifier served by a real uvicorn on a free port, inside the test's event loop.

An SSE response never ends, and an in-process ASGI transport only hands a response over
once the app has finished it; a real server streams it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from nats.aio.client import Client

from woostore_notifier.main import create_app
from woostore_shared.settings import Settings

START_DEADLINE_SECONDS = 20.0


class _InLoopServer(uvicorn.Server):
    """The test, not uvicorn, owns the process's signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def notifier_url(settings: Settings, nats_client: Client) -> AsyncIterator[str]:
    """Base URL of a running notifier; ``nats_client`` has declared the stream."""
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=0,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = _InLoopServer(config)
    task = asyncio.create_task(server.serve())
    give_up = time.monotonic() + START_DEADLINE_SECONDS
    while not server.started:
        if task.done():
            task.result()  # raises why the server could not start
            pytest.fail("the notifier stopped before it started")
        if time.monotonic() > give_up:
            pytest.fail("the notifier did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, timeout=15)


@pytest.fixture
async def http(notifier_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the notifier sending no credentials by itself."""
    async with httpx.AsyncClient(base_url=notifier_url, timeout=10) as client:
        yield client
