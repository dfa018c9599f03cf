"""The real platform (from the end-to-end suite) and a Chromium page pointed at its dashboard.

A test that asks for ``platform`` gets one of its own, to stop, kill or reconfigure its
services, or to see the platform as only it has used it. The others share one platform per
module (``shared_platform``), each working in a tenant of its own (``tenant``) or as an admin
on tenants it made: starting a platform takes longer than most of these tests.

Playwright drives Debian's Chromium: Playwright's own browser download is not reachable here.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

from tests.e2e.conftest import TIME_SCALE, Platform, platform
from woostore_devstack.platform import running_platform

__all__ = [
    "Platform",
    "browser",
    "chromium_path",
    "page",
    "platform",
    "shared_platform",
    "tenant",
    "watch_csp",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)")
    return str(CHROMIUM)


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


def watch_csp(page: Page) -> list[str]:
    """What the page's Content-Security-Policy refused, as Chromium reports it."""
    refused: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("console", on_console)
    return refused


@pytest.fixture(scope="module")
def shared_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The platform of a module's tests that neither stop nor reconfigure a service, nor
    count on what the platform as a whole has (or has not) done: admin token and all."""
    with running_platform(
        tmp_path_factory.mktemp("shared-platform"), WOOSTORE_SIM_TIME_SCALE=TIME_SCALE
    ) as running:
        yield running


@pytest.fixture
def tenant(shared_platform: Platform) -> Platform:
    """The shared platform as a new tenant sees it: ``token`` and ``headers`` are its one
    key's, so the test sees its own stores, events and counts only. Its services are the
    shared ones: not to be stopped."""
    with httpx.Client(base_url=shared_platform.api_url, headers=shared_platform.headers) as api:
        made = api.post("/api/v1/tenants", json={"name": f"test-{uuid.uuid4().hex[:12]}"})
        assert made.status_code == 201, made.text
        key = api.post("/api/v1/keys", json={"name": "test", "tenant_id": made.json()["id"]})
        assert key.status_code == 201, key.text
    return dataclasses.replace(shared_platform, token=key.json()["token"])


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh page (empty sessionStorage, so signed out) on the dashboard: of the test's own
    platform if it asks for one, else of the shared one. Fails the test if the page threw an
    uncaught error, broke its Content-Security-Policy or was left showing an alert."""
    own = "platform" in request.fixturenames
    serving: Platform = request.getfixturevalue("platform" if own else "shared_platform")
    serving.check_alive()  # a shared service an earlier test brought down: said, not timed out
    context = await browser.new_context(
        base_url=serving.api_url, viewport={"width": 1280, "height": 900}
    )
    page = await context.new_page()
    errors: list[Error] = []

    def on_error(error: Error) -> None:
        errors.append(error)

    page.on("pageerror", on_error)
    refused = watch_csp(page)
    await page.goto("/")
    yield page
    alerts = await page.get_by_test_id("alert").all_text_contents()
    await context.close()
    assert not errors, f"the dashboard threw: {errors}"
    assert not refused, f"the Content-Security-Policy refused: {refused}"
    assert not alerts, f"the dashboard showed alerts: {alerts}"
