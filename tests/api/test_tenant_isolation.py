"""Tenant isolation, route by route: tenant A's key never reads or changes tenant B's objects.

Two tenants, each with a store in every status (the states the API cannot reach by itself
are set in the database, a ready store with its encrypted admin password and a journalled
step), a tenant key and an admin key, and the admin. ``MATRIX`` names what A's tenant key
tries on every route of the app; a route added without an entry fails
``test_every_route_of_the_app_has_an_isolation_entry``. For each route A's answers carry
nothing of B's, nor of the admin key of A's own tenant, that A did not send itself; B's rows
and A's admin key are unchanged afterwards.

The event stream is checked on a real notifier: A's bearer key and a ticket from A's
dashboard session deliver A's events and none of B's; a revoked key's ticket is refused.

A third party owns nothing: a store in the warm pool, made for no tenant yet. Nobody, the
admin included, lists it, reads it, changes it or streams its events until it is claimed.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from httpx_sse import ServerSentEvent, aconnect_sse
from nats.aio.client import Client
from sqlmodel import SQLModel, col, select, update

from tests.api.http import PROBLEM_JSON, STORES, create, problem
from tests.support import add_pooled_store, served
from woostore_api.stores.service import encode_cursor
from woostore_notifier.main import create_app as create_notifier
from woostore_shared.db import Database
from woostore_shared.events import Progress, StepInfo, make_event
from woostore_shared.models import (
    ApiKey,
    AuditEntry,
    BackupStatus,
    BackupTrigger,
    IdempotencyKey,
    Store,
    StoreBackup,
    StoreEvent,
    StoreStatus,
    StoreStep,
    Tenant,
    utcnow,
)
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import CredentialCipher, TicketSigner
from woostore_shared.settings import Settings
from woostore_shared.topology import STREAM_NAME

KEYS = "/api/v1/keys"
TENANTS = "/api/v1/tenants"
SESSION = "/api/v1/session"
AUDIT = "/api/v1/audit"
TICKET = "/api/v1/events/ticket"
EVENTS = "/api/v1/events"
SHARED_IDEMPOTENCY_KEY = "the-same-retry-key"
DEADLINE_SECONDS = 15.0
# The statuses a tenant's store can have: a pooled store belongs to no tenant.
OWNED = [status for status in StoreStatus if status is not StoreStatus.POOLED]
EVERY = [status.value for status in OWNED]  # GET /stores leaves deleted ones out unless asked


# --- the two tenants ------------------------------------------------------------------------


@dataclass
class Party:
    """A tenant, its tenant key, a client using that key, an admin key of the tenant, and one
    store in every status."""

    label: str
    tenant_id: str
    tenant_name: str
    key_id: str
    prefix: str
    token: str
    http: httpx.AsyncClient
    admin_key_id: str
    admin_token: str
    password: str
    stores: dict[StoreStatus, dict[str, Any]] = field(default_factory=dict)
    idempotent_store: dict[str, Any] = field(default_factory=dict)
    cursor: str = ""  # a page cursor pointing after this tenant's newest store
    backup_id: str = ""  # a complete backup of its ready store

    def store(self, status: StoreStatus) -> str:
        return str(self.stores[status]["id"])

    def all_stores(self) -> list[dict[str, Any]]:
        return [*self.stores.values(), self.idempotent_store]

    def admin_key_markers(self) -> set[str]:
        """What would give the tenant's admin key away to the tenant's own tenant keys. (Its
        prefix and name are in the tenant's audit log, which records who acted on it.)"""
        return {self.admin_key_id, self.admin_token}

    def markers(self) -> set[str]:
        """Every value that would give this tenant's data away if another tenant saw it."""
        found = {
            self.tenant_id,
            self.tenant_name,
            self.key_id,
            self.prefix,
            self.token,
            self.admin_key_id,
            self.admin_token,
            self.password,
        }
        for store in self.all_stores():
            found |= {str(store["id"]), store["name"], store["slug"]}
        return found | {self.backup_id}


@dataclass
class World:
    a: Party
    b: Party
    settings: Settings
    pooled: dict[str, Any]  # a store in the warm pool: its id, name and slug

    def pool_markers(self) -> set[str]:
        return {str(self.pooled["id"]), self.pooled["name"], self.pooled["slug"]}


def _client(api: FastAPI, token: str | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api),
        base_url="http://api.test",
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )


