"""Invariant 14: order items are snapshots; neither code nor SQL can rewrite them."""

from __future__ import annotations

import pytest
from litestar import Litestar
from orders.models import ImmutableSnapshotError, OrderItem
from orders.ordering.repositories import OrderItemRepository
from orders_testkit import Checkout, line
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def test_database_refuses_update_of_an_order_item(place, orders_app: Litestar, db) -> None:
    checkout = await place(Checkout(lines=[line(1800, 2)]))
    for statement in (
        "UPDATE orders.order_items SET unit_price = 1 WHERE order_id = :id",
        "UPDATE orders.order_items SET quantity = quantity + 1 WHERE order_id = :id",
        "UPDATE orders.order_items SET name = 'Something cheaper' WHERE order_id = :id",
        # The variant columns came by a later migration; the trigger guards them as well.
        "UPDATE orders.order_items SET variant_id = gen_random_uuid() WHERE order_id = :id",
        "UPDATE orders.order_items SET sku = 'other-sku' WHERE order_id = :id",
        "UPDATE orders.order_items SET option_values = '{Espresso}' WHERE order_id = :id",
        "DELETE FROM orders.order_items WHERE order_id = :id",
    ):
        with pytest.raises((IntegrityError, DBAPIError)) as refused:
            await db.rows(statement, id=checkout.order_id)
        assert "immutable" in str(refused.value)
    rows = await db.rows(
        "SELECT name, unit_price, quantity, line_total FROM orders.order_items WHERE order_id = :id",
        id=checkout.order_id,
    )
    assert [(r.unit_price, r.quantity, r.line_total) for r in rows] == [(1800, 2, 3600)]
    assert rows[0].name == checkout.lines[0].name


async def test_trigger_is_part_of_the_migrated_schema(db) -> None:
    triggers = await db.rows(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'orders.order_items'::regclass "
        "AND NOT tgisinternal"
    )
    assert [t.tgname for t in triggers] == ["order_items_immutable"]


async def test_the_model_layer_refuses_to_flush_a_change(place, orders_app: Litestar) -> None:
    checkout = await place()
    sessions = async_sessionmaker(orders_app.state.db_engine, class_=AsyncSession)
    async with sessions() as session:
        item = (
            (
                await session.execute(
                    select(OrderItem).where(OrderItem.order_id == checkout.order_id)
                )
            )
            .scalars()
            .first()
        )
        assert item is not None
        item.unit_price = 1
        with pytest.raises(ImmutableSnapshotError):
            await session.flush()
        await session.rollback()
    async with sessions() as session:
        item = (
            (
                await session.execute(
                    select(OrderItem).where(OrderItem.order_id == checkout.order_id)
                )
            )
            .scalars()
            .first()
        )
        assert item is not None
        await session.delete(item)
        with pytest.raises(ImmutableSnapshotError):
            await session.flush()
        await session.rollback()


def test_the_item_repository_has_no_way_to_change_items() -> None:
    public = {name for name in dir(OrderItemRepository) if not name.startswith("_")}
    assert public == {"add_snapshots", "for_order"}


async def test_database_checks_refuse_inconsistent_rows(place, db) -> None:
    checkout = await place()
    with pytest.raises(IntegrityError):
        await db.rows(
            "UPDATE orders.orders SET status = 'teleported' WHERE id = :id", id=checkout.order_id
        )
    with pytest.raises(IntegrityError):
        await db.rows(
            "UPDATE orders.orders SET amount_refunded = total + 1 WHERE id = :id",
            id=checkout.order_id,
        )
    with pytest.raises(IntegrityError):
        # A line total that is not price x quantity.
        await db.rows(
            "INSERT INTO orders.order_items (id, order_id, position, product_id, slug, name, "
            "image_url, unit_price, quantity, line_total, currency) VALUES (gen_random_uuid(), "
            ":id, 9, gen_random_uuid(), 's', 'n', '', 100, 2, 150, 'USD')",
            id=checkout.order_id,
        )
