"""The real platform (from the end-to-end suite) and a Chromium page pointed at its dashboard.

Playwright drives Debian's Chromium: Playwright's own browser download is not reachable here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

from tests.e2e.conftest import Platform, platform

__all__ = ["Platform", "browser", "chromium_path", "page", "platform", "watch_csp"]

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


@pytest.fixture
async def page(browser: Browser, platform: Platform) -> AsyncIterator[Page]:
    """A fresh page (empty sessionStorage, so signed out) on the dashboard. Fails the test if
    the page threw an uncaught error, broke its Content-Security-Policy or was left showing
    an alert."""
    context = await browser.new_context(
        base_url=platform.api_url, viewport={"width": 1280, "height": 900}
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