async def _set_status(
    database: Database, store_id: str, status: StoreStatus, **values: Any
) -> None:
    async with database.session() as session:
        await session.exec(
            update(Store)
            .where(col(Store.id) == uuid.UUID(store_id))
            .values(status=status, updated_at=utcnow(), **values)
        )
        await session.commit()


async def _make_party(
    api: FastAPI,
    admin: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    label: str,
    idempotency_key: str,
) -> Party:
    # Distinct random parts, so no marker is derived from another (a slug from a name).
    suffix = uuid.uuid4().hex[:6]
    tenant = await admin.post(TENANTS, json={"name": f"{label}-{uuid.uuid4().hex[:6]}"})
    assert tenant.status_code == 201, tenant.text
    key = await admin.post(KEYS, json={"name": f"{label} key", "tenant_id": tenant.json()["id"]})
    assert key.status_code == 201, key.text
    made = key.json()
    admin_key = await admin.post(
        KEYS,
        json={"name": f"{label} admin key", "role": "admin", "tenant_id": tenant.json()["id"]},
    )
    assert admin_key.status_code == 201, admin_key.text
    party = Party(
        label=label,
        tenant_id=tenant.json()["id"],
        tenant_name=tenant.json()["name"],
        key_id=made["id"],
        prefix=made["prefix"],
        token=made["token"],
        http=_client(api, made["token"]),
        admin_key_id=admin_key.json()["id"],
        admin_token=admin_key.json()["token"],
        password=f"{label}-password-{uuid.uuid4().hex}",
    )
    for status in OWNED:
        party.stores[status] = await create(party.http, f"{label.title()} {suffix} {status.value}")
    retried = await party.http.post(
        STORES,
        json={"name": f"{label.title()} {suffix} retried"},
        headers={"Idempotency-Key": idempotency_key},
    )
    assert retried.status_code == 202, retried.text
    party.idempotent_store = retried.json()

    now = utcnow()
    step = {"step_name": "rollout", "step_title": "Rollout", "step_index": 4, "step_total": 9}
    cipher = CredentialCipher(settings.secret_key.get_secret_value())
    url = f"http://{party.stores[StoreStatus.READY]['slug']}.{settings.base_domain}"
    states: dict[StoreStatus, dict[str, Any]] = {
        StoreStatus.PROVISIONING: {**step, "progress": 0.33, "provisioning_started_at": now},
        StoreStatus.READY: {
            "progress": 1.0,
            "ready_at": now,
            "storefront_url": url,
            "admin_url": f"{url}/wp-admin",
            "admin_password_encrypted": cipher.encrypt(party.password),
        },
        StoreStatus.FAILED: {"failure_reason": f"{label} rollout timed out"},
        StoreStatus.DELETING: {"step_name": "helm_uninstall", "step_index": 1, "step_total": 2},
        StoreStatus.DELETED: {"deleted_at": now},
    }
    for status in OWNED:
        if status is not StoreStatus.QUEUED:
            await _set_status(database, party.store(status), status, **states.get(status, {}))
    async with database.session() as session:
        ready = uuid.UUID(party.store(StoreStatus.READY))
        session.add(
            StoreStep(store_id=ready, phase="provision", name="namespace", position=1, seconds=1.0)
        )
        backup = StoreBackup(
            store_id=ready, trigger=BackupTrigger.REQUESTED, status=BackupStatus.COMPLETE
        )
        session.add(backup)
        party.backup_id = str(backup.id)
        await session.commit()
        newest = await session.get(Store, uuid.UUID(str(party.idempotent_store["id"])))
    assert newest is not None
    party.cursor = encode_cursor(newest)
    return party


@pytest.fixture
async def world(
    api: FastAPI,
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    nats_client: Client,
) -> AsyncIterator[World]:
    a = await _make_party(api, client, database, settings, "alpha", "alpha-own-retry-key")
    b = await _make_party(api, client, database, settings, "bravo", SHARED_IDEMPOTENCY_KEY)
    outbox = Outbox(database, nats_client, source="/tests")
    store = await add_pooled_store(outbox, name=f"Pooled {uuid.uuid4().hex[:6]}")
    pooled = {"id": str(store.id), "name": store.name, "slug": store.slug}
    # Settled: what went out is marked now, not a moment later, inside a test's snapshots.
    await outbox.close()
    await api.state.outbox.mark()
    yield World(a=a, b=b, settings=settings, pooled=pooled)
    await a.http.aclose()
    await b.http.aclose()


