"""Checkout's test world: the real identity, catalog, cart and checkout apps and the Stripe
stand-in, each served over real HTTP by uvicorn (in this process, on the test loop, on free
ports), on the test run's Postgres and Redis. Events travel for real: checkout's outbox relay
publishes to Redis Streams and catalog's and cart's consumers act on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from ember_devkit.testing.plugin import TestEnv
from ember_devkit.testing.ports import free_port
from ember_devkit.testing.tokens import TokenFactory
from ember_shared.settings import DatabaseSettings, service_settings
from sqlalchemy.ext.asyncio import create_async_engine

# The suite runs with --import-mode=importlib, which puts no test folder on sys.path: the
# helpers module beside this file is found through this entry.
sys.path.insert(0, str(Path(__file__).parent))

from checkout_testkit import WEBHOOK_SECRET, World, serve


@pytest.fixture(scope="session")
async def world(ember_env: TestEnv, tokens: TokenFactory) -> AsyncIterator[World]:
    ports = {name: free_port() for name in ("identity", "catalog", "cart", "checkout", "stripe")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        "CATALOG_URL": urls["catalog"],
        "CART_URL": urls["cart"],
        "CHECKOUT_URL": urls["checkout"],
        "IDENTITY_URL": urls["identity"],
        "STRIPE_STANDIN_URL": urls["stripe"],
        "STRIPE_API_BASE": urls["stripe"],
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_STANDIN_PUBLIC_URL": urls["stripe"],
        "STRIPE_STANDIN_WEBHOOK_URL": urls["checkout"] + "/api/webhooks/stripe",
        "STRIPE_STANDIN_STATE_FILE": "memory",
        "STRIPE_STANDIN_RETRY_BASE_SECONDS": "0.2",
        "STRIPE_STANDIN_MAX_ATTEMPTS": "6",
        "STRIPE_STANDIN_ASYNC_SETTLE_SECONDS": "0",
        "PUBLIC_URL": "http://shop.test",
        # Every shopper here is 127.0.0.1 and most guests share one address: the hold budgets
        # are lifted (test_checkout_budgets sets them back on the running app).
        "CHECKOUT_MAX_OPEN_PER_CLIENT": "100",
        "CHECKOUT_MAX_OPEN_PER_EMAIL": "100",
        "EVENTS_RELAY_INTERVAL_MS": "50",
        "CART_SWEEP_INTERVAL_S": "0",
        # These tests withhold and order webhooks by hand: no reconciler may answer for them.
        "CHECKOUT_RECONCILE_INTERVAL_S": "0",
        # Totals here are asserted without tax; test_checkout_offers turns it on where it tests it.
        "CHECKOUT_TAX": "false",
    }
    previous = {name: os.environ.get(name) for name in env}
    os.environ.pop("STRIPE_SECRET_KEY", None)
    os.environ.update(env)
    service_settings.cache_clear()

    from dataclasses import replace

    from cart.app import create_app as cart_app
    from catalog.app import create_app as catalog_app
    from checkout.app import create_app as checkout_app
    from identity.app import create_app as identity_app
    from identity.settings import IdentitySettings
    from standins.stripe import create_app as stripe_app

    identity_settings = replace(
        IdentitySettings(),
        argon2_time_cost=1,
        argon2_memory_cost=8192,
        argon2_parallelism=1,
        hibp_api_url="offline",
    )
    apps = {
        "stripe": stripe_app(),
        "identity": identity_app(settings=identity_settings),
        "catalog": catalog_app(),
        "cart": cart_app(),
        "checkout": checkout_app(),
    }
    running = []
    engine = create_async_engine(DatabaseSettings().async_url)
    http = httpx.AsyncClient(timeout=20.0)
    try:
        for name in ("stripe", "identity", "catalog", "cart", "checkout"):
            running.append(await serve(apps[name], ports[name]))
        the_world = World(
            env=ember_env,
            tokens=tokens,
            catalog_url=urls["catalog"],
            cart_url=urls["cart"],
            checkout_url=urls["checkout"],
            standin_url=urls["stripe"],
            identity_url=urls["identity"],
            engine=engine,
            http=http,
            apps=apps,
        )
        yield the_world
        for client in the_world.clients:
            await client.aclose()
    finally:
        for server, _ in reversed(running):
            server.should_exit = True
        for _, task in reversed(running):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await http.aclose()
        await engine.dispose()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        service_settings.cache_clear()
