"""The statements every one-line order sends to catalog keep Postgres' generic plan (issue 12).

Postgres plans a prepared statement for the values it is given until a plan made for any values
looks no dearer; against ``id = ANY(:array)`` it guesses ten elements, so the one-variant
lookup and the priced reservation were planned again at every execution (~0.3 and ~0.5 ms of
Postgres' CPU per order on the bench's devstack, pg_stat_statements' ``plans`` = ``calls``).
``plans_made`` (``pg_prepared_statements``) says, per connection, how each was planned.
"""

from __future__ import annotations

import datetime as dt
import uuid

from catalog.inventory.repositories import InventoryRepository, ReservationRepository
from catalog_testkit import Kit
from ember_devkit.testing.plans import generic_kept, plans_made
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession

RUNS = 8
LOOKUP, RESERVATION = "SELECT catalog.variants.id AS variant_id%", "WITH claimed AS%looked_up%"


async def test_a_one_line_orders_lookup_and_reservation_keep_the_generic_plan(
    catalog_app: Litestar, kit: Kit
) -> None:
    product = await kit.product(on_hand=100)
    variant = uuid.UUID(product["id"])
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    async with catalog_app.state.db_engine.connect() as connection:
        session = AsyncSession(bind=connection)
        inventory, reservations = InventoryRepository(session), ReservationRepository(session)
        before = [await plans_made(connection, like) for like in (LOOKUP, RESERVATION)]
        for _ in range(RUNS):
            (row,) = await inventory.lookup([variant])
            assert row.variant_id == variant
            opened = await reservations.open(
                uuid.uuid4(), uuid.uuid4(), expires, (variant, variant, 1), [variant]
            )
            assert opened is not None
            assert opened.first is not None
            assert [r.variant_id for r in opened.looked_up] == [variant]
        after = [await plans_made(connection, like) for like in (LOOKUP, RESERVATION)]
        await connection.rollback()
    assert generic_kept(before[0], after[0], RUNS), (before, after)
    assert generic_kept(before[1], after[1], RUNS), (before, after)
