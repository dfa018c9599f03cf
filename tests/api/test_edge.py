"""What every request meets before the routes: the limit on the size of its body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.http import STORES, problem
from woostore_api.main import create_app
from woostore_shared.settings import Settings

CHUNK = b" " * 1024


class Chunks:
    """A request body sent in chunks with no Content-Length; counts what the API pulled."""

    def __init__(self, count: int, first: bytes = b"") -> None:
        self.count = count
        self.first = first
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index in range(self.count):
            self.pulled += 1
            yield self.first if index == 0 and self.first else CHUNK


@pytest.fixture
def limit(settings: Settings) -> int:
    return settings.max_body_bytes


async def test_a_declared_length_over_the_limit_is_refused_before_authentication_unread(
    anonymous: httpx.AsyncClient, limit: int
) -> None:
    body = Chunks(count=limit // len(CHUNK) * 1000)  # 1000 times the limit

    response = await anonymous.post(
        STORES, content=body, headers={"Content-Length": str(body.count * len(CHUNK))}
    )

    details = problem(response, 413)  # not 401: nobody asked who sent it
    assert details["max_bytes"] == limit
    assert body.pulled <= 1


async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(
    anonymous: httpx.AsyncClient, limit: int
) -> None:
    body = Chunks(count=limit // len(CHUNK) * 1000)

    response = await anonymous.post(STORES, content=body)

    assert "content-length" not in response.request.headers
    problem(response, 413)
    assert body.pulled <= limit // len(CHUNK) + 2, "the API read on past its limit"


async def test_a_chunked_body_within_the_limit_reaches_the_route(
    client: httpx.AsyncClient, limit: int
) -> None:
    payload = b'{"name": "Chunked Shop"}'
    body = Chunks(count=limit // len(CHUNK) - 1, first=payload)

    response = await client.post(STORES, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 202, response.text
    assert response.json()["name"] == "Chunked Shop"


async def test_a_body_of_exactly_the_limit_is_taken(client: httpx.AsyncClient, limit: int) -> None:
    payload = b'{"name": "Exact Shop"}'
    body = payload + b" " * (limit - len(payload))

    response = await client.post(STORES, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 202, response.text


async def test_the_limit_is_the_max_body_bytes_setting(settings: Settings) -> None:
    # Refusing needs nothing of the lifespan: the app is not started.
    app = create_app(settings.model_copy(update={"max_body_bytes": 16}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        response = await http.post(STORES, json={"name": "Seventeen bytes!"})

    assert problem(response, 413)["max_bytes"] == 16
