"""The API in-process, with its real lifespan: real PostgreSQL, real NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from nats.aio.client import Client

from woostore_api.main import create_app
from woostore_shared.settings import Settings

ADMIN_TOKEN = "test-admin-token"  # the `settings` fixture's


@pytest.fixture
async def api(settings: Settings, nats_client: Client) -> AsyncIterator[FastAPI]:
    """The API app with its lifespan running; ``nats_client`` has declared the stream."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated as the admin."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api),
        base_url="http://api.test",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as http:
        yield http


@pytest.fixture
async def anonymous(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client sending no credentials."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://api.test"
    ) as http:
        yield http
