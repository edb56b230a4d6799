"""Deletes carts nothing can reach any more: guest carts idle past their cookie's life, and
merged or converted carts as old. Safe with many replicas (rows are taken SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import datetime as dt

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from cart.carts.repositories import CartRepository
from cart.settings import CartSettings

log = structlog.get_logger("cart.sweeper")

BATCH = 500


async def sweep_once(
    engine: AsyncEngine, settings: CartSettings, now: dt.datetime | None = None
) -> int:
    older_than = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=settings.cookie_max_age_s)
    deleted = 0
    while True:
        async with AsyncSession(engine) as session, session.begin():
            count = await CartRepository(session=session).delete_stale(older_than, BATCH)
        deleted += count
        if count < BATCH:
            return deleted


async def sweep_forever(engine: AsyncEngine, settings: CartSettings) -> None:
    while True:
        await asyncio.sleep(settings.sweep_interval_s)
        try:
            deleted = await sweep_once(engine, settings)
        except Exception as exc:  # the sweeper must outlive any outage
            log.warning("cart_sweep_failed", error=str(exc))
        else:
            if deleted:
                log.info("cart_swept", deleted=deleted)
