"""The demo shop's shipping rates, which ``make run`` seeds: ``python -m checkout.seed``.

Standard (free from $50, everywhere) and Express (the United States, Canada and the United
Kingdom). Only into an empty table: rates staff have set up are never touched.
"""

from __future__ import annotations

import asyncio

from ember_shared.db import make_engine
from ember_shared.ids import new_id
from ember_shared.settings import service_settings
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from checkout.models import ShippingRate

DEMO_RATES = (
    {
        "code": "standard",
        "name": "Standard",
        "price": 600,
        "free_over": 5000,
        "countries": [],
        "min_days": 3,
        "max_days": 5,
        "position": 0,
    },
    {
        "code": "express",
        "name": "Express",
        "price": 1500,
        "free_over": None,
        "countries": ["CA", "GB", "US"],
        "min_days": 1,
        "max_days": 2,
        "position": 1,
    },
)


async def seed_rates() -> int:
    """The demo rates, when no rate exists yet; answers how many were added."""
    engine = make_engine(service_settings("checkout"))
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            if await session.scalar(select(func.count()).select_from(ShippingRate)):
                return 0
            for rate in DEMO_RATES:
                session.add(ShippingRate(id=new_id(), **rate))
            return len(DEMO_RATES)
    finally:
        await engine.dispose()


async def seed() -> None:
    added = await seed_rates()
    print(f"checkout: {added} demo shipping rates added" if added else "checkout: rates kept")


if __name__ == "__main__":
    asyncio.run(seed())
