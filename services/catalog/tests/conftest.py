"""Fixtures of the catalog's tests: the catalog app in-process on the real test database and
Redis, admin and service credentials, a small kit to make categories and products, and
``deliver``, which hands an event to the handlers as the event runtime does.

Every test makes its own products (unique slugs), so tests do not depend on each other; the
background sweeper is off in the shared app (tests drive it), and on in the one test of it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

# The suite runs with --import-mode=importlib, which puts no test folder on sys.path: the
# helpers module beside this file is found through this entry.
sys.path.insert(0, str(Path(__file__).parent))

import httpx
import pytest
from catalog.app import create_app
from catalog.cache import CatalogCache
from catalog_testkit import Kit, envelope, running
from ember_devkit.testing.plugin import TestEnv
from ember_devkit.testing.tokens import TokenFactory
from ember_shared.events import EventData
from ember_shared.events.consumer import EventConsumer
from litestar import Litestar


@pytest.fixture(scope="session")
def catalog_app(ember_env: TestEnv) -> Litestar:
    os.environ["CATALOG_SWEEP_INTERVAL_SECONDS"] = "0"
    os.environ.setdefault("CATALOG_MAX_UPLOAD_BYTES", str(512 * 1024))
    return create_app()


@pytest.fixture(scope="session")
async def client(catalog_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    # The lifespan runs on this (the tests') event loop, not on a portal thread as
    # AsyncTestClient would: the event runtime, the sweeper and the requests then share one
    # loop, as asyncpg's and Redis's connection pools need.
    async with running(catalog_app):
        transport = httpx.ASGITransport(app=catalog_app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://catalog.test"
        ) as test_client:
            yield test_client


@pytest.fixture(scope="session")
def cache(catalog_app: Litestar, client: httpx.AsyncClient) -> CatalogCache:
    value: CatalogCache = catalog_app.state.catalog_cache
    return value


@pytest.fixture(scope="session")
def admin_headers(tokens: TokenFactory) -> dict[str, str]:
    # One token for the whole session: it must outlive the suite on a loaded machine.
    token, _ = tokens.admin(email="barista@ember.test", expires_in=3600)
    return tokens.bearer(token)


@pytest.fixture(scope="session")
def service_headers(ember_env: TestEnv) -> dict[str, str]:
    return {"X-Service-Token": ember_env.service_token}


@pytest.fixture
def kit(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Kit:
    return Kit(client, admin_headers)


@pytest.fixture
def deliver(catalog_app: Litestar, client: httpx.AsyncClient) -> Any:
    """Handle one event through the app's own event consumer, as a delivery from Redis is
    (its dedupe in handled_events, its transaction, its after-commit cache invalidation);
    whether a handler ran (a repeat is skipped)."""
    consumer: EventConsumer = catalog_app.state.events.consumer

    async def run(data: EventData, *, event_id: str | None = None) -> bool:
        return bool(await consumer.handle(envelope(data, event_id)))

    return run
