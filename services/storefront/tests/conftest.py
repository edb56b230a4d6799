"""Fixtures of the storefront's tests: the storefront app in-process, talking over real HTTP to
the real services of the test stack (the ``stack`` fixture), and helpers that make products,
accounts and purchases through the services' own APIs (``storefront_testkit``)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ember_devkit.devstack.layout import SERVICES
from ember_devkit.testing.apps import running
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory
from ember_shared.settings import service_settings
from litestar import Litestar

sys.path.insert(0, str(Path(__file__).parent))

from storefront_testkit import Browser, Shop


@pytest.fixture(scope="session")
def shop(stack: RunningStack, tokens: TokenFactory) -> Iterator[Shop]:
    kit = Shop(stack, tokens)
    try:
        yield kit
    finally:
        kit.close()


@pytest.fixture(scope="session")
def service_urls(stack: RunningStack) -> Iterator[dict[str, str]]:
    """Point this process's storefront at the stack's services (as the stack points its own)."""
    names = [name for name in SERVICES if name != "storefront"]
    saved = {name: os.environ.get(f"{name.upper()}_URL") for name in names}
    urls = {name: stack.service_url(name) for name in names}
    for name, url in urls.items():
        os.environ[f"{name.upper()}_URL"] = url
    service_settings.cache_clear()
    try:
        yield urls
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(f"{name.upper()}_URL", None)
            else:
                os.environ[f"{name.upper()}_URL"] = value
        service_settings.cache_clear()


@pytest.fixture(scope="session")
async def storefront(service_urls: dict[str, str]) -> AsyncIterator[Litestar]:
    from storefront.app import create_app

    app = create_app()
    async with running(app):
        yield app


@pytest.fixture
async def browser(storefront: Litestar) -> AsyncIterator[Browser]:
    person = Browser(storefront)
    try:
        yield person
    finally:
        await person.aclose()


@pytest.fixture
async def other_browser(storefront: Litestar) -> AsyncIterator[Browser]:
    person = Browser(storefront)
    try:
        yield person
    finally:
        await person.aclose()
