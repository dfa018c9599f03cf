"""The notifier served by a real uvicorn on a free port, inside the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from nats.aio.client import Client

from tests.support import served
from woostore_notifier.main import create_app
from woostore_shared.settings import Settings


@pytest.fixture
async def notifier_url(settings: Settings, nats_client: Client) -> AsyncIterator[str]:
    """Base URL of a running notifier; ``nats_client`` has declared the stream."""
    async with served(create_app(settings)) as url:
        yield url


@pytest.fixture
async def http(notifier_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the notifier sending no credentials by itself."""
    async with httpx.AsyncClient(base_url=notifier_url, timeout=10) as client:
        yield client
