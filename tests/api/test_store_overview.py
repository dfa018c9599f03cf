"""What a dashboard of thousands of stores asks the API: stores by name, how many are in each
status, and, for an admin, making a store for a tenant."""

from __future__ import annotations

import uuid

import httpx

from tests.api.conftest import NewTenant
from tests.api.http import STORES, create, problem
from tests.api.test_api_stores import event_rows, set_columns
from woostore_shared.db import Database
from woostore_shared.models import StoreStatus

COUNTS = f"{STORES}/counts"


async def test_the_list_finds_stores_by_any_part_of_their_name_in_any_case(
    client: httpx.AsyncClient,
) -> None:
    corner, _, café = [await create(client, n) for n in ("Corner Shop", "Bakery", "Café Corner")]
    await create(client, "100% cotton_shop")

    def found(q: str) -> list[str]:
        return [s["id"] for s in response_items[q]]

    response_items = {
        q: (await client.get(STORES, params={"q": q})).json()["items"]
        for q in ("corner", "CAFÉ", "%", "_", "nothing like it")
    }
    assert found("corner") == [café["id"], corner["id"]]
    assert found("CAFÉ") == [café["id"]]
    assert [s["name"] for s in response_items["%"]] == ["100% cotton_shop"]  # not a wildcard
    assert [s["name"] for s in response_items["_"]] == ["100% cotton_shop"]
    assert found("nothing like it") == []
    problem(await client.get(STORES, params={"q": "x" * 51}), 422)
    problem(await client.get(STORES, params={"q": "nul\x00"}), 422)


async def test_counts_are_per_status_and_of_the_callers_stores_only(
    client: httpx.AsyncClient, new_tenant: NewTenant, database: Database
) -> None:
    theirs = await new_tenant("theirs")
    ours = [await create(client, f"Ours {n}") for n in range(3)]
    await create(theirs, "Theirs")
    await set_columns(database, ours[0]["id"], status=StoreStatus.READY)
    await set_columns(database, ours[1]["id"], status=StoreStatus.DELETED)

    everyone = (await client.get(COUNTS)).json()
    their_own = (await theirs.get(COUNTS)).json()

    assert everyone == {"total": 3, "by_status": {"queued": 2, "ready": 1, "deleted": 1}}
    assert their_own == {"total": 1, "by_status": {"queued": 1}}
    tenant_id = (await theirs.get("/api/v1/session")).json()["tenant_id"]
    assert (await client.get(COUNTS, params={"tenant_id": tenant_id})).json() == their_own
    problem(await theirs.get(COUNTS, params={"tenant_id": str(uuid.uuid4())}), 403)


async def test_an_admin_makes_a_store_for_a_tenant_which_is_then_theirs(
    client: httpx.AsyncClient, new_tenant: NewTenant, database: Database
) -> None:
    theirs = await new_tenant("theirs", store_limit=1)
    tenant_id = (await theirs.get("/api/v1/session")).json()["tenant_id"]

    made = await client.post(STORES, json={"name": "For them", "tenant_id": tenant_id})

    assert made.status_code == 202, made.text
    assert [s["id"] for s in (await theirs.get(STORES)).json()["items"]] == [made.json()["id"]]
    [requested] = await event_rows(database, made.json()["id"])
    assert requested.envelope["tenantid"] == tenant_id  # their event stream shows it
    # It counts against that tenant's cap, not the admin's.
    full = await client.post(STORES, json={"name": "One more", "tenant_id": tenant_id})
    assert problem(full, 409)["limit"] == "tenant-stores"


async def test_only_an_admin_makes_a_store_for_another_tenant_and_only_for_one_that_exists(
    client: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    theirs, mine = await new_tenant("theirs"), await new_tenant("mine")
    their_id = (await theirs.get("/api/v1/session")).json()["tenant_id"]
    my_id = (await mine.get("/api/v1/session")).json()["tenant_id"]

    problem(await mine.post(STORES, json={"name": "Not mine", "tenant_id": their_id}), 403)
    assert (await mine.post(STORES, json={"name": "Mine", "tenant_id": my_id})).status_code == 202
    unknown = str(uuid.uuid4())
    assert (
        unknown
        in problem(await client.post(STORES, json={"name": "Nobody's", "tenant_id": unknown}), 404)[
            "detail"
        ]
    )
    assert (await theirs.get(STORES)).json()["items"] == []


async def test_the_list_takes_several_statuses_at_once(
    client: httpx.AsyncClient, database: Database
) -> None:
    ready, deleted, _ = [await create(client, n) for n in ("Ready", "Deleted", "Queued")]
    await set_columns(database, ready["id"], status=StoreStatus.READY)
    await set_columns(database, deleted["id"], status=StoreStatus.DELETED)

    def names(response: httpx.Response) -> list[str]:
        return [s["name"] for s in response.json()["items"]]

    both = await client.get(STORES, params={"status": ["queued", "deleted"]})
    assert names(both) == ["Queued", "Deleted"]
    assert names(await client.get(STORES, params={"status": "deleted"})) == ["Deleted"]
    assert names(await client.get(STORES)) == ["Queued", "Ready"]  # deleted: when asked for
    problem(await client.get(STORES, params={"status": ["ready", "sleeping"]}), 422)


async def test_each_tenant_shows_its_live_stores_against_its_cap(
    client: httpx.AsyncClient, new_tenant: NewTenant, database: Database
) -> None:
    capped, default = await new_tenant("capped", store_limit=3), await new_tenant("unlimited")
    kept, gone = await create(capped, "Kept"), await create(capped, "Gone")
    await set_columns(database, gone["id"], status=StoreStatus.DELETED)  # no longer counts
    await set_columns(database, kept["id"], status=StoreStatus.READY)

    tenants = {t["name"]: t for t in (await client.get("/api/v1/tenants")).json()}

    assert (tenants["capped"]["live_stores"], tenants["capped"]["store_cap"]) == (1, 3)
    # No limit of its own: the platform's default (10) is in force.
    assert tenants["unlimited"]["store_limit"] is None
    assert (tenants["unlimited"]["live_stores"], tenants["unlimited"]["store_cap"]) == (0, 10)
    raised = await client.patch(
        f"/api/v1/tenants/{tenants['capped']['id']}", json={"store_limit": 5}
    )
    assert (raised.json()["live_stores"], raised.json()["store_cap"]) == (1, 5)
    problem(await default.get("/api/v1/tenants"), 403)
