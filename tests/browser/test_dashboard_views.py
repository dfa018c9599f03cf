"""The dashboard's views beyond one store's card, in a real Chromium against the real platform:
10,000 stores counted, searched, filtered and paged; a store's steps with their durations and
the time left (once every step to go was measured), complete across a notifier killed
midway; API keys made, shown once and revoked; an admin's tenants and tenant picker. Every
view passes the axe-core accessibility engine with no serious or critical violation."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, Route, expect
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.browser.test_dashboard import (
    PROVISION_STEPS,
    SHORT,
    card,
    create_by_api,
    create_from_form,
    get_json,
    sign_in,
    signed_in,
)
from tests.e2e.conftest import Platform
from woostore_devstack.platform import running_platform
from woostore_shared.db import Database
from woostore_shared.models import (
    DEFAULT_TENANT_ID,
    Store,
    StoreStatus,
    StoreStep,
    namespace_for,
    utcnow,
)
from woostore_shared.settings import Settings

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
# A store here takes about 15 s: long enough to kill the notifier while it is under way.
TIME_SCALE = "0.2"
PROVISIONING = 120_000  # ms
MANY = 10_000
KEY_LIST = re.compile(r"/api/v1/keys(\?.*)?$")  # the keys view's list, not one key


async def held_until(answer: asyncio.Event, route: Route) -> None:
    """Lets a request through only once ``answer`` is set: what the page shows meanwhile."""
    await answer.wait()
    await route.continue_()


@pytest.fixture
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(
        tmp_path_factory.mktemp("platform"),
        WOOSTORE_SIM_TIME_SCALE=TIME_SCALE,
        WOOSTORE_MAX_LIVE_STORES=str(2 * MANY),
    ) as running:
        yield running


async def assert_accessible(page: Page, view: str) -> None:
    """axe-core on the page as it is now: no serious or critical violation."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `make axe` (npm ci --prefix tests/browser)")
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        # Evaluated over the DevTools protocol, so the page's CSP (no inline scripts) holds.
        await page.evaluate(AXE.read_text() + "\n;undefined")
    results: dict[str, Any] = await page.evaluate(
        "() => axe.run(document, { resultTypes: ['violations'] })"
    )
    severe = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not severe, f"{view}: {severe}"