async def _snapshot(database: Database, party: Party) -> dict[str, list[dict[str, Any]]]:
    """Every row that belongs to ``party``'s tenant, to compare before and after."""
    tenant_id = uuid.UUID(party.tenant_id)
    store_ids = [uuid.UUID(str(s["id"])) for s in party.all_stores()]

    async def rows(query: Any) -> list[dict[str, Any]]:
        async with database.session() as session:
            found: list[SQLModel] = list(await session.exec(query))
        return sorted((r.model_dump() for r in found), key=repr)

    return {
        "tenants": await rows(select(Tenant).where(col(Tenant.id) == tenant_id)),
        "stores": await rows(select(Store).where(col(Store.tenant_id) == tenant_id)),
        "store_events": await rows(
            select(StoreEvent).where(col(StoreEvent.store_id).in_(store_ids))
        ),
        "api_keys": await rows(select(ApiKey).where(col(ApiKey.tenant_id) == tenant_id)),
        "audit_log": await rows(select(AuditEntry).where(col(AuditEntry.tenant_id) == tenant_id)),
        "idempotency_keys": await rows(
            select(IdempotencyKey).where(col(IdempotencyKey.tenant_id) == tenant_id)
        ),
    }


# --- the matrix -----------------------------------------------------------------------------

Check = Callable[[httpx.Response, World], None]


@dataclass(frozen=True)
class Attempt:
    """One request tenant A makes, and the status it must get."""

    method: str
    url: str
    status: int
    params: dict[str, str] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    session: bool = False  # sent with A's dashboard session cookie instead of its bearer key
    check: Check | None = None

    def sent(self) -> str:
        """Everything A put in the request: what the API may echo back without leaking."""
        return json.dumps([self.url, self.params, self.json, self.headers])


def _items(response: httpx.Response) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _only_a_stores(response: httpx.Response, world: World) -> None:
    listed = [s["id"] for s in _items(response)]
    assert listed
    assert set(listed) <= {str(s["id"]) for s in world.a.all_stores()}


def _a_counts_only(response: httpx.Response, world: World) -> None:
    # B has as many stores as A, and the pooled store is nobody's: any of theirs would show.
    assert sum(response.json()["by_status"].values()) == len(world.a.all_stores())


def _both_tenants_steps_counted(response: httpx.Response, _: World) -> None:
    [provision] = response.json()["phases"]
    assert [(s["name"], s["samples"]) for s in provision["steps"]] == [("namespace", 2)]


def _only_a_tenant_keys(response: httpx.Response, world: World) -> None:
    keys = _items(response)
    assert keys
    assert {k["tenant_id"] for k in keys} == {world.a.tenant_id}
    assert {k["role"] for k in keys} == {"tenant"}


def _only_a_audit_entries(response: httpx.Response, world: World) -> None:
    entries = _items(response)
    assert entries
    assert {e["tenant_id"] for e in entries} == {world.a.tenant_id}


def _nothing(response: httpx.Response, _: World) -> None:
    assert _items(response) == []


def _is_a(response: httpx.Response, world: World) -> None:
    assert response.json()["tenant_id"] == world.a.tenant_id
    assert response.json()["actor"] == world.a.prefix


def _a_tenant(response: httpx.Response, world: World) -> None:
    assert response.json()["id"] == world.a.tenant_id


def _a_new_store_of_a(response: httpx.Response, world: World) -> None:
    made = response.json()["id"]
    assert made not in {str(s["id"]) for s in world.b.all_stores()}
    assert "Idempotent-Replayed" not in response.headers


def _a_ticket_naming_a(response: httpx.Response, world: World) -> None:
    signer = TicketSigner(world.settings.secret_key.get_secret_value())
    assert signer.verify(response.json()["ticket"]) == world.a.key_id


def _b_stores_in_every_status(world: World, method: str, suffix: str = "") -> list[Attempt]:
    return [
        *(Attempt(method, f"{STORES}/{world.b.store(status)}{suffix}", 404) for status in OWNED),
        Attempt(method, f"{STORES}/{world.pooled['id']}{suffix}", 404),
    ]


def _public(url: str) -> Callable[[World], list[Attempt]]:
    """A route that holds no tenant's data: A gets it, and nothing of B's is in it."""
    return lambda _: [Attempt("GET", url, 200)]


