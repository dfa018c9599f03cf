"""The dashboard in a real Chromium against the real platform: sign-in, live progress over
SSE, stores made by other clients, the buttons each store's actions allow, deletion, and no
polling."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import yaml
from playwright.async_api import Locator, Page, Request, expect

from tests.e2e.conftest import Platform
from tests.support import alter_stored_data, until
from woostore_devstack.embedded import REPO
from woostore_provisioner.recipe import PROVISION
from woostore_shared import lifecycle
from woostore_shared.db import Database
from woostore_shared.messaging import connect
from woostore_shared.outbox import Outbox
from woostore_shared.settings import Settings
from woostore_shared.unit_of_work import UnitOfWork

pytestmark = pytest.mark.browser

PROVISION_STEPS = len(PROVISION.steps)
STEP_TEXT = re.compile(rf"^Step (\d+) of {PROVISION_STEPS} — \S")
SHORT = 10_000  # ms: things the page does on its own, at once
PROVISIONING = 60_000  # ms: a store at WOOSTORE_SIM_TIME_SCALE=0.05 takes a few seconds
IDLE_SECONDS = 5  # how long a page with nothing going on is watched for polling

# Records every change of every store card, so a test can look back at what the page showed
# (a store at this time scale passes through its steps faster than one can poll for them):
# its status, progress, step, and the buttons it offered (shown and enabled).
RECORD_CARDS = """() => {
  window.__sameDocument = true;
  window.__cards = [];
  const last = new Map();
  const snapshot = () => {
    for (const card of document.querySelectorAll('[data-testid="store-card"]')) {
      const bar = card.querySelector('[data-testid="store-progress"]');
      const row = {
        id: card.dataset.storeId,
        status: card.dataset.status,
        progress: bar.hasAttribute('value') ? bar.value : null,
        step: card.querySelector('[data-testid="store-step"]').textContent,
        buttons: card.querySelector('[data-role="actions"]').hidden ? [] : [
          ...card.querySelectorAll('[data-role="actions"] button'),
        ].filter((b) => !b.hidden && !b.disabled).map((b) => b.dataset.testid),
      };
      const key = JSON.stringify(row);
      if (last.get(row.id) !== key) {
        last.set(row.id, key);
        window.__cards.push(row);
      }
    }
  };
  new MutationObserver(snapshot).observe(document.body, {
    subtree: true, childList: true, attributes: true, characterData: true,
  });
}"""


class CardState(TypedDict):
    id: str
    status: str
    progress: float | None
    step: str
    buttons: list[str]


@dataclass
class Traffic:
    """Every request the page made, as (method, path, resource type)."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)

    def record(self, request: Request) -> None:
        self.requests.append((request.method, urlsplit(request.url).path, request.resource_type))

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.requests if (m, p) == (method, path))

    def api_calls(self) -> Counter[str]:
        return Counter(
            f"{m} {p}" for m, p, kind in self.requests if kind == "fetch" and p.startswith("/api/")
        )


def card(page: Page, store_id: str) -> Locator:
    return page.locator(f'[data-testid="store-card"][data-store-id="{store_id}"]')


async def sign_in(page: Page, token: str) -> None:
    await page.get_by_test_id("signin-token").fill(token)
    await page.get_by_test_id("signin-submit").click()


async def signed_in(page: Page, platform: Platform) -> None:
    await sign_in(page, platform.token)
    await expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=SHORT
    )
    await expect(page.locator("#stores-loading")).to_be_hidden(timeout=SHORT)


async def card_history(page: Page, store_id: str) -> list[CardState]:
    rows: list[CardState] = await page.evaluate("() => window.__cards")
    return [row for row in rows if row["id"] == store_id]


async def create_from_form(page: Page, name: str) -> str:
    """Creates a store with the form; returns its id once its card is on the page."""
    await page.get_by_test_id("create-name").fill(name)
    await page.get_by_test_id("create-submit").click()
    new_card = page.get_by_test_id("store-card").filter(has_text=name)
    await expect(new_card).to_be_visible(timeout=SHORT)
    store_id = await new_card.get_attribute("data-store-id")
    assert store_id
    return store_id


async def create_by_api(platform: Platform, name: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=platform.api_url, headers=platform.headers) as api:
        response = await api.post("/api/v1/stores", json={"name": name})
    assert response.status_code == 202, response.text
    store: dict[str, Any] = response.json()
    return store


