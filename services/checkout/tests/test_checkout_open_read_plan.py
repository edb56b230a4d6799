"""A start's read of its cart's open checkouts keeps Postgres' generic plan (issue 12).

Postgres plans a prepared statement for the values it is given until a plan made for any
values (generic) looks no dearer. With the status bound, the generic plan could not use the
partial index ``ix_checkout_sessions_cart_open`` (``cart_id WHERE status = 'open'``) and read
the whole table, so every start's read was planned again (~0.14 ms of Postgres' CPU per start
on the bench's devstack, pg_stat_statements' ``plans`` = ``calls``).
``plans_made`` (``pg_prepared_statements``) says, per connection, how each was planned.
"""

from __future__ import annotations

import uuid

from checkout.sessions.repositories import CheckoutSessionRepository
from checkout_testkit import World
from ember_devkit.testing.plans import generic_kept, plans_made
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

RUNS = 8
STATEMENT = "SELECT checkout.checkout_sessions.id,% AND checkout.checkout_sessions.status = 'open' ORDER BY%"
#: Checkouts settled long ago: a shop's table is mostly these.
SETTLED = 3000


async def test_the_carts_open_checkouts_read_keeps_the_generic_plan(world: World) -> None:
    async with world.engine.connect() as connection:
        await connection.execute(
            text(
                "INSERT INTO checkout.checkout_sessions (id, order_id, status, cart_id,"
                " content_hash, email, lines, subtotal, shipping, total, currency,"
                " shipping_address, reservation_id, expires_at, stripe_session_id, checkout_url)"
                " SELECT gen_random_uuid(), gen_random_uuid(), 'paid', gen_random_uuid(), 'h',"
                " 'buyer@example.com', '[]', 0, 0, 0, 'GBP', '{}', gen_random_uuid(), now(),"
                " 'cs_plan_' || gen_random_uuid(), 'https://pay.test'"
                " FROM generate_series(1, :settled)"
            ),
            {"settled": SETTLED},
        )
        await connection.execute(text("ANALYZE checkout.checkout_sessions"))
        repository = CheckoutSessionRepository(AsyncSession(bind=connection))
        before = await plans_made(connection, STATEMENT)
        for _ in range(RUNS):
            assert await repository.open_for_cart(uuid.uuid4()) == []
        after = await plans_made(connection, STATEMENT)
        await connection.rollback()
    assert generic_kept(before, after, RUNS), (before, after)