async def api_call(platform: Platform, method: str, path: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(base_url=platform.api_url, headers=platform.headers) as api:
        response = await api.request(method, path, **kwargs)
    assert response.is_success, response.text
    return response.json() if response.content else None


@asynccontextmanager
async def platform_session(platform: Platform) -> AsyncIterator[AsyncSession]:
    """A session on the platform's database, to put there what would take long to make."""
    database = Database(Settings(database_url=platform.postgres.url).database_url)
    try:
        async with database.session() as session:
            yield session
    finally:
        await database.dispose()


async def add_ready_stores(platform: Platform, tenant_id: str, count: int) -> None:
    """``count`` stores straight into the database, newest last, every 1000th failed: what a
    busy platform has, without provisioning each."""
    start = utcnow() - timedelta(days=1)
    async with platform_session(platform) as session:
        session.add_all(
            Store(
                tenant_id=uuid.UUID(tenant_id),
                name=f"Bulk Shop {n:05d}",
                slug=f"bulk-{n:05d}",
                namespace=f"store-bulk-{n:05d}",
                status=StoreStatus.FAILED if n % 1000 == 0 else StoreStatus.READY,
                failure_reason="seeded as failed" if n % 1000 == 0 else None,
                simulated=True,
                settings={
                    "currency": "EUR",
                    "country": "DE",
                    "language": "en_US",
                    "sample_products": True,
                },
                correlation_id=str(uuid.uuid4()),
                created_at=start + timedelta(seconds=n),
                updated_at=start + timedelta(seconds=n),
            )
            for n in range(count)
        )
        await session.commit()


# A platform of its own: 10,000 stores seeded, the reaper stopped, and an admin's counts.
async def test_ten_thousand_stores_are_counted_searched_filtered_and_paged(
    page: Page, platform: Platform
) -> None:
    bulk = await api_call(
        platform, "POST", "/api/v1/tenants", json={"name": "bulk", "store_limit": MANY}
    )
    await api_call(platform, "POST", "/api/v1/tenants", json={"name": "empty"})
    # Their namespaces are in no cluster: the reaper would fail them all, as it should.
    await asyncio.to_thread(platform.stop, "reaper")
    await add_ready_stores(platform, bulk["id"], MANY)
    await signed_in(page, platform)
    cards = page.get_by_test_id("store-card")
    more = page.get_by_test_id("stores-more")

    # A page at a time, newest first; the counts are of all of them.
    await expect(cards).to_have_count(50, timeout=SHORT)
    await expect(cards.first.locator("h3")).to_have_text(f"Bulk Shop {MANY - 1:05d}")
    await expect(page.get_by_test_id("filter-all")).to_have_text("All 10,000", timeout=SHORT)
    await expect(page.get_by_test_id("filter-failed")).to_have_text("Failed 10")
    await expect(page.get_by_test_id("store-counts")).to_have_text(
        "10000 stores: 9990 ready · 10 failed"
    )
    await assert_accessible(page, "stores")
    await more.click()
    await expect(cards).to_have_count(100, timeout=SHORT)
    await expect(cards.nth(99).locator("h3")).to_have_text(f"Bulk Shop {MANY - 100:05d}")

    # By name, from all 10,000, not only those read.
    search = page.get_by_test_id("store-search")
    await search.fill("shop 00042")
    await expect(cards).to_have_count(1, timeout=SHORT)
    await expect(cards.locator("h3")).to_have_text("Bulk Shop 00042")
    await expect(more).to_be_hidden()
    # Two pages of them, the second read by keyboard: the button goes with the last page, and
    # focus moves to the first store it brought, not back to the top of the page.
    await search.fill("shop 000")
    await expect(cards).to_have_count(50, timeout=SHORT)
    await more.focus()
    await page.keyboard.press("Enter")
    await expect(cards).to_have_count(100, timeout=SHORT)
    await expect(more).to_be_hidden()
    await expect(page.locator(":focus")).to_have_text("Bulk Shop 00049")
    await search.fill("no such shop")
    await expect(page.get_by_test_id("stores-empty")).to_have_text("No stores match.")
    await search.fill("")
    await expect(cards).to_have_count(50, timeout=SHORT)

    # By status: the ten failed ones, the last page of them.
    await page.get_by_test_id("filter-failed").click()
    await expect(cards).to_have_count(10, timeout=SHORT)
    await expect(cards.first.get_by_test_id("store-failure")).to_have_text(
        "Failed: seeded as failed"
    )
    await expect(more).to_be_hidden()

    # An admin's tenant picker narrows the list and its counts to one tenant.
    picker = page.get_by_test_id("tenant-picker")
    await picker.select_option(label="empty")
    await expect(cards).to_have_count(0, timeout=SHORT)
    await expect(page.get_by_test_id("filter-all")).to_have_text("All 0", timeout=SHORT)
    await picker.select_option(label="bulk")
    await expect(cards).to_have_count(10, timeout=SHORT)

    # The tenants view: each tenant's live stores against its cap.
    await page.get_by_test_id("nav-tenants").click()
    row = page.get_by_test_id("tenant-row").filter(has_text="bulk")
    await expect(row.get_by_test_id("tenant-usage")).to_have_text("9990 of 10000", timeout=SHORT)
    empty_row = page.get_by_test_id("tenant-row").filter(has_text="empty")
    await expect(empty_row.get_by_test_id("tenant-usage")).to_have_text("0 of 1000")
    await assert_accessible(page, "tenants")
    await empty_row.get_by_role("button", name="Show stores of empty").click()
    await expect(page).to_have_url(re.compile("#stores$"))
    await expect(picker).to_have_value(await empty_row.get_attribute("data-tenant-id") or "")

    # At a phone's width nothing runs off the side, and it is as accessible.
    await page.set_viewport_size({"width": 390, "height": 844})
    overflow = await page.evaluate(
        "() => document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
    )
    assert overflow == 0, f"{overflow}px wider than a phone"
    await assert_accessible(page, "stores, at a phone's width")

    # A store made for the picked tenant is theirs.
    await expect(page.get_by_test_id("create-tenant")).to_have_value(
        await empty_row.get_attribute("data-tenant-id") or ""
    )
    made = await create_from_form(page, "For Empty")
    assert (await get_json(platform, f"/api/v1/stores/{made}"))["name"] == "For Empty"
    empty_id = await empty_row.get_attribute("data-tenant-id")
    theirs = await get_json(platform, f"/api/v1/stores?tenant_id={empty_id}")
    assert [s["id"] for s in theirs["items"]] == [made]


async def measured_first_steps(platform: Platform, steps: list[str]) -> None:
    """The step journal of one store, long deleted, that finished only ``steps`` of the
    provision recipe: all a new platform has measured while its first store is under way."""
    store = Store(
        tenant_id=DEFAULT_TENANT_ID, name="Half Made", slug="half-made",
        namespace=namespace_for("half-made"), status=StoreStatus.DELETED, simulated=True,
        settings={}, correlation_id=uuid.uuid4().hex,
    )  # fmt: skip
    async with platform_session(platform) as session:
        session.add(store)
        await session.flush()
        session.add_all(
            StoreStep(store_id=store.id, phase="provision", name=name, position=n, seconds=1.0)
            for n, name in enumerate(steps, start=1)
        )
        await session.commit()


# A platform of its own: the step times measured are the platform's, only those it seeds.
async def test_no_time_left_is_shown_until_every_step_to_go_was_measured(
    page: Page, platform: Platform
) -> None:
    """Three steps measured of eleven: a store at its fourth is not "finishing"."""
    await measured_first_steps(platform, ["namespace", "credentials", "helm_release"])
    await signed_in(page, platform)

    store_id = await create_from_form(page, "First Real Shop")

    watched = card(page, store_id)
    await expect(watched.get_by_test_id("store-step")).to_have_text(
        re.compile(rf"^Step 4 of {PROVISION_STEPS}"), timeout=PROVISIONING
    )
    shown = await watched.get_by_test_id("store-eta").text_content()
    assert re.fullmatch(r"(\d+\.\d s|\d+ s|\d+ min \d\d s) elapsed", shown or ""), shown
    timeline = watched.get_by_test_id("store-timeline")
    await timeline.locator("summary").click()
    pending = await timeline.locator("[data-state='pending']").text_content()
    assert re.fullmatch(r"\d+ more steps?", pending or ""), pending  # no "usually" either


# A platform of its own: kills the notifier.
async def test_the_timeline_ends_complete_across_a_notifier_killed_midway(
    page: Page, platform: Platform
) -> None:
    await signed_in(page, platform)
    # One store made first, so the platform has step times to estimate the next from.
    first = await create_by_api(platform, "First Shop")
    await expect(card(page, first["id"])).to_have_attribute(
        "data-status", "ready", timeout=PROVISIONING
    )
    notice = page.get_by_test_id("notice").filter(has_text="“First Shop” is ready.")
    await expect(notice).to_be_visible(timeout=SHORT)

    store_id = await create_from_form(page, "Watched Shop")
    watched = card(page, store_id)
    eta = watched.get_by_test_id("store-eta")
    await expect(eta).to_have_text(
        re.compile(r"^(\d+\.\d s|\d+ s|\d+ min \d\d s) elapsed · (about \d.* left|finishing)$"),
        timeout=PROVISIONING,
    )
    await expect(watched.get_by_test_id("store-step")).to_have_text(
        re.compile(rf"^Step [2-5] of {PROVISION_STEPS}"), timeout=PROVISIONING
    )
    timeline = watched.get_by_test_id("store-timeline")
    await timeline.locator("summary").click()
    await expect(timeline.locator("[data-state='running']")).to_have_count(1, timeout=SHORT)
    await assert_accessible(page, "a store's timeline under way")

    # Killed with the store under way; it goes on without anyone watching.
    killed = platform.processes["notifier"]
    killed.kill()
    await asyncio.to_thread(killed.wait)
    await asyncio.to_thread(platform.stop, "notifier")
    assert await watched.get_attribute("data-status") == "provisioning", "finished too soon"
    connection = page.get_by_test_id("connection-state")
    await expect(connection).to_have_attribute("data-state", "reconnecting", timeout=SHORT)
    await wait_for_status(platform, store_id, "ready", deadline=PROVISIONING / 1000)
    await expect(watched).to_have_attribute("data-status", "provisioning")

    # Back: the stream resumes where the page left off, and the steps missed arrive.
    await asyncio.to_thread(platform.start, "notifier")
    await expect(connection).to_have_attribute("data-state", "live", timeout=PROVISIONING)
    await expect(watched).to_have_attribute("data-status", "ready", timeout=SHORT)
    steps = timeline.get_by_test_id("timeline-step")
    await expect(steps).to_have_count(PROVISION_STEPS)
    await expect(timeline.locator("[data-state='done']")).to_have_count(PROVISION_STEPS)
    texts = await steps.all_text_contents()
    for n, text in enumerate(texts, start=1):
        assert re.match(rf"^Step {n} of {PROVISION_STEPS} — .+\d+(\.\d)? s$", text), texts
    await expect(timeline.locator("summary")).to_have_text(
        re.compile(rf"^Steps · {PROVISION_STEPS} of {PROVISION_STEPS} in \d")
    )
    await expect(eta).to_be_hidden()
    await expect(
        page.get_by_test_id("notice").filter(has_text="“Watched Shop” is ready.")
    ).to_be_visible(timeout=SHORT)

    # Its activity, longer than its box: a list that scrolls, which a keyboard reaches too
    # (axe's scrollable-region-focusable, a user's review).
    await watched.locator('[data-role="activity"] summary').click()
    activity = watched.locator('[data-role="activity-list"]')
    await expect(activity).to_contain_text("Store is ready", timeout=SHORT)
    assert await activity.evaluate("list => list.scrollHeight > list.clientHeight")
    await assert_accessible(page, "a store's activity, longer than its box")


async def wait_for_status(platform: Platform, store_id: str, status: str, deadline: float) -> None:
    give_up = time.monotonic() + deadline
    while (await get_json(platform, f"/api/v1/stores/{store_id}"))["status"] != status:
        assert time.monotonic() < give_up, f"{store_id} not {status} after {deadline}s"
        await asyncio.sleep(0.2)


async def test_a_tenant_makes_a_key_sees_it_once_and_revokes_it(
    page: Page, tenant: Platform
) -> None:
    await expect(page.get_by_test_id("signin-token")).to_be_visible(timeout=SHORT)
    await assert_accessible(page, "sign-in")
    await sign_in(page, tenant.token)
    await expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=SHORT
    )
    # A tenant's key has no tenants view and no picker.
    await expect(page.get_by_test_id("nav-tenants")).to_be_hidden()
    await expect(page.get_by_test_id("tenant-picker")).to_be_hidden()
    await expect(page.get_by_test_id("stores-empty")).to_be_visible(timeout=SHORT)
    await assert_accessible(page, "stores, empty")

    await page.get_by_test_id("nav-keys").click()
    rows = page.get_by_test_id("key-row")
    await expect(rows).to_have_count(1, timeout=SHORT)  # the one signed in with
    await expect(page.get_by_test_id("key-role")).to_be_hidden()  # tenant keys only
    await page.get_by_test_id("key-create").click()
    await expect(page.locator("#key-error")).to_be_visible()
    await page.get_by_test_id("key-name").fill("ci deploys")
    await page.get_by_test_id("key-create").click()

    token = page.get_by_test_id("new-key-token")
    await expect(token).to_have_text(re.compile(r"^wsk_"), timeout=SHORT)
    new_token = await token.text_content()
    assert new_token
    await expect(rows).to_have_count(2)
    ci_row = rows.filter(has_text="ci deploys")
    await expect(ci_row.get_by_test_id("key-state")).to_have_text("Active")
    await assert_accessible(page, "keys, a new key shown")
    async with httpx.AsyncClient(base_url=tenant.api_url) as api:
        headers = {"Authorization": f"Bearer {new_token}"}
        assert (await api.get("/api/v1/stores", headers=headers)).status_code == 200

    # Shown once: gone when the view is left and come back to. Coming back reloads the
    # list; a Revoke button reached before the reload answers keeps its focus through it.
    await page.get_by_test_id("nav-stores").click()
    answer = asyncio.Event()
    await page.route(KEY_LIST, lambda route: held_until(answer, route))
    await page.get_by_test_id("nav-keys").click()
    await expect(page.get_by_test_id("new-key")).to_be_hidden()
    await expect(page.get_by_test_id("key-table")).to_have_attribute("aria-busy", "true")
    await ci_row.get_by_test_id("key-revoke").focus()
    answer.set()
    await expect(page.get_by_test_id("key-table")).to_have_attribute("aria-busy", "false")
    await page.unroute(KEY_LIST)
    await expect(rows).to_have_count(2)

    # Revoked once confirmed (by keyboard): it stops working at once.
    await expect(ci_row.get_by_test_id("key-revoke")).to_be_focused()
    await page.keyboard.press("Enter")
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_contain_text("ci deploys")
    await assert_accessible(page, "keys, confirming a revocation")
    await page.keyboard.press("Tab")  # from Cancel to Revoke key
    await page.keyboard.press("Enter")
    await expect(ci_row.get_by_test_id("key-state")).to_have_text("Revoked", timeout=SHORT)
    await expect(ci_row.get_by_test_id("key-revoke")).to_have_count(0)
    async with httpx.AsyncClient(base_url=tenant.api_url) as api:
        headers = {"Authorization": f"Bearer {new_token}"}
        assert (await api.get("/api/v1/stores", headers=headers)).status_code == 401


