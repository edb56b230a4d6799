"""Fixtures of the catalog's tests: the catalog app in-process on the real test database and
Redis, admin and service credentials, and a small kit to make categories and products.

Every test makes its own products (unique slugs), so tests do not depend on each other; the
background sweeper is off in the shared app (tests drive it), and on in the one test of it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

# The suite runs with --import-mode=importlib, which puts no test folder on sys.path: the
# helpers module beside this file is found through this entry.
sys.path.insert(0, str(Path(__file__).parent))

import httpx
import pytest
from catalog.app import create_app
from catalog.cache import CatalogCache
from catalog_testkit import Kit, running
from ember_shared.testing.plugin import TestEnv
from ember_shared.testing.tokens import TokenFactory
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
    token, _ = tokens.admin(email="barista@ember.test")
    return tokens.bearer(token)


@pytest.fixture(scope="session")
def service_headers(ember_env: TestEnv) -> dict[str, str]:
    return {"X-Service-Token": ember_env.service_token}


@pytest.fixture
def kit(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> Kit:
    return Kit(client, admin_headers)
