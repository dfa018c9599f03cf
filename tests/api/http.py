"""Helpers of the API tests: making stores and reading problem responses."""

from __future__ import annotations

from typing import Any

import httpx

STORES = "/api/v1/stores"
PROBLEM_JSON = "application/problem+json"


async def create(client: httpx.AsyncClient, name: str = "My Shop") -> dict[str, Any]:
    response = await client.post(STORES, json={"name": name})
    assert response.status_code == 202, response.text
    store: dict[str, Any] = response.json()
    return store


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert ``response`` is an RFC 9457 problem with ``status``; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str)
    assert body["type"]
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body