async def post(platform: Platform, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=platform.api_url, headers=platform.headers) as api:
        response = await api.post(path)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def get_json(platform: Platform, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=platform.api_url, headers=platform.headers) as api:
        response = await api.get(path)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def test_sign_in_rejects_a_wrong_token_and_accepts_the_right_one(
    page: Page, tenant: Platform
) -> None:
    token_field = page.get_by_test_id("signin-token")
    await expect(token_field).to_be_visible(timeout=SHORT)

    await sign_in(page, "not-the-token")
    await expect(page.locator("#signin-message")).to_have_text(
        re.compile("not accepted"), timeout=SHORT
    )
    await expect(token_field).to_be_visible()
    await expect(token_field).to_have_value("")
    await expect(page.locator("#app-view")).to_be_hidden()

    await sign_in(page, tenant.token)
    await expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=SHORT
    )
    await expect(page.get_by_test_id("connection-state")).to_have_text("Live")
    await expect(page.get_by_test_id("simulated-banner")).to_be_visible()
    await expect(page.locator("#signin-view")).to_be_hidden()
    await expect(page.locator("#stores-empty")).to_be_visible(timeout=SHORT)
    await expect(page.get_by_test_id("create-name")).to_be_editable()
    await expect(page.get_by_test_id("alert")).to_have_count(0)
    whoami = await get_json(tenant, "/api/v1/session")
    assert whoami["role"] == "tenant", whoami
    await expect(page.get_by_test_id("whoami")).to_have_text(
        f"{whoami['tenant_name']} · tenant · {whoami['actor']}"
    )

    # The key went to POST /session once; the page keeps no credential a script can read.
    stored = await page.evaluate(
        "() => JSON.stringify([document.cookie, {...sessionStorage}, {...localStorage}])"
    )
    assert tenant.token not in stored
    assert "woostore_session" not in stored
    # The HttpOnly cookie carries the session across a reload, and sign-out ends it.
    await page.reload()
    await expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=SHORT
    )
    await page.get_by_test_id("signout").click()
    await expect(page.get_by_test_id("signin-token")).to_be_visible(timeout=SHORT)
    await expect(page.locator("#signin-message")).to_have_text("You have signed out.")
    await page.reload()
    await expect(page.get_by_test_id("signin-token")).to_be_visible(timeout=SHORT)

    # A sign-out the server never got (its network gone) is not told as done: the session
    # still works, and a reload shows it (the page said "signed out" whatever happened).
    await signed_in(page, tenant)
    await page.route("**/api/v1/session", lambda route: route.abort())
    await page.get_by_test_id("signout").click()
    await expect(page.locator("#signin-message")).to_have_text(
        "The server did not end the session (Network error: Could not reach the WooStore API):"
        " this browser is still signed in. Reload the page to sign out again."
    )
    await page.unroute("**/api/v1/session")
    await page.reload()
    await expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=SHORT
    )


async def test_a_tab_follows_the_sign_in_and_out_of_another_tab(
    page: Page, tenant: Platform, shared_platform: Platform
) -> None:
    """The tabs of a browser share its session cookie: a tab signed out in another stayed
    "Live", then blamed an expired key (a user's review); one signed in as another there
    would have gone on showing the first's stores with the second's cookie."""
    await signed_in(page, tenant)
    other = await page.context.new_page()
    await other.goto("/")
    await expect(other.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=SHORT
    )

    await other.get_by_test_id("signout").click()

    await expect(page.locator("#signin-message")).to_have_text(
        "You signed out in another tab.", timeout=SHORT
    )
    await expect(page.locator("#app-view")).to_be_hidden()

    await sign_in(other, shared_platform.token)  # the admin, there
    await expect(page.get_by_test_id("whoami")).to_contain_text(" · admin · ", timeout=SHORT)
    await expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=SHORT
    )
    await other.close()


async def test_the_dashboard_works_in_a_browser_without_broadcast_channel(
    page: Page, tenant: Platform
) -> None:
    """Safari before 15.4 has none: the page's modules failed to load (a diff review)."""
    await page.add_init_script("delete window.BroadcastChannel")
    await page.reload()
    await signed_in(page, tenant)
    await page.get_by_test_id("signout").click()
    await expect(page.locator("#signin-message")).to_have_text("You have signed out.")


async def test_a_store_created_from_the_form_progresses_live_to_ready(
    page: Page, tenant: Platform
) -> None:
    await signed_in(page, tenant)
    await page.evaluate(RECORD_CARDS)
    # The owner's settings: a bad code is refused, naming the field, and nothing is made.
    await page.get_by_test_id("create-settings").locator("summary").click()
    await page.get_by_test_id("create-currency").fill("XYZ")
    await page.get_by_test_id("create-name").fill("Form Shop")
    await page.get_by_test_id("create-submit").click()
    await expect(page.locator("#create-error")).to_contain_text("currency", timeout=SHORT)
    said = await page.locator("#create-error").text_content() or ""
    assert said.count("XYZ") == 1, said  # said once, not again from the problem's errors
    await expect(page.get_by_test_id("store-card")).to_have_count(0)
    await page.get_by_test_id("create-currency").fill("EUR")
    await page.get_by_test_id("create-country").fill("DE")
    await page.get_by_test_id("create-sample-products").select_option("false")

    store_id = await create_from_form(page, "Form Shop")
    store_card = card(page, store_id)
    await expect(page.locator("#create-status")).to_have_text(re.compile("requested"))
    await expect(page.get_by_test_id("create-name")).to_have_value("")
    await expect(store_card.get_by_test_id("store-settings")).to_have_text(
        "EUR · DE · en_US · no sample products"
    )

    # Live, with nothing but the event stream: the step text, then ready.
    await expect(store_card.get_by_test_id("store-step")).to_have_text(
        STEP_TEXT, timeout=PROVISIONING
    )
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    await expect(store_card.get_by_test_id("store-status")).to_have_text("ready")
    await expect(store_card.get_by_test_id("store-progress")).to_be_hidden()
    # Where it came from and how long its owner waited (the platform keeps no warm pool here).
    origin = store_card.get_by_test_id("store-origin")
    await expect(origin).to_be_visible()
    await expect(origin).to_have_text(re.compile(r"^Made from scratch · ready in \d+\.\d s$"))
    assert await page.evaluate("() => window.__sameDocument") is True, "the page reloaded"

    # What the card showed along the way: queued first, then every step in order with the
    # progress bar only ever moving forward, then ready.
    history = await card_history(page, store_id)
    assert history[0]["status"] == "queued", history
    statuses = [row["status"] for row in history]
    assert list(dict.fromkeys(statuses)) == ["queued", "provisioning", "ready"], statuses
    steps = [int(m[1]) for row in history if (m := STEP_TEXT.match(row["step"]))]
    assert steps == sorted(steps), steps
    assert set(steps) == set(range(1, PROVISION_STEPS + 1)), steps
    bars = [
        row["progress"]
        for row in history
        if row["status"] == "provisioning" and row["progress"] is not None
    ]
    assert bars == sorted(bars), bars
    assert len(set(bars)) >= PROVISION_STEPS, bars
    assert 0 < bars[-1] <= 1, bars
    # Until it was ready the card offered to cancel it (its delete button) and nothing else.
    assert any(row["buttons"] == ["delete-button"] for row in history if row["status"] == "queued")
    before_ready = [row for row in history if row["status"] != "ready"]
    assert all(set(row["buttons"]) <= {"delete-button"} for row in before_ready), history

    # Ready: the links, and the credentials the API holds.
    store = await get_json(tenant, f"/api/v1/stores/{store_id}")
    storefront = store_card.get_by_test_id("storefront-link")
    await expect(storefront).to_be_visible()
    await expect(storefront).to_have_attribute(
        "href", re.compile(re.escape(store["storefront_url"]))
    )
    await expect(store_card.get_by_test_id("admin-link")).to_be_visible()

    credentials = await get_json(tenant, f"/api/v1/stores/{store_id}/credentials")
    assert credentials["password"]
    await store_card.get_by_test_id("show-credentials").click()
    password = store_card.get_by_test_id("credentials-password")
    await expect(password).to_be_visible(timeout=SHORT)
    await expect(password).to_have_text(credentials["password"])
    await expect(store_card.get_by_test_id("credentials-username")).to_have_text(
        credentials["username"]
    )
    await expect(store_card.get_by_test_id("show-credentials")).to_have_text("Hide credentials")
    await store_card.get_by_test_id("show-credentials").click()
    await expect(password).to_be_hidden()


