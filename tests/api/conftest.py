"""The API in-process, with its real lifespan: real PostgreSQL, real NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI
from nats.aio.client import Client

from tests.support import ADMIN_TOKEN
from woostore_api.main import create_app
from woostore_shared.settings import Settings


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
async def ops(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the API's ops port (/healthz, /readyz, /metrics), over real HTTP."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.state.ops.port}") as http:
        yield http


@pytest.fixture
async def anonymous(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client sending no credentials."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://api.test"
    ) as http:
        yield http


NewTenant = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def new_tenant(api: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[NewTenant]:
    """Makes a tenant and a tenant key through the API, and returns a client using the key."""
    opened: list[httpx.AsyncClient] = []

    async def make(name: str, store_limit: int | None = None) -> httpx.AsyncClient:
        tenant = await client.post(
            "/api/v1/tenants", json={"name": name, "store_limit": store_limit}
        )
        assert tenant.status_code == 201, tenant.text
        key = await client.post(
            "/api/v1/keys", json={"name": f"{name} key", "tenant_id": tenant.json()["id"]}
        )
        assert key.status_code == 201, key.text
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api),
            base_url="http://api.test",
            headers={"Authorization": f"Bearer {key.json()['token']}"},
        )
        opened.append(http)
        return http

    yield make
    for http in opened:
        await http.aclose()
