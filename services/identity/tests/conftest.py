"""Fixtures of identity's tests: the app in-process on the real test database and Redis,
"browsers" with their own cookie jars, and the Google stand-in as a real HTTP server.

The app runs its lifespan in a task on the session's event loop (not AsyncTestClient's portal
thread), so its asyncpg pool, Redis client and HTTP client live on the loop the tests use.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from identity.app import create_app
from identity.context import Identity
from litestar import Litestar
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

# `make test` runs pytest with --import-mode=importlib, which puts no test folder on sys.path:
# the helpers module beside this file is found through this entry.
sys.path.insert(0, str(Path(__file__).parent))

from identity_helpers import (
    STANDIN_CLIENT_ID,
    STANDIN_CLIENT_SECRET,
    Account,
    Browser,
    ServedApp,
    new_email,
    running,
    settings_for,
    strong_password,
)


@pytest.fixture(scope="session")
def oidc_standin(ember_env: Any) -> Iterator[ServedApp]:
    """The repo's Google stand-in, as a real server (its issuer is its own address)."""
    from standins.oidc import create_app as create_standin

    served = ServedApp(
        create_standin(client_id=STANDIN_CLIENT_ID, client_secret=STANDIN_CLIENT_SECRET),
        lifespan="off",
    )
    yield served
    served.stop()


@pytest.fixture(scope="session")
async def identity_app(oidc_standin: ServedApp) -> AsyncIterator[Litestar]:
    async with running(create_app(settings=settings_for(oidc_standin.url))) as app:
        yield app


@pytest.fixture
def make_app(oidc_standin: ServedApp, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Another identity app on the same database, with other settings: ``async with make_app(...)``."""
    # A second relay LISTENing on the same outbox channel can miss its cancellation when a
    # NOTIFY lands at that moment, and shutting the app down then hangs (reported to the
    # events owner); polling alone is enough for these short-lived apps.
    monkeypatch.setenv("EVENTS_RELAY_LISTEN", "false")

    def make(**overrides: Any) -> Any:
        return running(create_app(settings=settings_for(oidc_standin.url, **overrides)))

    return make


@pytest.fixture
def identity(identity_app: Litestar) -> Iterator[Identity]:
    """The app's shared parts; settings changed through it are restored after the test."""
    state: Identity = identity_app.state.identity
    original_settings, original_passwords = state.settings, state.passwords
    yield state
    state.settings, state.passwords = original_settings, original_passwords


@pytest.fixture(autouse=True)
async def clear_rate_limits(ember_env: Any) -> AsyncIterator[None]:
    redis = Redis.from_url(ember_env.redis_url)
    keys = [key async for key in redis.scan_iter(match="identity:rate:*", count=500)]
    if keys:
        await redis.delete(*keys)
    yield
    await redis.aclose()


@pytest.fixture
async def redis_client(ember_env: Any) -> AsyncIterator[Redis]:
    client = Redis.from_url(ember_env.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def engine(identity_app: Litestar) -> AsyncEngine:
    engine: AsyncEngine = identity_app.state.db_engine
    return engine


@pytest.fixture
async def browsers(identity_app: Litestar) -> AsyncIterator[Callable[..., Browser]]:
    made: list[Browser] = []

    def make(ip: str = "127.0.0.1", app: Litestar | None = None) -> Browser:
        browser = Browser(app or identity_app, ip)
        made.append(browser)
        return browser

    yield make
    for browser in made:
        await browser.aclose()


@pytest.fixture
async def signed_in(browsers: Callable[..., Browser]) -> tuple[Browser, Account]:
    """A browser signed in to a fresh customer account."""
    browser = browsers()
    email, password = new_email(), strong_password()
    response = await browser.register(email, password)
    assert response.status_code == 201, response.text
    body = response.json()
    return browser, Account(email, password, uuid.UUID(body["user"]["id"]), body["access_token"])
