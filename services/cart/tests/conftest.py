"""Fixtures of the cart's tests: the cart app in-process on the real test database and Redis,
"browsers" (each with its own cookie jar), and the stand-in for catalog (see ``cart_testkit``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from cart.app import create_app
from cart.settings import CartSettings
from cart_testkit import Browser, FakeCatalog
from ember_devkit.testing.apps import serve
from litestar import Litestar
from sqlalchemy import text


@pytest.fixture(scope="session")
def fake_catalog(ember_env: Any) -> Iterator[FakeCatalog]:
    """A STAND-IN FOR CATALOG'S CONTRACT (its lookup route), served over real HTTP."""
    catalog = FakeCatalog()
    with serve(catalog.app(), lifespan="off") as url:
        catalog.url = url
        yield catalog


@pytest.fixture
def catalog(fake_catalog: FakeCatalog) -> Iterator[FakeCatalog]:
    """The fake catalog, answering normally at the start and end of every test."""
    fake_catalog.mode = "ok"
    fake_catalog.calls.clear()
    yield fake_catalog
    fake_catalog.mode = "ok"


# --- the cart app -------------------------------------------------------------------------


TEST_CART_SETTINGS = {"catalog_timeout_ms": 300, "sweep_interval_s": 0}


@pytest.fixture(scope="session")
async def cart_app(ember_env: Any, fake_catalog: FakeCatalog) -> AsyncIterator[Litestar]:
    app = create_app(CartSettings(catalog_url=fake_catalog.url, **TEST_CART_SETTINGS))
    # Not AsyncTestClient: it runs the lifespan on a portal thread's loop, so the event runtime's
    # tasks there and the requests here would share one asyncpg pool across two loops.
    # The lifespan runs in a task of its own: its anyio scopes must be left by the task that
    # entered them, and a session fixture's teardown runs in another.
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run())
    await asyncio.wait_for(started.wait(), 30)
    yield app
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.fixture
def limits(cart_app: Litestar) -> Iterator[Any]:
    """Change the cart's limits for one test: ``limits(max_lines=3)``."""
    original = cart_app.state.cart_settings

    def change(**values: Any) -> None:
        cart_app.state.cart_settings = replace(original, **values)

    yield change
    cart_app.state.cart_settings = original


@pytest.fixture
async def browsers(cart_app: Litestar) -> AsyncIterator[Any]:
    """Factory of browsers: ``browsers()`` for a guest, ``browsers(token)`` for a shopper."""
    made: list[Browser] = []

    def make(token: str | None = None) -> Browser:
        browser = Browser(cart_app, token)
        made.append(browser)
        return browser

    yield make
    for browser in made:
        await browser.aclose()


@pytest.fixture
async def db(cart_app: Litestar) -> Any:
    """Run SQL against the cart schema (autocommitted), to look behind the API."""

    class Db:
        async def rows(self, sql: str, **params: Any) -> list[Any]:
            async with cart_app.state.db_engine.begin() as connection:
                return list((await connection.execute(text(sql), params)).all())

        async def execute(self, sql: str, **params: Any) -> None:
            async with cart_app.state.db_engine.begin() as connection:
                await connection.execute(text(sql), params)

        async def value(self, sql: str, **params: Any) -> Any:
            rows = await self.rows(sql, **params)
            return rows[0][0] if rows else None

    return Db()
