"""Tenants, API keys, the dashboard's session, limits and the audit log, on a real
PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import unicodedata
import uuid
from collections import Counter
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from itsdangerous import URLSafeTimedSerializer
from nats.aio.client import Client
from nats.aio.msg import Msg
from pydantic import SecretStr
from sqlalchemy import func, text, update
from sqlmodel import col, select

from tests.api.conftest import NewTenant
from tests.api.http import STORES, create, problem
from tests.support import ADMIN_TOKEN, SECRET_KEY
from woostore_api.access import service as access_service
from woostore_api.access.schemas import LIKE_AN_ID
from woostore_api.main import create_app
from woostore_devstack.embedded import free_port
from woostore_shared.access import Authenticator
from woostore_shared.db import Database
from woostore_shared.models import (
    DEFAULT_TENANT_ID,
    ApiKey,
    AuditEntry,
    PlatformCounts,
    Store,
    StoreStatus,
    Tenant,
)
from woostore_shared.secrets import sha256_hex
from woostore_shared.settings import Settings
from woostore_shared.topology import ACCESS_WITHDRAWN

KEYS = "/api/v1/keys"
SESSION = "/api/v1/session"
AUDIT = "/api/v1/audit"


def limited(api: FastAPI, settings: Settings, **limits: int) -> None:
    """Run the API with other limits (the routes read the settings per request)."""
    api.state.settings = settings.model_copy(update=limits)


def client_with(api: FastAPI, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api),
        base_url="http://api.test",
        headers=headers,
        **kwargs,
    )


async def set_status(database: Database, store_id: str, status: StoreStatus) -> None:
    """Put a store where the API alone cannot (the provisioner moves stores on)."""
    async with database.session() as session:
        store = await session.get(Store, uuid.UUID(store_id))
        assert store is not None
        store.status = status
        session.add(store)
        await session.commit()


# --- keys -----------------------------------------------------------------------------------


async def test_a_key_is_shown_once_and_kept_only_as_a_hash(
    client: httpx.AsyncClient, database: Database
) -> None:
    made = await client.post(KEYS, json={"name": "ci"})
    assert made.status_code == 201
    token = made.json()["token"]
    assert token.startswith(made.json()["prefix"] + "_")

    async with database.session() as session:
        row = await session.get(ApiKey, uuid.UUID(made.json()["id"]))
    assert row is not None
    assert row.secret_sha256 == sha256_hex(token)
    assert token not in str(row.model_dump())
    listed = (await client.get(KEYS)).json()["items"]
    assert [k["prefix"] for k in listed] == [made.json()["prefix"]]
    assert token not in str(listed)
    assert "token" not in listed[0]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("abc\u202edcba", "invisible format characters"),  # shown as "abcabcd"
        ("ci\u200bdeploys", "invisible format characters"),  # zero-width space
        ("c\x85i", "control"),  # a C1 control (at either end, stripped as space)
        ("   ", "a visible character"),
        ("x" * 101, "at most 100 characters"),
    ],
)
async def test_a_key_name_that_would_show_as_another_is_refused(
    client: httpx.AsyncClient, name: str, says: str
) -> None:
    """Checked as a store's name is: only C0 controls were refused, so a key named with a
    right-to-left override showed reordered in the keys list and the audit log."""
    refused = await client.post(KEYS, json={"name": name})

    body = problem(refused, 422)
    assert says in body["errors"][0]["message"], body
    assert (await client.get(KEYS)).json()["items"] == []


async def test_a_key_name_is_kept_normalised(client: httpx.AsyncClient) -> None:
    made = await client.post(KEYS, json={"name": "  ope\u0301rations \U0001f468\u200d\U0001f4bb "})

    assert made.json()["name"] == "op\u00e9rations \U0001f468\u200d\U0001f4bb"  # NFC, joiner kept


async def test_a_revoked_key_is_refused_at_once(api: FastAPI, client: httpx.AsyncClient) -> None:
    made = (await client.post(KEYS, json={"name": "laptop"})).json()
    async with client_with(api, made["token"]) as holder:
        assert (await holder.get(STORES)).status_code == 200

        revoked = await client.delete(f"{KEYS}/{made['id']}")
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] is not None

        problem(await holder.get(STORES), 401)
    # Revoking twice is one revocation.
    assert (await client.delete(f"{KEYS}/{made['id']}")).json() == revoked.json()


@pytest.mark.parametrize(
    "token",
    [
        "wsk_000000000000_not-a-real-key-at-all-0000000000000000000000",
        "wsk_",
        f"{ADMIN_TOKEN}-but-longer",
        "",
    ],
)
async def test_an_unknown_key_is_a_401_problem(api: FastAPI, token: str) -> None:
    async with client_with(api) as anonymous:
        response = await anonymous.get(STORES, headers={"Authorization": f"Bearer {token}"})
    problem(response, 401)
    # RFC 6750: a token sent and refused is named as such; none sent, a key is asked for.
    refused = 'Bearer error="invalid_token"'
    assert response.headers["WWW-Authenticate"] == (refused if token else "Bearer")


async def test_a_key_guessed_from_a_real_prefix_is_refused(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    made = (await client.post(KEYS, json={"name": "real"})).json()
    forged = made["prefix"] + "_" + "A" * 43
    async with client_with(api, forged) as forger:
        problem(await forger.get(STORES), 401)


async def test_a_tenant_key_cannot_raise_itself_or_reach_another_tenant(
    client: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    acme, other = await new_tenant("acme"), await new_tenant("other")
    other_id = (await other.get(SESSION)).json()["tenant_id"]

    problem(await acme.post(KEYS, json={"name": "root", "role": "admin"}), 403)
    problem(await acme.post(KEYS, json={"name": "x", "tenant_id": other_id}), 403)
    problem(await acme.get("/api/v1/tenants"), 403)
    problem(await acme.post("/api/v1/tenants", json={"name": "mine"}), 403)
    problem(await acme.get(KEYS, params={"tenant_id": other_id}), 403)
    # Another tenant does not exist for it, as another's store does not; its own it reads.
    hidden = problem(await acme.get(f"/api/v1/tenants/{other_id}"), 404)
    assert hidden["detail"] == f"tenant {other_id} does not exist"  # as for one that does not
    acme_id = (await acme.get(SESSION)).json()["tenant_id"]
    mine = (await acme.get(f"/api/v1/tenants/{acme_id}")).json()
    assert (mine["name"], mine["live_stores"]) == ("acme", 0)
    assert (await client.get(f"/api/v1/tenants/{other_id}")).json()["name"] == "other"  # admin
    other_keys = (await other.get(KEYS)).json()["items"]
    problem(await acme.delete(f"{KEYS}/{other_keys[0]['id']}"), 404)
    # Its own tenant keys it may make, list and revoke.
    own = await acme.post(KEYS, json={"name": "second"})
    assert own.status_code == 201
    assert own.json()["role"] == "tenant"
    assert len((await acme.get(KEYS)).json()["items"]) == 2


async def test_an_admin_key_made_by_the_admin_token_acts_as_admin(
    api: FastAPI, client: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    await create(await new_tenant("shop"))
    admin_key = (await client.post(KEYS, json={"name": "ops", "role": "admin"})).json()
    async with client_with(api, admin_key["token"]) as ops:
        assert len((await ops.get(STORES)).json()["items"]) == 1
        assert (await ops.get("/api/v1/tenants")).status_code == 200
        assert (await ops.get(SESSION)).json()["role"] == "admin"


# --- the dashboard's session ------------------------------------------------------------------


async def test_signing_in_sets_a_strict_http_only_cookie_that_authenticates(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    key = (await client.post(KEYS, json={"name": "browser"})).json()
    async with client_with(api) as browser:
        signed_in = await browser.post(SESSION, json={"token": key["token"]})
        assert signed_in.status_code == 200
        assert signed_in.json()["actor"] == key["prefix"]
        cookie = signed_in.headers["set-cookie"]
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/;"):
            assert attribute.lower() in cookie.lower()
        assert key["token"] not in cookie

        assert (await browser.get(STORES)).status_code == 200
        assert (await browser.post(STORES, json={"name": "From the dashboard"})).status_code == 202
        signed_out = await browser.delete(SESSION)
        assert signed_out.status_code == 204
        problem(await browser.get(STORES), 401)


@pytest.mark.parametrize("signed_in_with", ["key", "admin token"])
async def test_signing_out_ends_the_session_for_a_copy_of_its_cookie_too(
    api: FastAPI, client: httpx.AsyncClient, signed_in_with: str
) -> None:
    """Signing out only deleted the browser's cookie: a copy of it (a shared machine's, a
    proxy's log) went on working for the 12 hours it had left (found by a user's review)."""
    if signed_in_with == "key":
        token = (await client.post(KEYS, json={"name": "browser"})).json()["token"]
    else:
        token = ADMIN_TOKEN
    async with client_with(api) as browser, client_with(api) as elsewhere:
        await browser.post(SESSION, json={"token": token})
        kept = dict(browser.cookies)  # a copy of its cookie
        await elsewhere.post(SESSION, json={"token": token})  # a session of its own

        signed_out = await browser.delete(SESSION)
        assert signed_out.status_code == 204
        assert "content-type" not in signed_out.headers  # nothing to say of a body it lacks

        async with client_with(api, cookies=kept) as copy:
            body = problem(await copy.get(STORES), 401)
            assert "signed out" in body["detail"]
            assert (await copy.delete(SESSION)).status_code == 204  # ended: all the same
        assert (await elsewhere.get(STORES)).status_code == 200
    actions = [entry["action"] for entry in (await client.get(AUDIT)).json()["items"]]
    assert (actions.count("session.create"), actions.count("session.delete")) == (2, 1)


async def test_signing_out_with_the_database_out_of_reach_still_deletes_the_cookie(
    api: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The browser forgets the session whatever happens; the client is told the server did
    not, and what that leaves: a copy of the cookie works until the session expires (it
    was told to sign out again, which the browser, without its cookie, could not)."""
    key = (await client.post(KEYS, json={"name": "browser"})).json()
    nowhere = Database(f"postgresql+psycopg://woostore:x@127.0.0.1:{free_port()}/woostore")
    async with client_with(api) as browser:
        await browser.post(SESSION, json={"token": key["token"]})
        monkeypatch.setattr(api.state.authenticator, "_db", nowhere)
        try:
            refused = await browser.delete(SESSION)
        finally:
            await nowhere.dispose()

        assert problem(refused, 503)["detail"] == (
            "the session could not be ended on the server; this cookie is deleted all the same, "
            "and a copy of it opens the session until it expires or its key is revoked"
        )
        assert refused.headers["set-cookie"].startswith('woostore_session="";')
        assert not browser.cookies