MATRIX: dict[str, Callable[[World], list[Attempt]]] = {
    # Stores: another tenant's store does not exist for A, in any status.
    f"GET {STORES}": lambda w: [
        Attempt("GET", STORES, 200, check=_only_a_stores),
        Attempt("GET", STORES, 200, params={"status": "ready"}, check=_only_a_stores),
        Attempt("GET", STORES, 403, params={"tenant_id": w.b.tenant_id}),
        # The same answer for a tenant that does not exist: no oracle of which ones do.
        Attempt("GET", STORES, 403, params={"tenant_id": str(uuid.uuid4())}),
        # A cursor pointing into B's stores still pages through A's only.
        Attempt(
            "GET",
            STORES,
            200,
            params={"cursor": w.b.cursor},
            check=_only_a_stores,
        ),
    ],
    f"GET {STORES}/counts": lambda w: [
        Attempt("GET", f"{STORES}/counts", 200, check=_a_counts_only),
        Attempt("GET", f"{STORES}/counts", 403, params={"tenant_id": w.b.tenant_id}),
        Attempt("GET", f"{STORES}/counts", 403, params={"tenant_id": str(uuid.uuid4())}),
    ],
    # Step times are platform-wide: they count B's stores' steps too, and name none of them.
    f"GET {STORES}/step-times": lambda _: [
        Attempt("GET", f"{STORES}/step-times", 200, check=_both_tenants_steps_counted),
    ],
    f"POST {STORES}": lambda w: [
        Attempt("POST", STORES, 403, json={"name": "Into B", "tenant_id": w.b.tenant_id}),
        # The same answer for a tenant that does not exist: no oracle of which ones do.
        Attempt("POST", STORES, 403, json={"name": "Nowhere", "tenant_id": str(uuid.uuid4())}),
        # Idempotency keys are per tenant: B's key gives A a store of its own.
        Attempt(
            "POST",
            STORES,
            202,
            json={"name": w.b.idempotent_store["name"]},
            headers={"Idempotency-Key": SHARED_IDEMPOTENCY_KEY},
            check=_a_new_store_of_a,
        ),
    ],
    f"GET {STORES}/{{store_id}}": lambda w: _b_stores_in_every_status(w, "GET"),
    f"DELETE {STORES}/{{store_id}}": lambda w: _b_stores_in_every_status(w, "DELETE"),
    f"GET {STORES}/{{store_id}}/credentials": lambda w: _b_stores_in_every_status(
        w, "GET", "/credentials"
    ),
    f"POST {STORES}/{{store_id}}/upgrade": lambda w: _b_stores_in_every_status(
        w, "POST", "/upgrade"
    ),
    f"POST {STORES}/{{store_id}}/rollback": lambda w: _b_stores_in_every_status(
        w, "POST", "/rollback"
    ),
    f"POST {STORES}/{{store_id}}/settings": lambda w: [
        Attempt(a.method, a.url, 404, json={"currency": "EUR"})
        for a in _b_stores_in_every_status(w, "POST", "/settings")
    ],
    f"POST {STORES}/{{store_id}}/retry": lambda w: _b_stores_in_every_status(w, "POST", "/retry"),
    f"POST {STORES}/{{store_id}}/backups": lambda w: _b_stores_in_every_status(
        w, "POST", "/backups"
    ),
    # B's stores do not exist for A, and neither does B's backup under A's own store.
    f"POST {STORES}/{{store_id}}/restore": lambda w: [
        *(
            Attempt(a.method, a.url, 404, json={"backup_id": w.b.backup_id})
            for a in _b_stores_in_every_status(w, "POST", "/restore")
        ),
        Attempt(
            "POST",
            f"{STORES}/{w.a.store(StoreStatus.READY)}/restore",
            404,
            json={"backup_id": w.b.backup_id},
        ),
    ],
    f"GET {STORES}/{{store_id}}/backups": lambda w: [
        *_b_stores_in_every_status(w, "GET", "/backups"),
        Attempt("GET", f"{STORES}/{w.a.store(StoreStatus.READY)}/backups", 200),
    ],
    # B's backup exists neither under B's store nor under A's own.
    f"GET {STORES}/{{store_id}}/backups/{{backup_id}}": lambda w: [
        Attempt("GET", f"{STORES}/{w.b.store(StoreStatus.READY)}/backups/{w.b.backup_id}", 404),
        Attempt("GET", f"{STORES}/{w.a.store(StoreStatus.READY)}/backups/{w.b.backup_id}", 404),
        Attempt("GET", f"{STORES}/{w.a.store(StoreStatus.READY)}/backups/{w.a.backup_id}", 200),
    ],
    f"DELETE {STORES}/{{store_id}}/backups/{{backup_id}}": lambda w: [
        Attempt("DELETE", f"{STORES}/{w.b.store(StoreStatus.READY)}/backups/{w.b.backup_id}", 404),
        Attempt("DELETE", f"{STORES}/{w.a.store(StoreStatus.READY)}/backups/{w.b.backup_id}", 404),
    ],
    # Tenants are the admin's; a tenant key is refused before anything is looked up
    # (403, never 409 for B's name or 404 for B's id).
    f"POST {TENANTS}": lambda w: [
        Attempt("POST", TENANTS, 403, json={"name": w.b.tenant_name}),
        Attempt("POST", TENANTS, 403, json={"name": "made-by-a"}),
    ],
    f"GET {TENANTS}": lambda _: [Attempt("GET", TENANTS, 403)],
    # Its own tenant A reads (its usage and cap); B's is as one that does not exist.
    f"GET {TENANTS}/{{tenant_id}}": lambda w: [
        Attempt("GET", f"{TENANTS}/{w.b.tenant_id}", 404),
        Attempt("GET", f"{TENANTS}/{uuid.uuid4()}", 404),
        Attempt("GET", f"{TENANTS}/{w.a.tenant_id}", 200, check=_a_tenant),
        Attempt("GET", f"{TENANTS}/{w.a.tenant_id}", 200, session=True, check=_a_tenant),
    ],
    f"PATCH {TENANTS}/{{tenant_id}}": lambda w: [
        Attempt("PATCH", f"{TENANTS}/{w.b.tenant_id}", 403, json={"store_limit": 0}),
        Attempt("PATCH", f"{TENANTS}/{w.a.tenant_id}", 403, json={"store_limit": 10_000}),
    ],
    f"DELETE {TENANTS}/{{tenant_id}}": lambda w: [
        Attempt("DELETE", f"{TENANTS}/{w.b.tenant_id}", 403),
        Attempt("DELETE", f"{TENANTS}/{w.a.tenant_id}", 403),
    ],
    # Keys: A lists and revokes its own tenant keys only; B's keys, and the admin keys of A's
    # own tenant, do not exist for it.
    f"POST {KEYS}": lambda w: [
        Attempt("POST", KEYS, 403, json={"name": "into b", "tenant_id": w.b.tenant_id}),
        Attempt("POST", KEYS, 403, json={"name": "root", "role": "admin"}),
    ],
    f"GET {KEYS}": lambda w: [
        Attempt("GET", KEYS, 200, check=_only_a_tenant_keys),
        Attempt("GET", KEYS, 200, session=True, check=_only_a_tenant_keys),
        Attempt("GET", KEYS, 200, params={"tenant_id": w.a.tenant_id}, check=_only_a_tenant_keys),
        Attempt("GET", KEYS, 403, params={"tenant_id": w.b.tenant_id}),
        Attempt("GET", KEYS, 403, params={"tenant_id": str(uuid.uuid4())}),
    ],
    f"DELETE {KEYS}/{{key_id}}": lambda w: [
        Attempt("DELETE", f"{KEYS}/{w.b.key_id}", 404),
        Attempt("DELETE", f"{KEYS}/{w.b.admin_key_id}", 404),
        Attempt("DELETE", f"{KEYS}/{w.a.admin_key_id}", 404),
        Attempt("DELETE", f"{KEYS}/{w.a.admin_key_id}", 404, session=True),
        Attempt("DELETE", f"{KEYS}/{uuid.uuid4()}", 404),  # as if it did not exist
    ],
    # The audit log: A's tenant only, whatever it filters on.
    f"GET {AUDIT}": lambda w: [
        Attempt("GET", AUDIT, 200, check=_only_a_audit_entries),
        Attempt("GET", AUDIT, 403, params={"tenant_id": w.b.tenant_id}),
        *(
            Attempt("GET", AUDIT, 200, params={"target": f"store/{w.b.store(s)}"}, check=_nothing)
            for s in (StoreStatus.QUEUED, StoreStatus.READY)
        ),
        Attempt("GET", AUDIT, 200, params={"target": f"key/{w.b.prefix}"}, check=_nothing),
    ],
    # The session: signing in, reading it and signing out concern A alone.
    f"POST {SESSION}": lambda w: [
        Attempt("POST", SESSION, 200, json={"token": w.a.token}, check=_is_a),
    ],
    f"GET {SESSION}": lambda _: [
        Attempt("GET", SESSION, 200, check=_is_a),
        Attempt("GET", SESSION, 200, session=True, check=_is_a),
    ],
    f"DELETE {SESSION}": lambda _: [Attempt("DELETE", SESSION, 204, session=True)],
    # A ticket names A's key: the stream behind it is A's (see the stream tests below).
    f"POST {TICKET}": lambda _: [
        Attempt("POST", TICKET, 200, check=_a_ticket_naming_a),
        Attempt("POST", TICKET, 200, session=True, check=_a_ticket_naming_a),
    ],
    # Routes holding no tenant's data.
    "GET /api/v1/platform": _public("/api/v1/platform"),
    "GET /api/v1/asyncapi.json": _public("/api/v1/asyncapi.json"),
    "GET /openapi.json": _public("/openapi.json"),
    "GET /docs": _public("/docs"),
    "GET /docs/assets": _public("/docs/assets/swagger-ui.css"),
    "GET /static": _public("/static/app.js"),
    "GET /": _public("/"),
}


