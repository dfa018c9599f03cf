"""The API against its own OpenAPI document: schemathesis generates requests for every
operation, as the admin and as a tenant key, on a real PostgreSQL and NATS.

Every answer must be below 500, have a status code the document declares for the
operation, the content type it declares for that status (errors are
``application/problem+json``), and a body matching the declared schema.

The app runs in-process: schemathesis's ASGI transport starts its lifespan on an event loop
of its own and sends every request there, so the database and NATS connections the
lifespan opens serve every case.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.schemas import BaseSchema

from tests.api.http import problem
from tests.support import ADMIN_TOKEN
from woostore_api.main import create_app
from woostore_shared.messaging import connect
from woostore_shared.settings import Settings
from woostore_shared.topology import declare, ensure_topology

pytestmark = pytest.mark.contract

# Generated cases per operation and caller in the fuzzing phase (the coverage and examples
# phases add their own): 75 makes about 2,600 cases a caller in about 35 s, within the
# suite's time budget. A fixed seed makes CI repeatable; to dig deeper, change both:
# WOOSTORE_CONTRACT_EXAMPLES=2000 WOOSTORE_CONTRACT_SEED=$RANDOM.
MAX_EXAMPLES = int(os.environ.get("WOOSTORE_CONTRACT_EXAMPLES", "75"))
SEED = int(os.environ.get("WOOSTORE_CONTRACT_SEED", "20261126"))
CALLERS = ["admin", "tenant"]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class Contract:
    schema: BaseSchema
    headers: dict[str, str]
    cases: Counter[str] = field(default_factory=Counter)  # sent, by operation
    statuses: Counter[int] = field(default_factory=Counter)  # answered, by status code


async def _declare_topology(settings: Settings) -> None:
    nats = await connect(settings.nats_url, "tests")
    try:
        await ensure_topology(nats.jetstream(), declare(settings))
    finally:
        await nats.close()


@pytest.fixture(params=CALLERS)
def contract(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Contract]:
    """The API's OpenAPI document, and the headers of the caller the cases are sent as."""
    asyncio.run(_declare_topology(settings))
    app = create_app(settings)
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED + CALLERS.index(request.param),
            # Valid and invalid requests; no example database written into the work tree.
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
        }
    )
    document = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if request.param == "tenant":
        # FastAPI's ASGI signature is wider than schemathesis's alias of it.
        with asgi.get_client(cast("asgi.ASGIApp", app)) as http:
            tenant = http.post("/api/v1/tenants", json={"name": "contract"}, headers=headers)
            assert tenant.status_code == 201, tenant.text
            key = http.post(
                "/api/v1/keys",
                json={"name": "contract", "tenant_id": tenant.json()["id"]},
                headers=headers,
            )
            assert key.status_code == 201, key.text
        headers = {"Authorization": f"Bearer {key.json()['token']}"}
    contract = Contract(schema=document, headers=headers)
    yield contract
    asgi.shutdown_lifespans()  # closes the app's database and NATS connections
    total = sum(contract.cases.values())
    statuses = dict(sorted(contract.statuses.items()))
    print(f"\n{request.param}: {total} cases, {len(contract.cases)} operations, {statuses}")
    operations = {r.ok().label for r in document.get_all_operations() if isinstance(r, Ok)}
    assert set(contract.cases) == operations, "an operation got no generated case"


@pytest.fixture
def api_schema(contract: Contract) -> BaseSchema:
    return contract.schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    deadline=None,  # a case touches PostgreSQL and NATS; its time says nothing about conformance
)
def test_every_answer_conforms_to_the_openapi_document(
    case: schemathesis.Case[Any], contract: Contract
) -> None:
    contract.cases[case.operation.label] += 1
    response = case.call_and_validate(headers=contract.headers, checks=CHECKS)
    contract.statuses[response.status_code] += 1


# --- what the generated cases found, kept as plain regression tests -------------------------


@pytest.mark.parametrize(
    ("method", "url", "request_kwargs"),
    [
        ("POST", "/api/v1/keys", {"json": {"name": "ci\x00deploys"}}),
        ("POST", "/api/v1/session", {"json": {"token": "wsk_\x00\x00\x00\x00_" + "x" * 43}}),
        ("GET", "/api/v1/audit", {"params": {"target": "store/\x00"}}),
    ],
    ids=["key name with NUL", "token with NUL", "audit target with NUL"],
)
async def test_values_postgresql_cannot_hold_are_refused_as_422_not_500(
    client: httpx.AsyncClient, method: str, url: str, request_kwargs: dict[str, Any]
) -> None:
    response = await client.request(method, url, **request_kwargs)

    problem(response, 422)


async def test_the_largest_audit_cursor_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/audit", params={"cursor": str(2**63 - 1)})

    assert response.status_code == 200


async def test_every_operation_taking_a_body_declares_and_answers_413_for_an_oversized_one(
    api: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    oversized = b" " * (settings.max_body_bytes + 1)
    operations = [
        (method.upper(), path, operation)
        for path, item in api.openapi()["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    ]
    assert operations

    for method, path, operation in operations:
        assert "413" in operation["responses"], f"{method} {path} does not declare 413"
        url = path.replace("{", "").replace("}", "")  # never reached: the body is refused first
        response = await client.request(
            method, url, content=oversized, headers={"Content-Type": "application/json"}
        )
        problem(response, 413)