async def test_signing_out_whose_statement_fails_is_told_as_the_database_out_of_reach(
    api: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session is spent by a plain statement on the unit of work's own connection (one
    the notifier shares): its error was psycopg's, which no handler knew, so the client got
    a 500 and kept the cookie (a review)."""
    key = (await client.post(KEYS, json={"name": "browser"})).json()

    async def cancelled(connection: object, tickets: object) -> set[str]:
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

    async with client_with(api) as browser:
        await browser.post(SESSION, json={"token": key["token"]})
        monkeypatch.setattr(access_service, "spend", cancelled)
        refused = await browser.delete(SESSION)

        assert problem(refused, 503)["detail"] == (
            "the session could not be ended on the server; this cookie is deleted all the same, "
            "and a copy of it opens the session until it expires or its key is revoked"
        )
        assert not browser.cookies


async def test_a_session_without_an_id_is_refused_as_one_that_cannot_be_signed_out(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    """Signed before sessions had ids (all expired by now): nothing could end it."""
    key = (await client.post(KEYS, json={"name": "browser"})).json()
    sessions = api.state.sessions
    old = sessions._serializer.dumps({"sub": key["id"]})  # signed as it was then
    assert sessions.open(old).id is None

    async with client_with(api, cookies={"woostore_session": old}) as browser:
        problem(await browser.get(STORES), 401)
        fresh = sessions.issue(key["id"])
        browser.cookies.set("woostore_session", fresh)
        assert (await browser.get(STORES)).status_code == 200


async def test_a_session_write_from_another_origin_is_refused(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    key = (await client.post(KEYS, json={"name": "browser"})).json()
    async with client_with(api) as browser:
        await browser.post(SESSION, json={"token": key["token"]})
        evil = {"Origin": "https://evil.example"}
        problem(await browser.post(STORES, json={"name": "Forged"}, headers=evil), 403)
        # Reads are harmless; the dashboard's own origin may write.
        assert (await browser.get(STORES, headers=evil)).status_code == 200
        own = {"Origin": "http://api.test"}
        assert (await browser.post(STORES, json={"name": "Mine"}, headers=own)).status_code == 202

        # Nor may another site sign the dashboard out (the docs said so; it could).
        refused = await browser.delete(SESSION, headers=evil)
        problem(refused, 403)
        assert "set-cookie" not in refused.headers
        assert (await browser.get(STORES)).status_code == 200
        assert (await browser.delete(SESSION, headers=own)).status_code == 204
        problem(await browser.get(STORES), 401)


async def test_a_session_ends_when_its_key_is_revoked(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    key = (await client.post(KEYS, json={"name": "browser"})).json()
    async with client_with(api) as browser:
        await browser.post(SESSION, json={"token": key["token"]})
        await client.delete(f"{KEYS}/{key['id']}")
        body = problem(await browser.get(STORES), 401)
    assert "revoked" in body["detail"]


async def test_an_admin_ticket_reveals_nothing_about_the_admin_token(
    client: httpx.AsyncClient, database: Database
) -> None:
    ticket = (await client.post("/api/v1/events/ticket")).json()["ticket"]
    # Signed, not encrypted: whoever sees the ticket (in a URL, a log) reads its payload.
    _, payload = URLSafeTimedSerializer("not-the-secret-key").loads_unsafe(ticket)
    subject = payload["sub"]

    assert sha256_hex(ADMIN_TOKEN)[:16] not in subject
    assert ADMIN_TOKEN not in subject
    keyed = Authenticator(database, admin_token=ADMIN_TOKEN, secret_key=SECRET_KEY)
    assert subject == keyed.admin_subject  # naming the token takes the secret key too
    other = Authenticator(database, admin_token=ADMIN_TOKEN, secret_key=SECRET_KEY + "-renewed")
    assert await other.by_subject(subject) is None


@pytest.mark.parametrize("renewed", ["admin_token", "secret_key"])
async def test_a_new_admin_token_or_secret_key_ends_the_admin_tokens_sessions(
    api: FastAPI, settings: Settings, renewed: str
) -> None:
    async with client_with(api) as browser:
        assert (await browser.post(SESSION, json={"token": ADMIN_TOKEN})).status_code == 200
        cookies = browser.cookies
    restarted = create_app(settings.model_copy(update={renewed: SecretStr("renewed-" * 5)}))

    async with (
        restarted.router.lifespan_context(restarted),
        client_with(restarted, cookies=cookies) as browser,
    ):
        problem(await browser.get(STORES), 401)


async def test_signing_in_with_a_wrong_key_is_a_401_and_sets_no_cookie(api: FastAPI) -> None:
    async with client_with(api) as browser:
        response = await browser.post(SESSION, json={"token": "wsk_0123456789ab_wrong"})
    problem(response, 401)
    assert "set-cookie" not in response.headers


async def test_a_forged_session_cookie_is_refused(api: FastAPI) -> None:
    async with client_with(api, cookies={"woostore_session": "eyJzdWIiOiJhZG1pbiJ9.forged"}) as b:
        problem(await b.get(STORES), 401)


# --- tenants ------------------------------------------------------------------------------

TENANTS = "/api/v1/tenants"


async def test_a_tenant_is_deleted_once_its_stores_are_and_its_name_can_be_used_again(
    client: httpx.AsyncClient, new_tenant: NewTenant, database: Database
) -> None:
    leaving = await new_tenant("leaving")
    tenant_id = (await leaving.get(SESSION)).json()["tenant_id"]
    store = await create(leaving, "Closing down")

    refused = await client.delete(f"{TENANTS}/{tenant_id}")

    body = problem(refused, 409)
    assert body["type"] == "https://woostore.dev/problems/tenant-not-deletable"
    assert body["detail"] == (
        "tenant 'leaving' still has 1 store, counting those being deleted until they are "
        "gone; delete them first"
    )
    assert (await leaving.get(STORES)).status_code == 200  # nothing changed
    await set_status(database, store["id"], StoreStatus.DELETING)
    waiting = problem(await client.delete(f"{TENANTS}/{tenant_id}"), 409)
    assert waiting["detail"] == (
        "tenant 'leaving' still has 1 store, all being deleted; try again once they are gone"
    )

    await set_status(database, store["id"], StoreStatus.DELETED)
    deleted = await client.delete(f"{TENANTS}/{tenant_id}")

    assert deleted.status_code == 200, deleted.text
    assert (deleted.json()["id"], deleted.json()["live_stores"]) == (tenant_id, 0)
    assert deleted.json()["deleted_at"]
    assert (await leaving.get(STORES)).status_code == 401  # its keys, revoked at once
    assert all(t["id"] != tenant_id for t in (await client.get(TENANTS)).json())
    for gone in (
        await client.get(f"{TENANTS}/{tenant_id}"),
        await client.patch(f"{TENANTS}/{tenant_id}", json={"store_limit": 3}),
        await client.post(KEYS, json={"name": "late", "tenant_id": tenant_id}),
        await client.post(STORES, json={"name": "Late", "tenant_id": tenant_id}),
        await client.delete(f"{TENANTS}/{tenant_id}"),
    ):
        detail = problem(gone, 404)["detail"]
        assert detail.startswith("tenant 'leaving' was deleted at 20"), detail
        assert detail.endswith("; GET /tenants?include_deleted=true lists it")
    # Its history stays, the deletion in it; its name is free for a new tenant.
    history = (await client.get(AUDIT, params={"tenant_id": tenant_id})).json()["items"]
    assert history[0]["action"] == "tenant.delete"
    assert history[0]["details"] == {"name": "leaving", "keys_revoked": 1}
    assert "store.create" in [e["action"] for e in history]
    again = await client.post(TENANTS, json={"name": "leaving"})
    assert again.status_code == 201, again.text
    assert again.json()["id"] != tenant_id


async def test_a_deleted_tenant_is_listed_when_asked_for_and_its_history_read(
    client: httpx.AsyncClient, new_tenant: NewTenant, database: Database
) -> None:
    """An admin reads a deleted tenant's stores, keys and audit log, and finds it among the
    tenants when asking for deleted ones too."""
    leaving = await new_tenant("gone-tenant")
    tenant_id = (await leaving.get(SESSION)).json()["tenant_id"]
    store = await create(leaving, "Closed shop")
    await set_status(database, store["id"], StoreStatus.DELETED)
    assert (await client.delete(f"{TENANTS}/{tenant_id}")).status_code == 200

    listed = (await client.get(TENANTS, params={"include_deleted": "true"})).json()
    [gone] = [t for t in listed if t["id"] == tenant_id]
    assert (gone["name"], gone["live_stores"]) == ("gone-tenant", 0)
    assert gone["deleted_at"]
    assert all(t["deleted_at"] is None for t in listed if t["id"] != tenant_id)
    assert tenant_id not in [t["id"] for t in (await client.get(TENANTS)).json()]

    own = {"tenant_id": tenant_id}
    stores = (await client.get(STORES, params={**own, "status": "deleted"})).json()["items"]
    assert [s["id"] for s in stores] == [store["id"]]
    keys = (await client.get(KEYS, params=own)).json()["items"]
    assert keys
    assert all(k["revoked_at"] for k in keys)
    assert (await client.get(AUDIT, params=own)).json()["items"]


async def test_a_suspended_tenants_keys_are_refused_until_it_is_resumed_and_its_stores_kept(
    api: FastAPI, client: httpx.AsyncClient, new_tenant: NewTenant, database: Database
) -> None:
    """Suspension refuses every way in of the tenant's keys (a bearer key, a dashboard session,
    an event-stream ticket's subject, the event streams already open) and touches no store."""
    paused = await new_tenant("paused")
    tenant_id = (await paused.get(SESSION)).json()["tenant_id"]
    key_id = (await paused.get(KEYS)).json()["items"][0]["id"]
    store = await create(paused, "Still serving")
    token = paused.headers["authorization"].removeprefix("Bearer ")
    async with client_with(api) as browser:
        assert (await browser.post(SESSION, json={"token": token})).status_code == 200
        authenticator = Authenticator(database, admin_token=ADMIN_TOKEN, secret_key=SECRET_KEY)
        assert await authenticator.withdrawn({key_id}) == {}

        suspended = await client.patch(f"{TENANTS}/{tenant_id}", json={"suspended": True})
        assert suspended.status_code == 200, suspended.text
        assert suspended.json()["suspended_at"]
        assert (await client.patch(f"{TENANTS}/{tenant_id}", json={"suspended": True})).json()[
            "suspended_at"
        ] == suspended.json()["suspended_at"]  # as it was: since when it was suspended

        said = "this key's tenant is suspended: its keys are refused until an admin resumes it"
        assert problem(await paused.get(STORES), 401)["detail"] == said
        assert problem(await browser.get(STORES), 401)["detail"] == said
        async with client_with(api) as another_browser:
            signing_in = await another_browser.post(SESSION, json={"token": token})
            assert problem(signing_in, 401)["detail"] == said
            assert "set-cookie" not in signing_in.headers
        # Only the whole key learns why: its prefix with another secret is told nothing.
        async with client_with(api, token[:16] + "_not-its-secret") as guesser:
            guessed = problem(await guesser.get(STORES), 401)["detail"]
        assert guessed == "the bearer token is not a valid API key or was revoked"
        assert await authenticator.withdrawn({key_id}) == {key_id: "tenant-suspended"}
        assert await authenticator.by_subject(key_id) is None  # its tickets open none
        kept = (await client.get(f"{STORES}/{store['id']}")).json()
        assert (kept["status"], kept["updated_at"]) == (store["status"], store["updated_at"])

        resumed = await client.patch(f"{TENANTS}/{tenant_id}", json={"suspended": False})
        assert resumed.json()["suspended_at"] is None
        assert (await paused.get(STORES)).status_code == 200
        assert (await browser.get(STORES)).status_code == 200  # the session was kept
    changes = [
        e["details"]
        for e in (await client.get(AUDIT, params={"tenant_id": tenant_id})).json()["items"]
        if e["action"] == "tenant.update"
    ]
    assert changes == [{"suspended": False}, {"suspended": True}]  # the repeat wrote none