def _route_keys(api: FastAPI) -> Iterator[str]:
    for route in iter_route_contexts(api.routes):
        methods = route.methods or {"GET"}  # a mount (the static files) answers GET
        for method in sorted(methods - {"HEAD"}):  # HEAD is GET without its body
            yield f"{method} {route.path}"


def test_every_route_of_the_app_has_an_isolation_entry(api: FastAPI) -> None:
    routes = sorted(_route_keys(api))

    assert len(routes) == len(set(routes))
    assert set(routes) == set(MATRIX), (
        "a route without an isolation entry (or an entry without its route): add it to MATRIX"
    )


def _leaks(response: httpx.Response, attempt: Attempt, world: World) -> set[str]:
    """Values hidden from A's tenant key (B's, and its own tenant's admin key) that the
    response holds and the request did not carry."""
    text = response.text
    sent = attempt.sent()
    hidden = world.b.markers() | world.a.admin_key_markers() | world.pool_markers()
    return {m for m in hidden if m in text and m not in sent}


async def _pool_snapshot(database: Database, world: World) -> dict[str, Any]:
    async with database.session() as session:
        store = await session.get(Store, uuid.UUID(world.pooled["id"]))
    assert store is not None
    return store.model_dump()


async def _revoked(database: Database, key_id: str) -> bool:
    async with database.session() as session:
        key = await session.get(ApiKey, uuid.UUID(key_id))
    assert key is not None
    return key.revoked_at is not None


