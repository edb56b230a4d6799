"""Releases reservations that outlived their expiry, in the background of every replica.

Each pass locks a batch with ``FOR UPDATE SKIP LOCKED``, so replicas share the work instead of
waiting on each other, and commits it before the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator

import structlog
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog.cache import CatalogCache
from catalog.inventory.services import StockKeeper
from catalog.settings import CatalogSettings

log = structlog.get_logger("catalog.sweeper")


async def sweep_once(
    sessions: async_sessionmaker[AsyncSession],
    cache: CatalogCache,
    settings: CatalogSettings,
    *,
    now: dt.datetime | None = None,
) -> int:
    """One pass, batch after batch until nothing expired is left; the number released."""
    total = 0
    while True:
        async with sessions() as session, session.begin():
            released = await StockKeeper(session, cache, settings).sweep(now=now)
        total += released
        if released < settings.sweep_batch:
            return total


async def sweep_forever(
    sessions: async_sessionmaker[AsyncSession], cache: CatalogCache, settings: CatalogSettings
) -> None:
    while True:
        try:
            released = await sweep_once(sessions, cache, settings)
            if released:
                log.info("expired_reservations_released", count=released)
        except Exception as exc:
            log.warning("sweep_failed", error=str(exc))
        await asyncio.sleep(settings.sweep_interval_seconds)


@contextlib.asynccontextmanager
async def sweeper_lifespan(app: Litestar) -> AsyncIterator[None]:
    settings: CatalogSettings = app.state.catalog_settings
    if settings.sweep_interval_seconds <= 0:
        yield
        return
    task = asyncio.create_task(
        sweep_forever(app.state.catalog_sessions, app.state.catalog_cache, settings),
        name="catalog-sweeper",
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