async def test_an_admin_deletes_a_tenant_once_its_stores_are_deleted(
    page: Page, shared_platform: Platform
) -> None:
    leaving = await api_call(shared_platform, "POST", "/api/v1/tenants", json={"name": "leaving"})
    store = await api_call(
        shared_platform,
        "POST",
        "/api/v1/stores",
        json={"name": "Last Shop", "tenant_id": leaving["id"]},
    )
    await signed_in(page, shared_platform)
    await page.get_by_test_id("nav-tenants").click()
    rows = page.get_by_test_id("tenant-row")
    row = rows.filter(has_text="leaving")
    # The admin's own tenant is not its to delete: no button for it.
    await expect(rows.filter(has_text="default").get_by_test_id("tenant-delete")).to_have_count(0)

    async def delete_confirmed() -> None:
        await row.get_by_test_id("tenant-delete").click()
        await expect(page.locator("#confirm-dialog")).to_contain_text("“leaving” can be deleted")
        await page.locator("#confirm-button").click()

    # Refused while it has a store, and the alert says why.
    await delete_confirmed()
    alert = page.get_by_test_id("alert")
    await expect(alert).to_contain_text("tenant 'leaving' still has 1 store", timeout=SHORT)
    await assert_accessible(page, "tenants, a deletion refused")
    await alert.get_by_test_id("alert-dismiss").click()

    await api_call(shared_platform, "DELETE", f"/api/v1/stores/{store['id']}")
    give_up = time.monotonic() + PROVISIONING / 1000
    while (await get_json(shared_platform, f"/api/v1/stores/{store['id']}"))["status"] != "deleted":
        assert time.monotonic() < give_up, "the store was not deleted in time"
        await asyncio.sleep(0.2)
    await delete_confirmed()

    await expect(row).to_have_count(0, timeout=SHORT)
    await expect(rows.filter(has_text="default")).to_have_count(1)
    async with httpx.AsyncClient(
        base_url=shared_platform.api_url, headers=shared_platform.headers
    ) as api:
        assert (await api.get(f"/api/v1/tenants/{leaving['id']}")).status_code == 404
    # Listed among the deleted when asked for (as the API and the CLI list it), to be read only.
    await page.get_by_test_id("tenant-show-deleted").check()
    await expect(row.get_by_test_id("tenant-deleted")).to_contain_text("deleted ", timeout=SHORT)
    await expect(row.get_by_role("button")).to_have_count(0)
    await assert_accessible(page, "tenants, the deleted ones shown")
    picker = page.get_by_test_id("tenant-picker")
    await expect(picker.locator("option", has_text="leaving")).to_have_count(0)
    await page.get_by_test_id("tenant-show-deleted").uncheck()
    await expect(row).to_have_count(0, timeout=SHORT)