@pytest.mark.parametrize("route", sorted(MATRIX))
async def test_tenant_a_gets_nothing_of_tenant_b_and_changes_nothing_through(
    route: str, api: FastAPI, world: World, database: Database
) -> None:
    before = await _snapshot(database, world.b)
    pool_before = await _pool_snapshot(database, world)
    attempts = MATRIX[route](world)
    assert attempts
    async with _client(api) as browser:
        signed_in = await browser.post(SESSION, json={"token": world.a.token})
        assert signed_in.status_code == 200, signed_in.text
        for attempt in attempts:
            http = browser if attempt.session else world.a.http
            response = await http.request(
                attempt.method,
                attempt.url,
                params=attempt.params,
                json=attempt.json,
                headers=attempt.headers,
            )

            what = f"{attempt.method} {attempt.url} {attempt.params or ''} {attempt.json or ''}"
            assert response.status_code == attempt.status, f"{what}: {response.text}"
            if response.status_code >= 400:
                problem(response, attempt.status)
            assert not _leaks(response, attempt, world), what
            if attempt.check is not None:
                attempt.check(response, world)

    assert await _snapshot(database, world.b) == before
    assert not await _revoked(database, world.a.admin_key_id)
    assert await _pool_snapshot(database, world) == pool_before


async def test_the_admin_sees_and_reaches_both_tenants(
    client: httpx.AsyncClient, world: World, database: Database
) -> None:
    stores = (await client.get(STORES, params={"limit": "500", "status": EVERY})).json()["items"]
    keys = (await client.get(KEYS)).json()["items"]
    tenants = (await client.get(TENANTS)).json()
    audit = (await client.get(AUDIT, params={"limit": "500"})).json()["items"]

    for party in (world.a, world.b):
        ids = {str(s["id"]) for s in party.all_stores()}
        assert ids <= {s["id"] for s in stores}
        assert {party.key_id, party.admin_key_id} <= {k["id"] for k in keys}
        assert party.tenant_id in {t["id"] for t in tenants}
        assert {f"store/{i}" for i in ids} <= {e["target"] for e in audit}
        scoped = await client.get(
            STORES, params={"tenant_id": party.tenant_id, "limit": "500", "status": EVERY}
        )
        assert {s["id"] for s in scoped.json()["items"]} == ids
        for status in OWNED:
            shown = await client.get(f"{STORES}/{party.store(status)}")
            assert shown.status_code == 200
            assert shown.json()["status"] == status.value
        login = await client.get(f"{STORES}/{party.store(StoreStatus.READY)}/credentials")
        assert login.json() == {"username": "admin", "password": party.password}

    deleted = await client.delete(f"{STORES}/{world.b.store(StoreStatus.FAILED)}")
    assert deleted.status_code == 202
    assert deleted.json()["status"] == "deleting"
    revoked = await client.delete(f"{KEYS}/{world.b.key_id}")
    assert revoked.json()["revoked_at"] is not None
    async with database.session() as session:
        row = await session.get(Store, uuid.UUID(world.b.store(StoreStatus.FAILED)))
    assert row is not None
    assert row.status is StoreStatus.DELETING