async def test_a_store_created_by_another_client_appears_and_becomes_ready(
    page: Page, tenant: Platform
) -> None:
    await signed_in(page, tenant)
    await expect(page.get_by_test_id("store-card")).to_have_count(0)

    store = await create_by_api(tenant, "Elsewhere Shop")

    store_card = card(page, store["id"])
    await expect(store_card).to_be_visible(timeout=SHORT)
    await expect(store_card.locator("h3")).to_have_text("Elsewhere Shop")
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    await expect(store_card.get_by_test_id("storefront-link")).to_be_visible()
    await expect(page.get_by_test_id("store-card")).to_have_count(1)


async def test_deleting_a_ready_store_asks_first_then_reaches_deleted(
    page: Page, tenant: Platform
) -> None:
    await signed_in(page, tenant)
    store = await create_by_api(tenant, "Doomed Shop")
    store_card = card(page, store["id"])
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)

    dialog = page.locator("#confirm-dialog")
    delete = store_card.get_by_test_id("delete-button")

    # Cancelling keeps the store.
    await delete.click()
    await expect(dialog).to_be_visible(timeout=SHORT)
    await expect(dialog).to_contain_text("Doomed Shop")
    cancel = dialog.get_by_role("button", name="Cancel")
    await expect(cancel).to_be_focused()  # Enter does not delete by accident
    await cancel.click()
    await expect(dialog).to_be_hidden()
    await expect(store_card).to_have_attribute("data-status", "ready")

    # Confirming deletes it; its card stays until the list is read again, offering nothing.
    await delete.click()
    await expect(dialog).to_be_visible(timeout=SHORT)
    await page.get_by_test_id("confirm").click()
    await expect(dialog).to_be_hidden()
    await expect(store_card).to_have_attribute("data-status", "deleted", timeout=PROVISIONING)
    await expect(store_card.get_by_test_id("store-status")).to_have_text("deleted")
    await expect(store_card.get_by_test_id("delete-button")).to_be_hidden()
    assert (await get_json(tenant, f"/api/v1/stores/{store['id']}"))["status"] == "deleted"
    # Deleted stores are a status of their own; the rest leave them out.
    await page.get_by_test_id("filter-ready").click()
    await expect(page.get_by_test_id("store-card")).to_have_count(0, timeout=SHORT)
    await expect(page.get_by_test_id("stores-empty")).to_have_text("No stores match.")
    await page.get_by_test_id("filter-deleted").click()
    await expect(page.get_by_test_id("filter-deleted")).to_have_attribute("aria-pressed", "true")
    await expect(store_card).to_be_visible(timeout=SHORT)
    await page.get_by_test_id("filter-all").click()
    await expect(page.get_by_test_id("store-card")).to_have_count(0, timeout=SHORT)
    await expect(page.get_by_test_id("stores-empty")).to_have_text(
        "No stores yet. Create one above."
    )


async def test_a_failed_store_shows_why_then_its_clean_up_then_is_retried_to_ready(
    page: Page, tenant: Platform
) -> None:
    await signed_in(page, tenant)
    await page.evaluate(RECORD_CARDS)
    store = await create_by_api(tenant, "Unlucky Shop")
    store_card = card(page, store["id"])
    await expect(store_card.get_by_test_id("store-step")).to_have_text(
        STEP_TEXT, timeout=PROVISIONING
    )

    await fail_as_the_reaper_does(tenant, store["id"], "provisioning did not finish in time")

    failure = store_card.get_by_test_id("store-failure")
    await expect(failure).to_have_text(
        re.compile(r"^Failed: provisioning did not finish in time \(during Step \d+ of"),
        timeout=SHORT,
    )
    await expect(store_card.get_by_test_id("store-progress")).to_be_hidden(timeout=PROVISIONING)
    cleaned = await get_json(tenant, f"/api/v1/stores/{store['id']}")
    assert cleaned["cleaned_up_at"] is not None
    history = [row for row in await card_history(page, store["id"]) if row["status"] == "failed"]
    assert any(row["step"].startswith("Cleaning up") for row in history), history
    await expect(failure).to_have_text(re.compile("^Failed: provisioning did not finish"))
    assert (await store_card.get_by_test_id("store-status").text_content()) == "failed"

    # Cleaned up, it can be made again from scratch: the same card goes to ready. Made two
    # hours ago (as far as the platform knows), its owner's new wait counts from the retry.
    await made_hours_ago(tenant, store["id"], 2)
    await page.evaluate(RECORD_TIME_SHOWN, store["id"])
    retry = store_card.get_by_test_id("retry-button")
    await retry.click()
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    await expect(failure).to_be_hidden()
    await expect(retry).to_be_hidden()
    shown = await page.evaluate("() => window.__timeShown")
    assert shown, "no time elapsed was shown while it was made again"
    assert all(re.match(r"^\d+(\.\d)? s elapsed", text) for text in shown), shown
    await expect(store_card.get_by_test_id("store-origin")).to_have_text(
        re.compile(r"^Made from scratch · ready in \d{1,2}\.\d s$")
    )