async def test_signing_out_while_the_tenant_is_suspended_ends_the_session_for_good(
    api: FastAPI, client: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """It was a 401 that neither ended the session nor deleted the cookie: resumed, the tenant's
    session opened again, on a shared machine signed out of (an operator's review)."""
    paused = await new_tenant("signs-out")
    tenant_id = (await paused.get(SESSION)).json()["tenant_id"]
    token = paused.headers["authorization"].removeprefix("Bearer ")
    prefix = (await paused.get(KEYS)).json()["items"][0]["prefix"]
    async with client_with(api) as browser:
        await browser.post(SESSION, json={"token": token})
        kept = dict(browser.cookies)
        await client.patch(f"{TENANTS}/{tenant_id}", json={"suspended": True})

        signed_out = await browser.delete(SESSION)

        assert signed_out.status_code == 204, signed_out.text
        assert "Max-Age=0" in signed_out.headers["set-cookie"]
    await client.patch(f"{TENANTS}/{tenant_id}", json={"suspended": False})
    async with client_with(api, cookies=kept) as copy:
        assert "signed out" in problem(await copy.get(STORES), 401)["detail"]
    signed_out_by = [
        e["actor"]
        for e in (await client.get(AUDIT, params={"tenant_id": tenant_id})).json()["items"]
        if e["action"] == "session.delete"
    ]
    assert signed_out_by == [prefix]


async def test_no_key_suspends_its_own_tenant_nor_the_default_one(
    client: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    own = await new_tenant("self-aware")
    tenant_id = (await own.get(SESSION)).json()["tenant_id"]
    admin_key = await client.post(KEYS, json={"name": "its admin", "tenant_id": tenant_id,
                                               "role": "admin"})  # fmt: skip
    assert admin_key.status_code == 201, admin_key.text
    headers = {"Authorization": f"Bearer {admin_key.json()['token']}"}

    itself = await client.patch(f"{TENANTS}/{tenant_id}", json={"suspended": True}, headers=headers)
    default = await client.patch(f"{TENANTS}/{DEFAULT_TENANT_ID}", json={"suspended": True})
    null = await client.patch(f"{TENANTS}/{tenant_id}", json={"suspended": None})

    assert problem(itself, 409)["type"].endswith("/tenant-not-suspendable")
    assert problem(default, 409)["detail"] == (
        "the default tenant is the admin token's own: it cannot be suspended"
    )
    problem(null, 422)
    assert (await own.get(STORES)).status_code == 200


@pytest.mark.parametrize("path", [STORES, f"{STORES}/counts", KEYS, AUDIT])
async def test_a_listing_of_a_tenant_that_never_was_is_a_404_not_an_empty_list(
    client: httpx.AsyncClient, path: str
) -> None:
    """Empty, it would say the tenant has nothing; a mistyped id is told as such."""
    nobody = uuid.uuid4()

    answer = await client.get(path, params={"tenant_id": str(nobody)})

    assert problem(answer, 404)["detail"] == f"tenant {nobody} does not exist"


async def test_a_tenant_is_renamed_to_a_name_no_other_tenant_has(
    client: httpx.AsyncClient,
) -> None:
    tenant = (await client.post(TENANTS, json={"name": "acme", "store_limit": 4})).json()
    await client.post(TENANTS, json={"name": "globex"})

    renamed = await client.patch(f"{TENANTS}/{tenant['id']}", json={"name": "acme-europe"})

    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["store_limit"]) == ("acme-europe", 4)
    [entry] = (
        await client.get(
            AUDIT, params={"tenant_id": tenant["id"], "target": f"tenant/{tenant['id']}"}
        )
    ).json()["items"][:1]
    assert (entry["action"], entry["details"]) == (
        "tenant.update", {"name": "acme-europe", "was_named": "acme"},
    )  # fmt: skip
    # The same name again changes nothing, and the audit log says nothing of it.
    again = await client.patch(f"{TENANTS}/{tenant['id']}", json={"name": "acme-europe"})
    assert again.status_code == 200, again.text
    latest = (await client.get(AUDIT, params={"target": f"tenant/{tenant['id']}"})).json()
    assert latest["items"][0]["details"]["was_named"] == "acme"
    taken = await client.patch(f"{TENANTS}/{tenant['id']}", json={"name": "globex"})
    assert problem(taken, 409)["detail"] == "a tenant named 'globex' exists"
    made_again = await client.post(TENANTS, json={"name": "globex"})
    assert problem(made_again, 409)["type"] == "https://woostore.dev/problems/tenant-exists"
    for nothing in ({}, {"name": None}):
        refused = await client.patch(f"{TENANTS}/{tenant['id']}", json=nothing)
        assert refused.status_code == 422, refused.text
    # A name is refused in words, whether made or given, not as the pattern it breaks.
    for refused in (
        await client.patch(f"{TENANTS}/{tenant['id']}", json={"name": "Acme"}),
        await client.post(TENANTS, json={"name": "-acme"}),
    ):
        assert problem(refused, 422)["detail"] == (
            "body.name: a tenant's name is lower-case letters (a-z), digits and hyphens, and "
            "starts with a letter or a digit"
        )
    # A name that reads as an id would be taken for another tenant's where both are taken.
    for like_an_id in (tenant["id"], tenant["id"].replace("-", "")):
        for refused in (
            await client.patch(f"{TENANTS}/{tenant['id']}", json={"name": like_an_id}),
            await client.post(TENANTS, json={"name": like_an_id}),
        ):
            assert problem(refused, 422)["detail"] == (
                "body.name: a tenant's name cannot read as an id (a UUID): it would be taken "
                "for one"
            )
    # ... as the OpenAPI document says: a body that the API refuses is not one it describes.
    described = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert described["TenantUpdate"]["minProperties"] == 1
    assert described["TenantUpdate"]["properties"]["name"]["type"] == "string"
    assert described["TenantCreate"]["properties"]["name"]["not"] == {"pattern": LIKE_AN_ID}
    assert (await client.get(f"{TENANTS}/{tenant['id']}")).json()["name"] == "acme-europe"
    # The name it left is free.
    assert (await client.post(TENANTS, json={"name": "acme"})).status_code == 201


async def test_no_key_deletes_its_own_tenant_nor_the_default_one(
    api: FastAPI, client: httpx.AsyncClient
) -> None:
    default = (await client.get(SESSION)).json()["tenant_id"]
    other = (await client.post(TENANTS, json={"name": "operators"})).json()["id"]
    admin_there = await client.post(KEYS, json={"name": "op", "tenant_id": other, "role": "admin"})
    async with client_with(api, admin_there.json()["token"]) as operator:
        own = await operator.delete(f"{TENANTS}/{other}")
        assert problem(own, 409)["detail"] == (
            "a key cannot delete its own tenant: use an admin key of another tenant"
        )
        first = await operator.delete(f"{TENANTS}/{default}")
        assert problem(first, 409)["detail"] == (
            "the default tenant is the admin token's own: it cannot be deleted"
        )
    # Nor renamed: another tenant could then take its name, which the docs and messages use.
    renamed = await client.patch(f"{TENANTS}/{default}", json={"name": "main"})
    assert problem(renamed, 409)["detail"] == (
        "the default tenant is the admin token's own: it cannot be renamed"
    )
    unchanged = await client.patch(f"{TENANTS}/{default}", json={"store_limit": None})
    assert unchanged.status_code == 200, unchanged.text  # its limit is the operator's to set
    assert (await client.get(f"{TENANTS}/{other}")).status_code == 200


async def test_a_store_made_as_its_tenant_is_deleted_is_refused_whole(
    client: httpx.AsyncClient, new_tenant: NewTenant, database: Database
) -> None:
    """A create past its key's check as its tenant is deleted: it commits after the deletion,
    and fails there (the check that a deleted tenant holds no live store), never leaving a
    store behind. The deletion is held uncommitted until the create waits on it."""
    racing = await new_tenant("racing")
    tenant_id = uuid.UUID((await racing.get(SESSION)).json()["tenant_id"])
    async with database.transaction() as deleting:
        await deleting.exec(
            update(Tenant).where(col(Tenant.id) == tenant_id).values(deleted_at=func.now())
        )
        create = asyncio.create_task(racing.post(STORES, json={"name": "Too Late"}))
        await _until_a_statement_waits_for_a_lock(database, create)
        await deleting.commit()

    refused = await create

    assert problem(refused, 404)["detail"] == f"tenant {tenant_id} does not exist"
    async with database.session() as session:
        left = await session.exec(select(Store).where(col(Store.tenant_id) == tenant_id))
        assert left.all() == []


async def _until_a_statement_waits_for_a_lock(database: Database, task: asyncio.Task[Any]) -> None:
    waiting = (
        select(func.count())
        .select_from(text("pg_stat_activity"))
        .where(text("datname = current_database() AND wait_event_type = 'Lock'"))
    )
    give_up = asyncio.get_running_loop().time() + 10
    while True:
        assert not task.done(), f"the create ended without waiting: {task.result()}"
        async with database.session() as session:
            if (await session.exec(waiting)).one():
                return
        assert asyncio.get_running_loop().time() < give_up, "the create never waited"
        await asyncio.sleep(0.02)


# --- limits ---------------------------------------------------------------------------------


async def test_200_parallel_creates_never_pass_the_platform_cap(
    api: FastAPI, settings: Settings, new_tenant: NewTenant, database: Database
) -> None:
    limited(api, settings, max_live_stores=7, tenant_store_limit=100, max_queued_stores=100)
    tenants = [await new_tenant(f"burst-{n}") for n in range(4)]

    responses = await asyncio.gather(
        *(tenants[n % 4].post(STORES, json={"name": f"Burst {n}"}) for n in range(200))
    )

    assert Counter(r.status_code for r in responses) == {202: 7, 429: 193}
    refused = next(r for r in responses if r.status_code == 429)
    assert_limit(refused, "platform-stores", 7)  # shared: others' deletions free it
    async with database.session() as session:
        assert len(list(await session.exec(select(Store.id)))) == 7


async def test_tenants_creating_at_once_each_get_exactly_their_cap(
    api: FastAPI,
    settings: Settings,
    new_tenant: NewTenant,
    database: Database,
    client: httpx.AsyncClient,
) -> None:
    """Creations in different tenants do not wait on one lock, and no count drifts: 20
    tenants ask for 10 stores each at once; each gets its 5."""
    limited(api, settings, tenant_store_limit=5, max_live_stores=1000, max_queued_stores=1000)
    tenants = [await new_tenant(f"parallel-{n}") for n in range(20)]

    responses = await asyncio.gather(
        *(tenants[n % 20].post(STORES, json={"name": f"Shop {n}"}) for n in range(200))
    )

    accepted = Counter(n % 20 for n, r in enumerate(responses) if r.status_code == 202)
    assert sorted(accepted.values()) == [5] * 20
    refused = [problem(r, 409) for r in responses if r.status_code != 202]
    assert len(refused) == 100
    assert {body["limit"] for body in refused} == {"tenant-stores"}
    listed = (await client.get("/api/v1/tenants")).json()
    assert [t["live_stores"] for t in listed if t["name"].startswith("parallel-")] == [5] * 20
    async with database.session() as session:
        counts = (await session.exec(select(PlatformCounts))).one()
    assert (counts.live, counts.queued) == (100, 100)


async def test_a_tenant_cap_holds_under_concurrency_and_frees_when_a_store_fails(
    api: FastAPI, settings: Settings, new_tenant: NewTenant, database: Database
) -> None:
    limited(api, settings, tenant_store_limit=3)
    capped, roomy = await new_tenant("capped"), await new_tenant("roomy", store_limit=10)

    responses = await asyncio.gather(
        *(capped.post(STORES, json={"name": f"Shop {n}"}) for n in range(30))
    )

    assert Counter(r.status_code for r in responses) == {202: 3, 409: 27}
    assert_cap(next(r for r in responses if r.status_code == 409), "tenant-stores", 3)
    for n in range(4):  # the tenant's own limit (10) overrides the default (3)
        await create(roomy, f"Roomy {n}")
    # A failed store's resources were cleaned up: it no longer counts.
    accepted = next(r for r in responses if r.status_code == 202).json()["id"]
    await set_status(database, accepted, StoreStatus.FAILED)
    await create(capped, "After a failure")


async def test_a_new_tenants_first_create_is_held_to_the_caps(
    api: FastAPI, settings: Settings, new_tenant: NewTenant, client: httpx.AsyncClient
) -> None:
    """The caps are named by the statement that reads the create's rate counters: a new key
    in a new tenant has none yet, and the caps hold all the same."""
    limited(api, settings, max_live_stores=1, tenant_store_limit=50)
    await create(client, "The platform's one")
    newcomer = await new_tenant("newcomer")

    refused = await newcomer.post(STORES, json={"name": "Mine"})

    assert_limit(refused, "platform-stores", 1)
    assert problem(refused, 429)["detail"] == "the platform holds its maximum of 1 store"


async def test_the_queue_cap_refuses_with_its_own_limit(
    api: FastAPI, settings: Settings, client: httpx.AsyncClient
) -> None:
    limited(api, settings, max_queued_stores=2, tenant_store_limit=50)
    await create(client, "One")
    await create(client, "Two")

    refused = await client.post(STORES, json={"name": "Three"})

    assert problem(refused, 429)["limit"] == "queued-stores"
    assert problem(refused, 429)["detail"] == (
        "the queue holds its maximum of 2 stores waiting to start; try again shortly"
    )
    assert refused.headers["Retry-After"] == "60"


async def test_a_create_refused_by_a_cap_is_counted_against_no_rate(
    api: FastAPI, settings: Settings, client: httpx.AsyncClient
) -> None:
    """The rate is taken in the creating transaction, so a cap's refusal rolls it back: a
    client that waits out a cap is not then refused by its rate."""
    limited(api, settings, max_queued_stores=1, tenant_store_limit=50, creates_per_minute=2)
    await create(client, "One")
    for _ in range(3):
        refused = await client.post(STORES, json={"name": "Two"})
        assert problem(refused, 429)["limit"] == "queued-stores"

    limited(api, settings, max_queued_stores=2, tenant_store_limit=50, creates_per_minute=2)
    await create(client, "Two")  # the rate's second of two: the refusals took none


async def test_the_create_rate_is_per_key(
    api: FastAPI, settings: Settings, new_tenant: NewTenant
) -> None:
    limited(api, settings, creates_per_minute=3)
    hasty, calm = await new_tenant("hasty"), await new_tenant("calm")

    statuses = [(await hasty.post(STORES, json={"name": f"H{n}"})).status_code for n in range(5)]
    refused = await hasty.post(STORES, json={"name": "Once more"})

    assert statuses == [202, 202, 202, 429, 429]
    body = problem(refused, 429)
    assert body["limit"] == "creates-per-minute"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert (await calm.post(STORES, json={"name": "Calm"})).status_code == 202


async def second_key(api: FastAPI, tenant: httpx.AsyncClient) -> httpx.AsyncClient:
    """Another client of ``tenant``, with a key the tenant made itself."""
    made = await tenant.post(KEYS, json={"name": "another"})
    assert made.status_code == 201, made.text
    return client_with(api, made.json()["token"])


def assert_limit(response: httpx.Response, limit: str, allowed: int) -> None:
    body = problem(response, 429)
    assert (body["limit"], body["allowed"]) == (limit, allowed)
    assert 1 <= int(response.headers["Retry-After"]) <= 300


def assert_cap(response: httpx.Response, cap: str, allowed: int) -> None:
    """A cap only deleting or revoking frees: a 409, never a 429 a client would retry."""
    body = problem(response, 409)
    assert (body["type"], body["limit"], body["allowed"]) == (
        "https://woostore.dev/problems/limit-reached", cap, allowed,
    )  # fmt: skip
    assert "Retry-After" not in response.headers


async def test_the_create_rate_is_per_tenant_too_whichever_key_asks(
    api: FastAPI, settings: Settings, new_tenant: NewTenant
) -> None:
    limited(api, settings, creates_per_minute=100, tenant_creates_per_minute=3)
    busy, calm = await new_tenant("busy"), await new_tenant("quiet")
    async with await second_key(api, busy) as other_key:
        await create(busy, "B1")
        await create(busy, "B2")
        await create(other_key, "B3")

        refused = await other_key.post(STORES, json={"name": "B4"})
        assert_limit(refused, "tenant-creates-per-minute", 3)
        assert int(refused.headers["Retry-After"]) <= 60
        assert_limit(await busy.post(STORES, json={"name": "B5"}), "tenant-creates-per-minute", 3)
    await create(calm, "Calm")


async def ready_store(client: httpx.AsyncClient, database: Database, name: str) -> str:
    store_id = str((await create(client, name))["id"])
    await set_status(database, store_id, StoreStatus.READY)
    return store_id


async def test_changes_share_a_rate_per_tenant(
    api: FastAPI, settings: Settings, new_tenant: NewTenant, database: Database
) -> None:
    limited(api, settings, tenant_changes_per_minute=2)
    busy, calm = await new_tenant("changing"), await new_tenant("steady")
    stores = [await ready_store(busy, database, f"Ready {n}") for n in range(3)]
    steady = await ready_store(calm, database, "Steady")
    async with database.session() as session:  # upgraded once: a revision to roll back to
        for store_id in stores:
            store = await session.get(Store, uuid.UUID(store_id))
            assert store is not None
            store.release_revision = 2
            session.add(store)
        await session.commit()

    async with await second_key(api, busy) as other_key:
        assert (await busy.post(f"{STORES}/{stores[0]}/upgrade")).status_code == 202
        assert (await other_key.post(f"{STORES}/{stores[1]}/rollback")).status_code == 202
        refused = await other_key.post(f"{STORES}/{stores[2]}/upgrade")
        assert_limit(refused, "tenant-changes-per-minute", 2)
        assert int(refused.headers["Retry-After"]) <= 60
        assert_limit(
            await busy.post(f"{STORES}/{stores[2]}/rollback"), "tenant-changes-per-minute", 2
        )
        # A backup and a settings change are refused by the same rate, and the words say
        # so (they named upgrades and rollbacks alone, then left settings changes out).
        for refused in (
            await busy.post(f"{STORES}/{stores[2]}/backups"),
            await busy.post(f"{STORES}/{stores[2]}/settings", json={"currency": "USD"}),
        ):
            assert_limit(refused, "tenant-changes-per-minute", 2)
            assert refused.json()["detail"] == (
                "this tenant may ask for 2 changes a minute: upgrades, rollbacks, settings "
                "changes, backups and restores together"
            )
        # Read before the work: a store in no state to change (upgrading) is refused by the
        # rate as well, not told its state (a 409) while the tenant is past its rate.
        assert_limit(
            await busy.post(f"{STORES}/{stores[0]}/upgrade"), "tenant-changes-per-minute", 2
        )
    assert (await busy.get(f"{STORES}/{stores[2]}")).json()["status"] == "ready"  # untouched
    assert (await calm.post(f"{STORES}/{steady}/upgrade")).status_code == 202


async def test_a_tenants_live_keys_are_capped_under_concurrency_and_free_up_on_revoking(
    api: FastAPI, settings: Settings, client: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    limited(api, settings, tenant_key_limit=5)
    minting = await new_tenant("minting")  # holds one key already
    tenant_id = (await minting.get(SESSION)).json()["tenant_id"]

    responses = await asyncio.gather(
        *(minting.post(KEYS, json={"name": f"key {n}"}) for n in range(20))
    )

    assert Counter(r.status_code for r in responses) == {201: 4, 409: 16}
    refused = next(r for r in responses if r.status_code == 409)
    assert_cap(refused, "tenant-keys", 5)
    assert refused.json()["detail"] == "this tenant has its maximum of 5 keys; revoke one first"
    # The cap is the tenant's, whoever makes the key; a revoked key frees a place.
    made_by_admin = await client.post(KEYS, json={"name": "by admin", "tenant_id": tenant_id})
    assert_cap(made_by_admin, "tenant-keys", 5)
    revoked = next(r for r in responses if r.status_code == 201).json()["id"]
    assert (await minting.delete(f"{KEYS}/{revoked}")).status_code == 200
    assert (await minting.post(KEYS, json={"name": "replacement"})).status_code == 201


async def test_an_idempotent_replay_is_not_refused_by_a_limit(
    api: FastAPI, settings: Settings, client: httpx.AsyncClient
) -> None:
    limited(api, settings, creates_per_minute=1)
    headers = {"Idempotency-Key": "retry-me"}
    first = await client.post(STORES, json={"name": "Once"}, headers=headers)
    again = await client.post(STORES, json={"name": "Once"}, headers=headers)

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"]
    # Another request is refused, and the words count one store right.
    refused = await client.post(STORES, json={"name": "Twice"})
    assert problem(refused, 429)["detail"] == "this key may create 1 store a minute"


# --- names ----------------------------------------------------------------------------------


async def test_a_name_is_measured_after_normalisation(client: httpx.AsyncClient) -> None:
    decomposed = unicodedata.normalize("NFD", "é" * 50)  # 100 code points, 50 characters
    assert len(decomposed) == 100

    store = await create(client, decomposed)

    assert store["name"] == "é" * 50
    problem(await client.post(STORES, json={"name": "é" * 51}), 422)


# --- the audit log --------------------------------------------------------------------------


async def test_the_audit_log_says_who_did_what_when_and_from_where(
    client: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    shop = await new_tenant("audited")
    store = await create(shop, "Audited")
    await shop.delete(f"{STORES}/{store['id']}")  # cancels it
    await shop.delete(f"{STORES}/{store['id']}")  # already deleting: one deletion, one entry

    entries = (await shop.get("/api/v1/audit")).json()["items"]

    # Newest first; the admin's making of the tenant and its key concern the tenant too.
    actions = [e["action"] for e in entries]
    assert actions == ["store.delete", "store.create", "key.create", "tenant.create"]
    assert [e["actor"] for e in entries][2:] == ["admin-token", "admin-token"]
    entry = entries[1]
    assert entry["target"] == f"store/{store['id']}"
    assert entry["actor"].startswith("wsk_")
    assert entry["actor_role"] == "tenant"
    assert entry["source_ip"] == "127.0.0.1"
    assert entry["user_agent"].startswith("python-httpx")
    assert entry["time"]
    assert (await client.get("/api/v1/audit")).json()["items"] == entries


async def test_a_tenant_reads_only_its_own_audit_entries(
    client: httpx.AsyncClient, new_tenant: NewTenant, database: Database
) -> None:
    first, second = await new_tenant("first"), await new_tenant("second")
    await create(first, "First's")
    await create(second, "Second's")
    second_id = (await second.get(SESSION)).json()["tenant_id"]

    seen = (await first.get("/api/v1/audit")).json()["items"]
    problem(await first.get("/api/v1/audit", params={"tenant_id": second_id}), 403)

    async with database.session() as session:
        theirs = list(
            await session.exec(
                select(AuditEntry).where(col(AuditEntry.tenant_id) == uuid.UUID(second_id))
            )
        )
    assert theirs
    assert {e["id"] for e in seen}.isdisjoint({e.id for e in theirs})
    only_second = (await client.get("/api/v1/audit", params={"tenant_id": second_id})).json()
    assert {e["id"] for e in only_second["items"]} == {e.id for e in theirs}


async def test_audit_pages_follow_the_cursor(client: httpx.AsyncClient) -> None:
    for n in range(5):
        await create(client, f"Paged {n}")
    seen: list[int] = []
    cursor: int | None = None
    while True:
        params = {"limit": "2", **({"cursor": str(cursor)} if cursor else {})}
        page = (await client.get("/api/v1/audit", params=params)).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == len(set(seen)) == 5


async def test_the_last_audit_page_has_no_cursor_even_when_full(client: httpx.AsyncClient) -> None:
    """A cursor says more entries are left: a last page exactly `limit` long led to an empty
    one, and `woostore audit` said more were left."""
    for n in range(4):
        await create(client, f"Even {n}")

    first = (await client.get("/api/v1/audit", params={"limit": "2"})).json()
    last = (
        await client.get("/api/v1/audit", params={"limit": "2", "cursor": first["next_cursor"]})
    ).json()

    assert len(first["items"]) == len(last["items"]) == 2
    assert last["next_cursor"] is None


@pytest.mark.parametrize(
    "cursor",
    ["not-a-cursor", "0", "-1", "1.5", " 7", "\u0667", str(2**63)],
    ids=["words", "zero", "negative", "fraction", "spaced", "arabic digit", "past bigint"],
)
async def test_an_audit_cursor_no_page_gave_is_the_400_a_stores_cursor_is(
    client: httpx.AsyncClient, cursor: str
) -> None:
    """The audit log answered 422 "Invalid request" where the stores answer 400 "Invalid
    cursor": one mistake, two answers, for a client that pages through both."""
    audit = problem(await client.get(AUDIT, params={"cursor": cursor}), 400)
    stores = problem(await client.get(STORES, params={"cursor": "not-a-cursor"}), 400)

    assert audit == {**stores, "instance": AUDIT}


@pytest.mark.parametrize("given", [True, "3", 2.0])
async def test_a_store_limit_is_a_whole_number_as_json_writes_one(
    client: httpx.AsyncClient, given: object
) -> None:
    """true was taken for a limit of 1 and "3" for 3, where a name given as 5 is refused."""
    made = await client.post("/api/v1/tenants", json={"name": "strict", "store_limit": 4})
    path = f"/api/v1/tenants/{made.json()['id']}"

    problem(await client.post("/api/v1/tenants", json={"name": "lax", "store_limit": given}), 422)
    problem(await client.patch(path, json={"store_limit": given}), 422)
    assert (await client.patch(path, json={"store_limit": 3})).json()["store_limit"] == 3


async def test_the_notifiers_are_told_each_time_a_key_stops_working(
    client: httpx.AsyncClient, new_tenant: NewTenant, nats_client: Client
) -> None:
    """Revoking a key, suspending a tenant and deleting one each tell the notifiers as they
    commit (they end the event streams of the keys withdrawn then, not at their next
    sweep); resuming a tenant, or a change that withdraws nothing, tells them nothing. One
    connection's messages arrive in order: one told wrongly would take another's place."""
    told: asyncio.Queue[str] = asyncio.Queue()

    async def heard(message: Msg) -> None:
        told.put_nowait(message.data.decode())

    await nats_client.subscribe(ACCESS_WITHDRAWN, cb=heard)
    await nats_client.flush()
    leaving = await new_tenant("leaving")
    tenant_id = (await leaving.get(SESSION)).json()["tenant_id"]
    made = (await client.post(KEYS, json={"name": "laptop"})).json()

    assert (await client.delete(f"{KEYS}/{made['id']}")).status_code == 200
    assert (await client.patch(f"{TENANTS}/{tenant_id}", json={"suspended": True})).is_success
    assert (await client.patch(f"{TENANTS}/{tenant_id}", json={"suspended": False})).is_success
    assert (await client.patch(f"{TENANTS}/{tenant_id}", json={"store_limit": 3})).is_success
    assert (await client.delete(f"{TENANTS}/{tenant_id}")).status_code == 200

    async with asyncio.timeout(10):
        heard_of = [await told.get() for _ in range(3)]
    assert heard_of == ["key.revoke", "tenant.suspend", "tenant.delete"]
