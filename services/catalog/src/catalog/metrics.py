"""Catalog's own figures for ``/metrics``: stock held for checkouts that have not paid yet."""

from __future__ import annotations

from ember_shared.metrics import scrape_gauge
from litestar import Litestar
from sqlalchemy import func, select

from catalog.models import Inventory, Reservation

RESERVATIONS_HELD = scrape_gauge(
    "ember_reservations_held", "Active stock reservations (checkouts not yet paid).", ["service"]
)
UNITS_RESERVED = scrape_gauge(
    "ember_units_reserved", "Units held by active reservations.", ["service"]
)


async def reservations_probe(app: Litestar) -> None:
    # Both read an index (the partial one on active reservations) or a small table, not orders.
    held = select(func.count()).where(Reservation.status == "active")
    units = select(func.coalesce(func.sum(Inventory.reserved), 0))
    async with app.state.db_engine.connect() as connection:
        RESERVATIONS_HELD.labels(service="catalog").set(
            (await connection.execute(held)).scalar_one()
        )
        UNITS_RESERVED.labels(service="catalog").set((await connection.execute(units)).scalar_one())