# The texts of a store's time shown (elapsed, left), as they change.
RECORD_TIME_SHOWN = """(id) => {
  window.__timeShown = [];
  const look = () => {
    const eta = document.querySelector(`[data-store-id="${id}"] [data-testid="store-eta"]`);
    const text = eta && !eta.hidden ? eta.textContent : '';
    if (text && window.__timeShown.at(-1) !== text) window.__timeShown.push(text);
  };
  new MutationObserver(look).observe(document.body, {
    subtree: true, childList: true, attributes: true, characterData: true,
  });
}"""


async def made_hours_ago(platform: Platform, store_id: str, hours: int) -> None:
    """As if the store had been asked for (and made) ``hours`` ago."""
    async with await psycopg.AsyncConnection.connect(platform.postgres.url) as connection:
        await connection.execute(
            "UPDATE stores SET created_at = created_at - make_interval(hours => %s),"
            " requested_at = requested_at - make_interval(hours => %s) WHERE id = %s",
            (hours, hours, store_id),
        )
        await connection.commit()


async def fail_as_the_reaper_does(
    platform: Platform, store_id: str, reason: str, *, lost: bool = False
) -> None:
    """Fail a provisioning store as the reaper does when its deadline passes (``lost``: a
    ready one, as it does when the store's namespace vanished)."""
    database = Database(Settings(database_url=platform.postgres.url).database_url)
    nats = await connect(platform.nats.url, "tests")
    try:
        async with UnitOfWork.begin(Outbox(database, nats, source="/woostore/reaper")) as uow:
            await lifecycle.fail(uow, uuid.UUID(store_id), reason, lost=lost)
    finally:
        await nats.close()
        await database.dispose()


async def test_a_ready_store_offers_a_rollback_once_it_has_a_revision_to_return_to(
    page: Page, tenant: Platform
) -> None:
    chart_version = yaml.safe_load((REPO / "helm" / "store" / "Chart.yaml").read_text())["version"]
    await signed_in(page, tenant)
    store = await create_by_api(tenant, "Versioned Shop")
    store_card = card(page, store["id"])
    chart = store_card.get_by_test_id("store-chart")
    upgrade = store_card.get_by_test_id("upgrade-button")
    rollback = store_card.get_by_test_id("rollback-button")
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    await expect(chart).to_have_text(f"{chart_version} (revision 1)")
    # The actions come with the event that made the store ready. The store runs the chart
    # the platform ships: the button says it applies that chart again.
    await expect(upgrade).to_be_visible(timeout=SHORT)
    await expect(upgrade).to_have_text("Re-apply chart")
    await expect(upgrade).to_have_attribute(
        "title", re.compile(f"already runs chart {chart_version}")
    )
    await expect(store_card.get_by_test_id("show-credentials")).to_be_visible()
    await expect(rollback).to_be_hidden()  # nothing to roll back to
    await page.evaluate(RECORD_CARDS)

    # Another client asking anyway is refused: nothing happens to the store.
    async with httpx.AsyncClient(base_url=tenant.api_url, headers=tenant.headers) as api:
        refused = await api.post(f"/api/v1/stores/{store['id']}/rollback")
    assert refused.status_code == 409, refused.text

    await upgrade.click()
    await expect(chart).to_have_text(f"{chart_version} (revision 2)", timeout=PROVISIONING)
    await expect(store_card).to_have_attribute("data-status", "ready")
    await expect(store_card.get_by_test_id("store-failure")).to_be_hidden()
    await expect(rollback).to_be_visible(timeout=SHORT)

    await rollback.click()
    await expect(chart).to_have_text(f"{chart_version} (revision 3)", timeout=PROVISIONING)
    await expect(rollback).to_be_visible(timeout=SHORT)  # rolling back again undoes it
    history = await card_history(page, store["id"])
    statuses = [row["status"] for row in history]
    assert set(statuses) == {"ready", "updating"}, statuses
    assert statuses[-1] == "ready", statuses
    # An updating store offered its login (it serves its shop meanwhile) and its deletion
    # (once the change ends): no other change.
    offered = {b for row in history if row["status"] == "updating" for b in row["buttons"]}
    assert offered <= {"show-credentials", "delete-button"}, history

    # A store on an older chart is offered the one the platform ships, by its version.
    async with await psycopg.AsyncConnection.connect(tenant.postgres.url) as connection:
        await connection.execute(
            "UPDATE stores SET chart_version = '0.0.1' WHERE id = %s", (store["id"],)
        )
        await connection.commit()
    await page.reload()
    await expect(upgrade).to_have_text(f"Upgrade to {chart_version}", timeout=SHORT)