async def test_nobody_sees_a_store_in_the_warm_pool_not_even_the_admin(
    client: httpx.AsyncClient, world: World
) -> None:
    for http in (client, world.a.http, world.b.http):
        listed = await http.get(
            STORES, params={"limit": "500", "status": [s.value for s in StoreStatus]}
        )
        assert world.pooled["id"] not in listed.text
        for suffix in ("", "/credentials"):
            problem(await http.get(f"{STORES}/{world.pooled['id']}{suffix}"), 404)
        problem(await http.delete(f"{STORES}/{world.pooled['id']}"), 404)
        problem(await http.post(f"{STORES}/{world.pooled['id']}/upgrade"), 404)


async def test_tenant_b_reaches_its_own_stores_and_none_of_tenant_as(world: World) -> None:
    """The other direction: B's own key reaches B's objects and none of A's."""
    for status in OWNED:
        assert (await world.b.http.get(f"{STORES}/{world.b.store(status)}")).status_code == 200
        problem(await world.b.http.get(f"{STORES}/{world.a.store(status)}"), 404)
    listed = (await world.b.http.get(STORES, params={"status": EVERY})).json()["items"]
    assert {s["id"] for s in listed} == {str(s["id"]) for s in world.b.all_stores()}
    login = await world.b.http.get(f"{STORES}/{world.b.store(StoreStatus.READY)}/credentials")
    assert login.json()["password"] == world.b.password
    assert not {m for m in world.a.markers() if m in json.dumps(listed)}


# --- the event stream -----------------------------------------------------------------------


@pytest.fixture
async def notifier(settings: Settings, nats_client: Client) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a notifier served by a real uvicorn."""
    async with (
        served(create_notifier(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield http


async def _next_events(events: AsyncIterator[ServerSentEvent], count: int) -> list[dict[str, Any]]:
    """The next ``count`` store events (not the retry hint or keep-alive comments)."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(DEADLINE_SECONDS):
        while len(received) < count:
            event = await anext(events)
            if event.data:
                received.append(json.loads(event.data))
    return received


async def _connected(events: AsyncIterator[ServerSentEvent]) -> None:
    """Wait for the stream's first message (the retry hint): it is sent every event from now on."""
    async with asyncio.timeout(DEADLINE_SECONDS):
        first = await anext(events)
    assert first.retry is not None


async def _publish_progress(nats: Client, party: Party, status: StoreStatus) -> str:
    """A progress event of ``party``'s store, published as the outbox does; its event id."""
    event = make_event(
        Progress(
            status=StoreStatus.PROVISIONING,
            phase="provision",
            step=StepInfo(name="rollout", title="Rollout", index=4, total=9),
            state="started",
            progress=0.33,
        ),
        store_id=uuid.UUID(party.store(status)),
        tenant_id=uuid.UUID(party.tenant_id),
        correlation_id=uuid.uuid4().hex,
        source="/tests",
    )
    await nats.jetstream().publish(
        event.nats_subject,
        event.model_dump_json().encode(),
        stream=STREAM_NAME,
        headers={"Nats-Msg-Id": str(event.id)},
    )
    return str(event.id)


