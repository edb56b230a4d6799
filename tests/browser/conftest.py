"""Browser tests: Debian's Chromium, driven by Playwright, through Caddy, against the whole stack.

Playwright never downloads a browser here: it launches the one at ``EMBER_CHROMIUM`` (default
``/usr/bin/chromium``; ``apt-get install chromium``; ``.ci/run`` installs it). Screenshots go to
``EMBER_SCREENSHOTS`` when set (to look at them), else to a temporary folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from ember_devkit.devstack.layout import standins
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory
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


def _stack_ports(stack: RunningStack) -> str:
    """Every port the browser opens (Caddy and the stand-ins' pages). Chromium refuses a few
    ports outright (10080, 6000, ...), which a shifted ``EMBER_TEST_STACK_OFFSET`` can land on."""
    urls = [stack.url]
    urls += [stack.service_url(app.name) for app in standins()]
    return ",".join(sorted({str(urlsplit(url).port) for url in urls if urlsplit(url).port}))


@pytest.fixture(scope="session")
async def chromium(chromium_path: str, stack: RunningStack) -> AsyncIterator[Browser]:
    executable = chromium_path
    args = [*CHROMIUM_ARGS, f"--explicitly-allowed-ports={_stack_ports(stack)}"]
    playwright = await async_playwright().start()
    browser = await playwright.chromium.launch(executable_path=executable, args=args)
    try:
        yield browser
    finally:
        # Bounded: a Chromium that does not answer its close must not hold the run's end.
        for closing in (browser.close, playwright.stop):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closing(), 30)


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


@pytest.fixture
async def phone(chromium: Browser, stack: RunningStack) -> AsyncIterator[Person]:
    """A shopper (or staff) on a phone: 390 x 844 CSS pixels, touch, a phone's user agent."""
    context = await chromium.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
        locale="en-US",
    )
    context.set_default_timeout(15_000)
    page = await context.new_page()
    someone = Person(context, page, stack.url)
    try:
        yield someone
    finally:
        await context.close()