async def test_a_ready_stores_settings_are_changed_from_its_card(
    page: Page, tenant: Platform
) -> None:
    """Those typed are asked for; the card shows the store updating, then ready with them.
    A code no standard has is refused under the form, which keeps what was typed."""
    await signed_in(page, tenant)
    store = await create_by_api(tenant, "Moving Shop")
    store_card = card(page, store["id"])
    change = store_card.get_by_test_id("store-settings-change")
    shown = store_card.get_by_test_id("store-settings")
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    await expect(shown).to_have_text("INR · IN-KA · en_US · sample products")
    await expect(change).to_be_visible(timeout=SHORT)
    await expect(store_card.get_by_test_id("settings-currency")).to_have_attribute(
        "placeholder", "INR"
    )

    await page.evaluate(RECORD_CARDS)
    await change.locator("summary").click()
    await store_card.get_by_test_id("settings-currency").fill("eur")
    await store_card.get_by_test_id("settings-country").fill("DE")
    await store_card.get_by_test_id("settings-save").click()

    await expect(shown).to_have_text("EUR · DE · en_US · sample products", timeout=SHORT)
    await expect(change).not_to_have_attribute("open", "")  # asked for: the form is closed
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    statuses = [row["status"] for row in await card_history(page, store["id"])]
    assert "updating" in statuses, statuses
    assert statuses[-1] == "ready", statuses
    await store_card.locator('[data-role="activity"] summary').click()
    await expect(store_card.locator('[data-role="activity-list"]')).to_contain_text(
        # All of them: it named the currency and the language alone, whatever changed.
        "Settings change done: EUR · DE · en_US · sample products",
        timeout=SHORT,
    )
    await change.locator("summary").click()
    await store_card.get_by_test_id("settings-currency").fill("XYZ")
    await store_card.get_by_test_id("settings-save").click()
    error = store_card.get_by_test_id("settings-error")
    await expect(error).to_contain_text("'XYZ' is not the ISO 4217 code", timeout=SHORT)
    await expect(store_card.get_by_test_id("settings-currency")).to_have_value("XYZ")
    await expect(store_card).to_have_attribute("data-status", "ready")


