"""The API's edge: the limit on request bodies, and the /docs page."""

from __future__ import annotations

import re
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


# --- /docs ----------------------------------------------------------------------------------


async def test_the_docs_page_loads_swagger_ui_from_the_api_itself(
    anonymous: httpx.AsyncClient,
) -> None:
    page = await anonymous.get("/docs")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert urls
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "<script>" not in page.text, "an inline script (the CSP allows files only)"
    for url in urls:
        assert (await anonymous.get(url)).status_code == 200, url
    bundle = await anonymous.get("/docs/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text


async def test_the_docs_can_be_turned_off_and_the_openapi_document_stays(
    settings: Settings,
) -> None:
    app = create_app(settings.model_copy(update={"api_docs": False}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        for url in ("/docs", "/docs/assets/swagger-ui-bundle.js", "/redoc"):
            assert (await http.get(url)).status_code == 404, url
        assert (await http.get("/openapi.json")).status_code == 200
