"""Browsing through a Redis outage: reads fall back to Postgres, a write made meanwhile is never
hidden by the entries a restarted Redis reloads (even when the process that made it is gone)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from catalog.app import create_app
from catalog_testkit import Kit, running
from ember_devkit.embedded import EmbeddedRedis
from ember_shared.settings import service_settings


@pytest.fixture
def catalog_on(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``async with catalog_on(redis_url) as kit``: a catalog process of its own on that Redis."""

    @asynccontextmanager
    async def start(redis_url: str, admin: dict[str, str]) -> AsyncIterator[Kit]:
        monkeypatch.setenv("REDIS_URL", redis_url)
        service_settings.cache_clear()
        try:
            app = create_app()
        finally:
            service_settings.cache_clear()
        async with running(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://c.test") as client:
                yield Kit(client, admin)

    return start


async def _page(kit: Kit, slug: str) -> tuple[int, str, str]:
    response = await kit.client.get(f"/api/products/{slug}")
    body = response.json() if response.status_code == 200 else {}
    return response.status_code, body.get("availability", ""), response.headers.get("x-cache", "")


async def _cached(kit: Kit, slug: str, shown: str) -> None:
    deadline = time.monotonic() + 10
    while (page := await _page(kit, slug)) != (200, shown, "hit"):
        assert page[:2] == (200, shown)
        assert time.monotonic() < deadline, "the cache never served again"
        await asyncio.sleep(0.05)


async def test_browsing_survives_a_redis_outage_and_shows_no_stale_stock_after_it(
    catalog_on: Callable[..., Any], admin_headers: dict[str, str], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=True)  # reloads its entries on restart
    url = server.start()
    try:
        async with catalog_on(url, admin_headers) as kit:
            product = await kit.product(on_hand=20)
            slug, pid = product["slug"], product["id"]
            assert (await _page(kit, slug))[:2] == (200, "in_stock")
            assert await _page(kit, slug) == (200, "in_stock", "hit")

            server.stop()
            # Sold out during the outage: the write succeeds, its invalidation cannot.
            assert (await kit.set_stock(pid, 0)).status_code == 200
            for _ in range(5):
                assert (await _page(kit, slug))[:2] == (200, "sold_out")
            listing = await kit.client.get("/api/products", params={"q": product["name"]})
            assert listing.status_code == 200
            mine = [p for p in listing.json()["items"] if p["slug"] == slug]
            assert [p["availability"] for p in mine] == ["sold_out"]

            server.start()  # with the "in stock" page it held before the outage
            seen = {await _page(kit, slug) for _ in range(30)}
            assert {(status, shown) for status, shown, _ in seen} == {(200, "sold_out")}

            # The cache serves again once its guard has replayed the kept invalidation.
            await _cached(kit, slug, "sold_out")
            # A second outage: the process that makes a write dies before Redis is back.
            server.stop()
            assert (await kit.set_stock(pid, 3)).status_code == 200

        server.start()
        async with catalog_on(url, admin_headers) as fresh:
            assert (await _page(fresh, slug))[:2] == (200, "low_stock")
            await _cached(fresh, slug, "low_stock")
    finally:
        server.stop()