async def test_a_store_is_backed_up_restored_copied_and_a_backup_deleted_from_its_card(
    page: Page, tenant: Platform
) -> None:
    await signed_in(page, tenant)
    store = await create_by_api(tenant, "Safe Shop")
    store_card = card(page, store["id"])
    backups = store_card.get_by_test_id("store-backups")
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    await backups.locator("summary").click()
    await expect(backups).to_contain_text("No backups yet.", timeout=SHORT)
    # Its list, focusable to scroll when long, is no stop of the keyboard's while empty.
    empty_list = backups.get_by_test_id("backup-list")
    assert not await empty_list.evaluate("list => (list.focus(), document.activeElement === list)")
    await page.evaluate(RECORD_CARDS)

    await store_card.get_by_test_id("backup-button").click()

    backup = backups.get_by_test_id("backup")
    await expect(backup).to_have_attribute("data-status", "complete", timeout=PROVISIONING)
    await expect(backup).to_contain_text(
        re.compile(r"Complete \(asked for\): [0-9.]+ KB · WordPress 7\.1\.2, WooCommerce 11\.2\.0")
    )
    await expect(store_card).to_have_attribute("data-status", "ready")
    history = await card_history(page, store["id"])
    statuses = [row["status"] for row in history]
    assert "backing_up" in statuses, statuses
    backing_up = [row for row in history if row["status"] == "backing_up"]
    assert any(re.match(r"^Step \d of 5 — ", row["step"]) for row in backing_up), backing_up
    # A store being backed up offers its login, and its deletion (once the backup ends): no
    # change, no second backup.
    offered = {b for row in backing_up for b in row["buttons"]}
    assert offered <= {"show-credentials", "delete-button"}, backing_up

    # Restored to that backup, once confirmed: it is backed up as it is first.
    await backup.get_by_test_id("restore-button").click()
    await page.get_by_test_id("confirm").click()
    await expect(backups.get_by_test_id("backup")).to_have_count(2, timeout=PROVISIONING)
    safety = backups.get_by_test_id("backup").first  # newest first
    await expect(safety).to_contain_text("(before a restore)", timeout=PROVISIONING)
    await expect(safety).to_have_attribute("data-status", "complete", timeout=PROVISIONING)
    await expect(store_card.get_by_test_id("store-failure")).to_be_hidden()
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    statuses = [row["status"] for row in await card_history(page, store["id"])]
    assert statuses[statuses.index("restoring") :][-1] == "ready", statuses

    # The first backup copied to a new store, once confirmed: its card arrives and gets ready.
    asked_for = backups.get_by_test_id("backup").last
    await asked_for.get_by_test_id("copy-backup-button").click()
    await expect(page.locator("#confirm-dialog")).to_contain_text("“Safe Shop copy”")
    await page.get_by_test_id("confirm").click()
    copy_card = page.get_by_test_id("store-card").filter(has_text="Safe Shop copy")
    await expect(copy_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    await expect(copy_card.get_by_test_id("store-origin")).to_contain_text(
        "A copy of Safe Shop, from its backup"
    )
    # Lost once made: cleaned up, it may be made again from that backup while it can be read.
    copy_id = await copy_card.get_attribute("data-store-id")
    assert copy_id is not None
    await fail_as_the_reaper_does(tenant, copy_id, "its namespace vanished", lost=True)
    copy_retry = copy_card.get_by_test_id("retry-button")
    await expect(copy_retry).to_be_visible(timeout=PROVISIONING)

    # The safety backup deleted, once confirmed: the list shows it gone without a reload.
    await safety.get_by_test_id("delete-backup-button").click()
    await expect(page.locator("#confirm-dialog")).to_contain_text("can no longer be restored")
    await page.get_by_test_id("confirm").click()
    await expect(backups.get_by_test_id("backup")).to_have_count(1, timeout=PROVISIONING)
    await expect(backups.get_by_test_id("backup")).to_contain_text("(asked for)")

    # Its data altered in the repository, as failing storage might: a restore finds it, and
    # the backup is listed damaged, with no Restore or Copy, and can be deleted.
    def listed() -> int:
        found = f"{tenant.api_url}/api/v1/stores/{store['id']}/backups"
        return len(httpx.get(found, headers=tenant.headers).json()["items"])

    # Once the safety backup's data is gone: its removal would repack what is altered.
    await until(lambda: listed() == 1, "the deleted backup's data is removed", PROVISIONING / 1000)
    alter_stored_data(tenant.data_dir, store["id"])
    kept = backups.get_by_test_id("backup").filter(has_text="(asked for)")
    await kept.get_by_test_id("restore-button").click()
    await page.get_by_test_id("confirm").click()
    await expect(kept).to_have_attribute("data-status", "damaged", timeout=PROVISIONING)
    for told in ("a backup was found damaged", "the restore failed: the backup is damaged"):
        notice = page.get_by_test_id("notice").filter(has_text=f"“Safe Shop”: {told}")
        await expect(notice).to_be_visible(timeout=SHORT)  # not only in the card
    await expect(kept).to_contain_text(
        re.compile(r"Damaged, cannot be restored \(asked for\): .*ciphertext verification")
    )
    await expect(kept.get_by_test_id("restore-button")).to_have_count(0)
    await expect(kept.get_by_test_id("copy-backup-button")).to_have_count(0)
    await expect(kept.get_by_test_id("delete-backup-button")).to_be_visible()
    await expect(backups.get_by_test_id("backup")).to_have_count(1)  # no safety backup listed
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    # The failed copy's backup can be copied no more: its card stops offering a retry, from
    # the event saying so, without a reload (it offered it until one).
    await expect(copy_retry).to_be_hidden(timeout=SHORT)
    await expect(copy_card).to_have_attribute("data-status", "failed")


async def backed_up_from_its_card(page: Page, store_id: str) -> Locator:
    """The store, once ready, backed up from its card (its Backups section open): the
    backup, once complete."""
    store_card = card(page, store_id)
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    backups = store_card.get_by_test_id("store-backups")
    await backups.locator("summary").click()
    await store_card.get_by_test_id("backup-button").click()
    backup = backups.get_by_test_id("backup")
    await expect(backup).to_have_attribute("data-status", "complete", timeout=PROVISIONING)
    return backup


async def test_an_admin_viewing_all_tenants_copies_a_tenants_backup_into_that_tenant(
    page: Page, shared_platform: Platform, tenant: Platform
) -> None:
    """The copy was asked for without a tenant unless one was picked, and refused (422,
    naming the CLI's --tenant): a copy is made in its backup's tenant (a user's review)."""
    store = await create_by_api(tenant, "Tenant Shop")
    await signed_in(page, shared_platform)  # the admin, with no tenant picked
    backup = await backed_up_from_its_card(page, store["id"])

    await backup.get_by_test_id("copy-backup-button").click()
    await page.get_by_test_id("confirm").click()

    copy_card = page.get_by_test_id("store-card").filter(has_text="Tenant Shop copy")
    await expect(copy_card).to_be_visible(timeout=SHORT)
    async with httpx.AsyncClient(base_url=tenant.api_url, headers=tenant.headers) as api:
        copy = await api.get(f"/api/v1/stores/{await copy_card.get_attribute('data-store-id')}")
    assert copy.json()["tenant_id"] == store["tenant_id"]


# A platform of its own: stops the provisioner.
async def test_a_store_deleted_while_it_is_backed_up_says_so_and_its_backup_is_stopped(
    page: Page, platform: Platform
) -> None:
    """With no provisioner running, the backup waits: what the card shows meanwhile is
    seen for certain, not raced."""
    await signed_in(page, platform)
    store = await create_by_api(platform, "Busy Shop")
    store_card = card(page, store["id"])
    earlier = await backed_up_from_its_card(page, store["id"])
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=SHORT)
    await asyncio.to_thread(platform.stop, "provisioner")
    try:
        await store_card.get_by_test_id("backup-button").click()
        await expect(store_card).to_have_attribute("data-status", "backing_up", timeout=SHORT)
        copy = earlier.get_by_test_id("copy-backup-button")
        await expect(copy).to_be_visible()

        await store_card.get_by_test_id("delete-button").click()
        await expect(page.locator("#confirm-dialog")).to_contain_text(
            "will be permanently removed, once its backup is stopped."
        )
        await page.get_by_test_id("confirm").click()

        await expect(copy).to_be_hidden(timeout=SHORT)  # its backups go with it

        step = store_card.get_by_test_id("store-step")
        await expect(step).to_have_text("Backup starting… — then deleted", timeout=SHORT)
        delete = store_card.get_by_test_id("delete-button")
        await expect(delete).to_be_disabled()
        await expect(delete).to_have_attribute(
            "title", "This store is deleted once its backup is stopped"
        )
        await expect(store_card).to_have_attribute("data-status", "backing_up")
        await store_card.locator('[data-role="activity"] > summary').click()
        await expect(store_card.locator('[data-role="activity-list"]')).to_contain_text(
            "Deletion requested: it starts once its backup is stopped", timeout=SHORT
        )
    finally:
        await asyncio.to_thread(platform.start, "provisioner")
    await expect(store_card).to_have_attribute("data-status", "deleted", timeout=PROVISIONING)
    stored = await get_json(platform, f"/api/v1/stores/{store['id']}")
    kinds = [e["type"].rsplit(".", 1)[1] for e in stored["events"]]
    assert [k for k in kinds if k != "progress"][-4:] == [
        "delete_queued",
        "backup_failed",
        "delete_requested",
        "deleted",
    ]  # fmt: skip  (the backup yields to the deletion: cut short as the provisioner is back)


