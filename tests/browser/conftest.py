"""Browser tests: Debian's Chromium, driven by Playwright, through Caddy, against the whole stack.

Playwright never downloads a browser here: it launches the one at ``EMBER_CHROMIUM`` (default
``/usr/bin/chromium``; ``apt-get install chromium``; ``.ci/run`` installs it). Screenshots go to
``EMBER_SCREENSHOTS`` when set (to look at them), else to a temporary folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ember_shared.testing.stack import RunningStack
from ember_shared.testing.tokens import TokenFactory
from playwright.async_api import Browser, async_playwright

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "services" / "storefront" / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

from browser_testkit import Person  # noqa: E402
from storefront_testkit import Shop  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser_shop(stack: RunningStack, tokens: TokenFactory) -> Iterator[Shop]:
    kit = Shop(stack, tokens)
    try:
        yield kit
    finally:
        kit.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("EMBER_SCREENSHOTS", "")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def chromium_path() -> str:
    executable = os.environ.get("EMBER_CHROMIUM", "/usr/bin/chromium")
    if not Path(executable).exists():
        pytest.fail(
            f"no Chromium at {executable}: apt-get install -y chromium (or set EMBER_CHROMIUM)",
            pytrace=False,
        )
    return executable


@pytest.fixture(scope="session")
async def chromium(chromium_path: str) -> AsyncIterator[Browser]:
    executable = chromium_path
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def person(chromium: Browser, stack: RunningStack) -> AsyncIterator[Person]:
    context = await chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(15_000)
    page = await context.new_page()
    someone = Person(context, page, stack.url)
    try:
        yield someone
    finally:
        await context.close()
