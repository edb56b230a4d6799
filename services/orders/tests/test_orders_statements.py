"""How many statements an order's two events send to Postgres (issue 12).

Each statement is a round trip and a piece of the ORM's and asyncpg's work in orders and of
Postgres' own, once per order at the benchmark's rate. Counted: the statements on the order's
own rows (its order, items, history and deferred events, matched by the order id among their
parameters), as the engine sends them; the runtime's handled-events row and the outbox are not.
"""

from __future__ import annotations

import re
import uuid
from contextlib import AbstractContextManager
from typing import Any

from ember_devkit.testing.statements import statements_sent, verb
from litestar import Litestar
from orders_testkit import Checkout, line
from sqlalchemy import event

#: The order's tables, and the lock taken while an order is placed (``orders.placing``).
ORDER_TABLES = re.compile(
    r"\borders\.(orders|order_items|order_status_changes|deferred_events|placing)\b"
)


def statements(app: Litestar, order_id: uuid.UUID) -> AbstractContextManager[list[str]]:
    """``VERB table`` of each statement about ``order_id`` sent while the block runs."""

    def about_the_order(statement: str, parameters: Any, _connection: Any) -> str | None:
        table = ORDER_TABLES.search(statement)
        if table and str(order_id) in repr(parameters):
            return f"{verb(statement)} {table.group(1)}"
        return None

    return statements_sent(app.state.db_engine, about_the_order)


async def test_checkout_started_writes_the_order_its_items_and_history_in_one_statement(
    orders_app: Litestar, deliver, db
) -> None:
    """The lock of the order's placing (``OrderRepository.wait_for_placing``), the order with
    its payment deadline, its items and its first history row in one statement (a
    data-modifying CTE), then its deferred events taken; nothing read back
    (4 statements before: the order, the items and the history row apart, and the ORM's
    DELETE of deferred events)."""
    checkout = Checkout(lines=[line(1800, 2), line(2400, 1)])
    with statements(orders_app, checkout.order_id) as sent:
        assert await deliver(checkout.started())
    assert sent == ["SELECT placing", "WITH orders", "DELETE deferred_events"]
    order = await db.order(checkout.order_id)
    assert order.status == "pending_payment"
    assert order.payment_expires_at is not None
    assert order.tracking_registered is False
    items = await db.rows(
        "SELECT position, unit_price, quantity, line_total FROM orders.order_items"
        " WHERE order_id = :id ORDER BY position",
        id=checkout.order_id,
    )
    assert [tuple(item) for item in items] == [(0, 1800, 2, 3600), (1, 2400, 1, 2400)]
    history = await db.rows(
        "SELECT from_status, to_status, actor, reason FROM orders.order_status_changes"
        " WHERE order_id = :id",
        id=checkout.order_id,
    )
    assert [tuple(h) for h in history] == [
        (None, "pending_payment", "event:checkout.started.v1", "order placed")
    ]


async def test_payment_of_a_started_order_locks_it_and_writes_once(
    orders_app: Litestar, deliver, db
) -> None:
    """The lock (with the items joined: order.paid carries them), then the order's changes,
    its history row and the taking of its deferred events in one statement (4 before: the
    lock, the ORM's UPDATE and history INSERT, the DELETE of deferred events)."""
    checkout = Checkout(lines=[line(1800, 2), line(2400, 1)])
    await deliver(checkout.started())
    with statements(orders_app, checkout.order_id) as sent:
        assert await deliver(checkout.succeeded())
    assert sent == ["SELECT orders", "WITH orders"]
    order = await db.order(checkout.order_id)
    assert order.status == "paid"
    assert order.updated_at > order.created_at
    (paid,) = await db.emitted("order.paid.v1", checkout.order_id)
    assert [(x["unit_price"], x["quantity"]) for x in paid["lines"]] == [(1800, 2), (2400, 1)]


async def test_a_payment_that_changes_nothing_writes_nothing_to_the_order(
    orders_app: Litestar, deliver, db
) -> None:
    """The same payment under another event id finds the order paid with what it carries:
    the order is locked and its deferred events taken, and neither it nor its history is
    written (``updated_at`` stays)."""
    checkout = Checkout()
    await deliver(checkout.started())
    paid = checkout.succeeded()
    assert await deliver(paid)
    before = await db.order(checkout.order_id)
    with statements(orders_app, checkout.order_id) as sent:
        assert await deliver(paid)
    assert sent == ["SELECT orders", "WITH deferred_events"]
    after = await db.order(checkout.order_id)
    assert after.updated_at == before.updated_at
    assert after.guest_link_hash == before.guest_link_hash
    changes = await db.value(
        "SELECT count(*) FROM orders.order_status_changes WHERE order_id = :id",
        id=checkout.order_id,
    )
    assert changes == 2
    assert len(await db.emitted("order.paid.v1", checkout.order_id)) == 1


async def test_an_orders_statements_are_compiled_once_for_every_order(
    orders_app: Litestar, deliver
) -> None:
    """Each statement the two events send about an order is the same for every order, its
    values as parameters: SQLAlchemy compiles it once. The order's INSERT was built with its
    values in ``.values(...)`` and compiled again for every order (4.6 % of orders' CPU)."""
    engine = orders_app.state.db_engine.sync_engine
    compiled: list[list[bool]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, _parameters: Any, context: Any, _many: Any
    ) -> None:
        if ORDER_TABLES.search(statement):
            compiled[-1].append(context.cache_hit == context.dialect.CACHE_HIT)

    event.listen(engine, "before_cursor_execute", record)
    try:
        for _ in range(3):
            compiled.append([])
            checkout = Checkout(lines=[line(1800, 2), line(2400, 1)])
            assert await deliver(checkout.started())
            assert await deliver(checkout.succeeded())
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # The first order may compile them; the others reuse every one.
    assert [len(hits) for hits in compiled] == [5, 5, 5]
    assert compiled[1:] == [[True] * 5, [True] * 5]