# A platform of its own: stops the provisioner.
async def test_a_store_deleted_while_a_copy_is_made_from_its_backup_says_it_waits_for_it(
    page: Page, platform: Platform
) -> None:
    """With no provisioner running, the copy stays queued: its source's card is seen waiting
    for it for certain. Its DELETE was a 409 while its Delete button was offered."""
    await signed_in(page, platform)
    store = await create_by_api(platform, "Source Shop")
    store_card = card(page, store["id"])
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    backup = await post(platform, f"/api/v1/stores/{store['id']}/backups")
    backups = store_card.get_by_test_id("store-backups")
    await backups.locator("summary").click()
    await expect(backups.get_by_test_id("backup")).to_have_attribute(
        "data-status", "complete", timeout=PROVISIONING
    )
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=SHORT)
    await asyncio.to_thread(platform.stop, "provisioner")
    async with httpx.AsyncClient(base_url=platform.api_url, headers=platform.headers) as api:
        try:
            made = await api.post(
                "/api/v1/stores", json={"name": "Copy", "from_backup": backup["id"]}
            )
            assert made.status_code == 202, made.text

            await store_card.get_by_test_id("delete-button").click()
            await expect(page.locator("#confirm-dialog")).to_contain_text(
                "will be permanently removed, once no copy reads its backups."
            )
            await page.get_by_test_id("confirm").click()

            status = store_card.get_by_test_id("store-status")
            await expect(status).to_have_text("ready · to be deleted", timeout=SHORT)
            delete = store_card.get_by_test_id("delete-button")
            await expect(delete).to_be_disabled()
            await expect(delete).to_have_attribute(
                "title", "This store is deleted once no copy reads its backups"
            )
            await expect(store_card.get_by_test_id("backup-button")).to_be_hidden()
        finally:
            await asyncio.to_thread(platform.start, "provisioner")
        copy = card(page, made.json()["id"])
        await expect(copy).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
        # The reaper starts it within a pass past its grace (tests/reaper); asked again, at once.
        assert (await api.delete(f"/api/v1/stores/{store['id']}")).status_code == 202
    await expect(store_card).to_have_attribute("data-status", "deleted", timeout=PROVISIONING)


async def test_a_long_lived_stores_activity_shows_its_latest_events_and_says_so(
    page: Page, tenant: Platform
) -> None:
    """GET /stores/{id} sends a store's latest 100 events: the log says the rest is not
    shown, rather than pass them off as the store's whole history."""
    await signed_in(page, tenant)
    store = await create_by_api(tenant, "Old Shop")
    store_card = card(page, store["id"])
    await expect(store_card).to_have_attribute("data-status", "ready", timeout=PROVISIONING)
    async with await psycopg.AsyncConnection.connect(tenant.postgres.url) as connection:
        # A hundred more of its first event, later: as years of backups would leave.
        await connection.execute(
            "INSERT INTO store_events (id, store_id, subject, type, time, envelope)"
            " SELECT gen_random_uuid(), store_id, subject, type,"
            "  time + make_interval(secs => n), envelope"
            " FROM store_events, generate_series(1, 100) AS n"
            " WHERE store_id = %s AND type LIKE '%%.requested'",
            (store["id"],),
        )
        await connection.commit()

    await store_card.locator('[data-role="activity"] > summary').click()

    status = store_card.locator('[data-role="activity-status"]')
    await expect(status).to_have_text(
        "The latest 100 events; earlier ones are not shown.", timeout=SHORT
    )
    await expect(store_card.locator('[data-role="activity"] li')).to_have_count(100)


# A platform of its own: the page reads the platform's step times again when a store is
# ready only if it had none, as a platform that has made no store yet has none.
async def test_the_page_does_not_poll(page: Page, platform: Platform) -> None:
    traffic = Traffic()
    page.on("request", traffic.record)
    await signed_in(page, platform)

    store_id = await create_from_form(page, "Quiet Shop")
    await expect(card(page, store_id)).to_have_attribute(
        "data-status", "ready", timeout=PROVISIONING
    )
    await expect(card(page, store_id).get_by_test_id("upgrade-button")).to_be_visible()
    # Counted again after each change of status, the last one included.
    await expect(page.get_by_test_id("store-counts")).to_have_text("1 store: 1 ready")
    # Nothing going on: a polling page would still be asking.
    settled = len(traffic.requests)
    await page.wait_for_timeout(IDLE_SECONDS * 1000)
    assert traffic.requests[settled:] == []

    streams = sum(1 for *_, kind in traffic.requests if kind == "eventsource")
    assert streams == 1, traffic.requests
    assert traffic.count("GET", "/api/v1/stores") == streams, traffic.requests
    # Events carry the store's actions, so its status changes cost no read of it. It is read
    # only if its requested event came before the answer to POST /stores, and once for its
    # past steps if its first step's start came before that answer too.
    calls = traffic.api_calls()
    assert calls.pop(f"GET /api/v1/stores/{store_id}", 0) <= 2, traffic.requests
    # Counts: when the list loaded, then at most once per status (queued, provisioning, ready).
    assert 1 <= calls.pop("GET /api/v1/stores/counts") <= 4, traffic.requests
    assert calls == Counter(
        {
            "POST /api/v1/session": 1,  # signing in
            "GET /api/v1/tenants": 1,  # an admin's tenant picker
            "GET /api/v1/stores/step-times": 2,  # for the time left: none yet, then after ready
            "GET /api/v1/platform": 1,
            "POST /api/v1/events/ticket": streams,
            "GET /api/v1/stores": streams,
            "POST /api/v1/stores": 1,
        }
    ), traffic.requests


