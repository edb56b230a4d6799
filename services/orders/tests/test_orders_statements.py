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

ORDER_TABLES = re.compile(r"\borders\.(orders|order_items|order_status_changes|deferred_events)\b")


def statements(app: Litestar, order_id: uuid.UUID) -> AbstractContextManager[list[str]]:
    """``VERB table`` of each statement about ``order_id`` sent while the block runs."""

    def about_the_order(statement: str, parameters: Any, _connection: Any) -> str | None:
        table = ORDER_TABLES.search(statement)
        if table and str(order_id) in repr(parameters):
            return f"{verb(statement)} {table.group(1)}"
        return None

    return statements_sent(app.state.db_engine, about_the_order)


async def test_checkout_started_inserts_the_order_and_reads_nothing_back(
    orders_app: Litestar, deliver, db
) -> None:
    """The order is inserted with its payment deadline; it is locked and read back only when
    events were waiting for it (7 statements before: the order and its items read back, then
    the deadline updated)."""
    checkout = Checkout(lines=[line(1800, 2), line(2400, 1)])
    with statements(orders_app, checkout.order_id) as sent:
        assert await deliver(checkout.started())
    assert sorted(sent) == [
        "DELETE deferred_events",
        "INSERT order_items",
        "INSERT order_status_changes",
        "INSERT orders",
    ]
    order = await db.order(checkout.order_id)
    assert order.status == "pending_payment"
    assert order.payment_expires_at is not None


async def test_payment_of_a_started_order_locks_it_once_and_reads_its_items_once(
    orders_app: Litestar, deliver, db
) -> None:
    """The lock (with the items joined: order.paid carries them), the update, the history row
    and the deferred events (7 before: an insert that found the order first, the items read
    apart from the lock, and a second time for order.paid)."""
    checkout = Checkout(lines=[line(1800, 2), line(2400, 1)])
    await deliver(checkout.started())
    with statements(orders_app, checkout.order_id) as sent:
        assert await deliver(checkout.succeeded())
    assert sorted(sent) == [
        "DELETE deferred_events",
        "INSERT order_status_changes",
        "SELECT orders",
        "UPDATE orders",
    ]
    assert (await db.order(checkout.order_id)).status == "paid"
    (paid,) = await db.emitted("order.paid.v1", checkout.order_id)
    assert [(x["unit_price"], x["quantity"]) for x in paid["lines"]] == [(1800, 2), (2400, 1)]


async def test_the_items_insert_is_compiled_once_for_every_order(
    orders_app: Litestar, deliver
) -> None:
    """The items' INSERT is the same statement for every order, its rows as parameters: SQLAlchemy
    never caches a statement whose VALUES hold the rows, so that one was compiled again for
    every paid order."""
    engine = orders_app.state.db_engine.sync_engine
    compiled: list[bool] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, _parameters: Any, context: Any, _many: Any
    ) -> None:
        if statement.startswith("INSERT INTO orders.order_items"):
            compiled.append(context.cache_hit == context.dialect.CACHE_HIT)

    event.listen(engine, "before_cursor_execute", record)
    try:
        for _ in range(3):
            assert await deliver(Checkout(lines=[line(1800, 2), line(2400, 1)]).started())
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # The first may compile it; the others reuse it.
    assert len(compiled) == 3
    assert compiled[1:] == [True, True]