async def test_an_admin_suspends_a_tenant_and_resumes_it(
    page: Page, shared_platform: Platform
) -> None:
    paused = await api_call(shared_platform, "POST", "/api/v1/tenants", json={"name": "paused"})
    await api_call(
        shared_platform,
        "POST",
        "/api/v1/stores",
        json={"name": "Paused Shop", "tenant_id": paused["id"]},
    )
    key = await api_call(
        shared_platform, "POST", "/api/v1/keys", json={"name": "till", "tenant_id": paused["id"]}
    )
    await signed_in(page, shared_platform)
    await page.get_by_test_id("nav-tenants").click()
    rows = page.get_by_test_id("tenant-row")
    row = rows.filter(has_text="paused")
    await expect(rows.filter(has_text="default").get_by_test_id("tenant-suspend")).to_have_count(0)

    async def answer_to_its_key() -> int:
        async with httpx.AsyncClient(base_url=shared_platform.api_url) as api:
            headers = {"Authorization": f"Bearer {key['token']}"}
            return (await api.get("/api/v1/stores", headers=headers)).status_code

    await row.get_by_test_id("tenant-suspend").click()
    await expect(page.locator("#confirm-dialog")).to_contain_text("its stores keep serving")
    await page.locator("#confirm-button").click()
    await expect(row.get_by_test_id("tenant-suspended")).to_be_visible(timeout=SHORT)
    await expect(row.get_by_test_id("tenant-suspend")).to_have_text("Resume")
    await expect(row.get_by_test_id("tenant-suspend")).to_be_focused()
    await assert_accessible(page, "tenants, one suspended")
    assert await answer_to_its_key() == 401
    # Where an admin picks it, to list its stores or make one for it, it is marked too, and
    # on its stores' cards.
    for picker in ("tenant-picker", "create-tenant"):
        option = page.get_by_test_id(picker).locator(f"option[value='{paused['id']}']")
        await expect(option).to_have_text("paused (suspended)")
    await page.get_by_test_id("nav-stores").click()
    card = page.get_by_test_id("store-card").filter(has_text="Paused Shop")
    await expect(card.get_by_test_id("store-tenant")).to_have_text("paused (suspended)")
    await page.get_by_test_id("nav-tenants").click()

    await row.get_by_test_id("tenant-suspend").click()  # resumed at once: nothing is lost
    await expect(row.get_by_test_id("tenant-suspended")).to_have_count(0, timeout=SHORT)
    await expect(row.get_by_test_id("tenant-suspend")).to_have_text("Suspend")
    assert await answer_to_its_key() == 200
    picked = page.get_by_test_id("tenant-picker").locator(f"option[value='{paused['id']}']")
    await expect(picked).to_have_text("paused")
