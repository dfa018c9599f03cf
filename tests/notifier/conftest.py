"""The notifier served by a real uvicorn on a free port, inside the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from nats.aio.client import Client
from starlette.applications import Starlette

from tests.support import served
from woostore_notifier.main import create_app
from woostore_shared.settings import Settings


@pytest.fixture
def notifier(settings: Settings) -> Starlette:
    return create_app(settings)


@pytest.fixture
async def notifier_url(notifier: Starlette, nats_client: Client) -> AsyncIterator[str]:
    """Base URL of a running notifier; ``nats_client`` has declared the stream."""
    async with served(notifier) as url:
        yield url


@pytest.fixture
async def ops(notifier: Starlette, notifier_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running notifier's ops port (/healthz, /readyz, /metrics)."""
    port = notifier.state.ops.port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield client


@pytest.fixture
async def http(notifier_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the notifier sending no credentials by itself."""
    async with httpx.AsyncClient(base_url=notifier_url, timeout=10) as client:
        yield client
