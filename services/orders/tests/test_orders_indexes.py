"""Each order's writes maintain no index that another index makes redundant (issue 12).

Every item an order writes wrote ``ix_orders_order_items_order_id`` as well as the unique key
(order_id, product_id, variant_id), which leads with order_id and serves the same reads.
"""

from __future__ import annotations

import uuid

from ember_devkit.testing.plans import redundant_indexes
from litestar import Litestar
from sqlalchemy import text


async def test_no_index_of_orders_is_redundant(orders_app: Litestar) -> None:
    async with orders_app.state.db_engine.connect() as connection:
        assert await redundant_indexes(connection, "orders") == []


async def test_an_orders_items_are_still_read_by_an_index(orders_app: Litestar) -> None:
    async with orders_app.state.db_engine.connect() as connection:
        await connection.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            line
            for (line,) in await connection.execute(
                text(
                    "EXPLAIN SELECT * FROM orders.order_items WHERE order_id = :order"
                    " ORDER BY position"
                ),
                {"order": uuid.uuid4()},
            )
        )
        await connection.rollback()
    assert "uq_order_items_order_variant" in plan