async def test_a_tenant_key_streams_its_tenants_new_events_and_none_of_another_tenants(
    notifier: httpx.AsyncClient, world: World
) -> None:
    headers = {"Authorization": f"Bearer {world.a.token}"}
    async with aconnect_sse(notifier, "GET", EVENTS, headers=headers) as source:
        assert source.response.status_code == 200
        events = source.aiter_sse()
        await _connected(events)
        # Both through the API: B's store is announced first, then A's.
        b_store = await create(world.b.http, "Bravo live")
        a_store = await create(world.a.http, "Alpha live")
        [first] = await _next_events(events, 1)

    assert first["type"] == "io.woostore.store.requested"
    assert first["subject"] == a_store["id"]
    assert first["tenantid"] == world.a.tenant_id
    assert b_store["id"] not in json.dumps(first)


async def test_a_ticket_of_a_tenants_session_replays_only_that_tenants_events(
    api: FastAPI, notifier: httpx.AsyncClient, nats_client: Client, world: World
) -> None:
    b_first = await _publish_progress(nats_client, world.b, StoreStatus.PROVISIONING)
    a_first = await _publish_progress(nats_client, world.a, StoreStatus.PROVISIONING)
    b_second = await _publish_progress(nats_client, world.b, StoreStatus.DELETING)
    a_second = await _publish_progress(nats_client, world.a, StoreStatus.DELETING)
    async with _client(api) as browser:
        signed_in = await browser.post(SESSION, json={"token": world.a.token})
        assert signed_in.status_code == 200
        ticket = (await browser.post(TICKET)).json()["ticket"]

    # From the start of the stream: the API's requested events of both tenants' stores, then
    # B's, A's, B's and A's progress. A's stream holds exactly A's, in order.
    params = {"ticket": ticket, "last_event_id": "0"}
    async with aconnect_sse(notifier, "GET", EVENTS, params=params) as source:
        assert source.response.status_code == 200
        received = await _next_events(source.aiter_sse(), len(world.a.all_stores()) + 2)

    ids = [e["id"] for e in received]
    assert {e["tenantid"] for e in received} == {world.a.tenant_id}
    assert {e["subject"] for e in received} == {str(s["id"]) for s in world.a.all_stores()}
    assert ids[-2:] == [a_first, a_second]
    assert b_first not in ids
    assert b_second not in ids


async def test_the_admin_stream_carries_every_tenants_events(
    notifier: httpx.AsyncClient, nats_client: Client, world: World
) -> None:
    b_event = await _publish_progress(nats_client, world.b, StoreStatus.PROVISIONING)
    a_event = await _publish_progress(nats_client, world.a, StoreStatus.PROVISIONING)
    # The pooled store's events (requested, pooled: made before these) are nobody's.
    requested = len(world.a.all_stores()) + len(world.b.all_stores())
    headers = {"Authorization": f"Bearer {world.settings.admin_token.get_secret_value()}"}

    async with aconnect_sse(
        notifier, "GET", EVENTS, headers=headers, params={"last_event_id": "0"}
    ) as source:
        received = await _next_events(source.aiter_sse(), requested + 2)

    assert [e["id"] for e in received][-2:] == [b_event, a_event]
    assert {e["tenantid"] for e in received} == {world.a.tenant_id, world.b.tenant_id}
    assert world.pooled["id"] not in {e["subject"] for e in received}


async def test_a_ticket_of_a_revoked_key_is_refused(
    notifier: httpx.AsyncClient, client: httpx.AsyncClient, world: World
) -> None:
    ticket = (await world.a.http.post(TICKET)).json()["ticket"]
    revoked = await client.delete(f"{KEYS}/{world.a.key_id}")
    assert revoked.status_code == 200

    response = await notifier.get(EVENTS, params={"ticket": ticket})

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # The same key as a bearer token is refused too.
    bearer = await notifier.get(EVENTS, headers={"Authorization": f"Bearer {world.a.token}"})
    assert bearer.status_code == 401
