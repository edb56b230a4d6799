"""Fixtures of the storefront's tests: the storefront app in-process, talking over real HTTP to
the real services of the test stack (the ``stack`` fixture), and helpers that make products,
accounts and purchases through the services' own APIs (``storefront_testkit``)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ember_shared.devstack.layout import SERVICES
from ember_shared.settings import service_settings
from ember_shared.testing.apps import asgi_client, running
from ember_shared.testing.stack import RunningStack
from ember_shared.testing.tokens import TokenFactory
from litestar import Litestar

sys.path.insert(0, str(Path(__file__).parent))

from storefront_testkit import Shop  # noqa: E402

HTML = {"Accept": "text/html,application/xhtml+xml"}


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


class Browser:
    """A person's browser, in-process: one cookie jar, HTML accepted, redirects not followed."""

    def __init__(self, app: Litestar) -> None:
        self.client = asgi_client(app, headers=HTML, follow_redirects=False, timeout=30)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        return await self.client.post(path, data=data or {}, **kwargs)

    async def form(self, page: str, path: str, data: dict[str, Any], **kwargs: Any) -> httpx.Response:
        """Open ``page``, then post ``data`` to ``path`` with the page's form token."""
        from storefront_testkit import csrf_of

        opened = await self.get(page)
        assert opened.status_code == 200, (page, opened.status_code)
        return await self.post(path, {**data, "_csrf_token": csrf_of(opened.text)}, **kwargs)

    @property
    def cookies(self) -> httpx.Cookies:
        return self.client.cookies

    async def aclose(self) -> None:
        await self.client.aclose()


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