# A platform of its own: restarts the provisioner with faults.
async def test_a_store_stuck_on_its_image_says_why_in_one_sentence(
    page: Page, platform: Platform
) -> None:
    """The simulated cluster holds the rollout on an image it cannot pull: the card says so
    while the step waits, then fails with the same words first. Its time left says the step
    takes longer than usual (it stood still, "about 6.4 s left", a user's review)."""
    first = await create_by_api(platform, "First Shop")  # the steps' usual times, measured
    give_up = time.monotonic() + PROVISIONING / 1000
    while not (await get_json(platform, "/api/v1/stores/step-times"))["phases"]:
        assert time.monotonic() < give_up, f"{first['id']} measured no step"
        await asyncio.sleep(0.2)
    await signed_in(page, platform)  # and reads them
    held = {
        "WOOSTORE_SIM_FAULTS": json.dumps({"wait_for_rollout": "image_pull"}),
        "WOOSTORE_ROLLOUT_TIMEOUT_SECONDS": "6",
        "WOOSTORE_CAUSE_POLL_SECONDS": "0.2",
    }
    await asyncio.to_thread(platform.stop, "provisioner")
    await asyncio.to_thread(platform.start, "provisioner", **held)
    try:
        store = await create_by_api(platform, "Stuck Shop")
        store_card = card(page, store["id"])
        cause = store_card.get_by_test_id("store-cause")
        words = re.compile(r"^Cannot download the image ghcr\.io/woostore/\S+$")
        await expect(cause).to_have_text(words, timeout=PROVISIONING)
        await expect(store_card.get_by_test_id("store-step")).to_have_text(STEP_TEXT)
        await expect(store_card.get_by_test_id("store-eta")).to_have_text(
            re.compile(r" elapsed · this step takes longer than usual, then about .+$"),
            timeout=PROVISIONING,
        )
        said = await cause.text_content()
        await expect(store_card).to_have_attribute("data-status", "failed", timeout=PROVISIONING)
        await expect(cause).to_be_hidden()
        await expect(store_card.get_by_test_id("store-failure")).to_contain_text(f"Failed: {said}")
    finally:
        await asyncio.to_thread(platform.stop, "provisioner")
        await asyncio.to_thread(platform.start, "provisioner")


# A platform of its own: stops the notifier.
async def test_a_lost_event_stream_comes_back_with_a_fresh_ticket(
    page: Page, platform: Platform
) -> None:
    """A ticket opens one stream, once: when the stream is lost (here the notifier restarts),
    the page asks for a new ticket rather than present the spent one, and is live again."""
    traffic = Traffic()
    page.on("request", traffic.record)
    await signed_in(page, platform)
    connection = page.get_by_test_id("connection-state")

    await asyncio.to_thread(platform.stop, "notifier")
    await expect(connection).to_have_attribute("data-state", "reconnecting", timeout=SHORT)
    await asyncio.to_thread(platform.start, "notifier")
    await expect(connection).to_have_attribute("data-state", "live", timeout=PROVISIONING)

    store = await create_by_api(platform, "After The Restart")
    await expect(card(page, store["id"])).to_have_attribute(
        "data-status", "ready", timeout=PROVISIONING
    )
    assert traffic.count("POST", "/api/v1/events/ticket") >= 2, traffic.requests


async def test_screenshot_of_two_ready_stores_and_one_provisioning(
    page: Page, tenant: Platform, tmp_path: Path
) -> None:
    """Saved to $WOOSTORE_DASHBOARD_SCREENSHOT (else the test's tmp dir) for a person to look at."""
    await signed_in(page, tenant)
    ready = [await create_by_api(tenant, name) for name in ("Corner Bakery", "Bike Parts Co")]
    for store in ready:
        await expect(card(page, store["id"])).to_have_attribute(
            "data-status", "ready", timeout=PROVISIONING
        )
    started = time.monotonic()
    busy = await create_by_api(tenant, "Tea & Things")
    busy_card = card(page, busy["id"])
    await expect(busy_card.get_by_test_id("store-step")).to_have_text(
        re.compile(rf"^Step [2-8] of {PROVISION_STEPS}"), timeout=PROVISIONING
    )
    path = Path(os.environ.get("WOOSTORE_DASHBOARD_SCREENSHOT", tmp_path / "dashboard.png"))
    await page.screenshot(path=path, full_page=True)
    assert await busy_card.get_attribute("data-status") == "provisioning", (
        f"finished before the screenshot ({time.monotonic() - started:.1f}s)"
    )
    await expect(page.get_by_test_id("store-card")).to_have_count(3)
    # Counted by the API, read again as stores change.
    await expect(page.get_by_test_id("store-counts")).to_have_text(
        re.compile(r"^3 stores: (1 provisioning · 2 ready|3 ready)$"), timeout=SHORT
    )


async def test_swagger_ui_runs_from_the_api_under_its_content_security_policy(
    page: Page,
) -> None:
    # The page fixture fails the test on anything the policy refused.
    await page.goto("/docs")

    operation = page.locator(".opblock").filter(has_text="/api/v1/stores").first
    await expect(operation).to_be_visible(timeout=SHORT)
