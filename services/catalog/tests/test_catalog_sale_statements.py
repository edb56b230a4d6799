"""A paid order in catalog (issue 12): the statements its lookup, reservation and sale send.

Once per order at the benchmark's rate; each statement is a round trip and a piece of the ORM's
and asyncpg's work in catalog and of Postgres' own.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from catalog_testkit import Kit, reserve, stock, values_sent
from ember_devkit.testing.statements import (
    each_built_once,
    statement_objects_sent,
    statements_sent,
    verb,
)
from litestar import Litestar
from test_catalog_stock import paid, reservation_status

STOCK_TABLES = re.compile(r"\bcatalog\.(reservations|reservation_lines|inventory)\b")


async def test_a_payment_sells_its_reservation_in_two_statements(
    catalog_app: Litestar, client: Any, kit: Kit, service_headers: dict[str, str], deliver: Any
) -> None:
    """The reservation moves to committed and answers its lines in one statement, then the
    line's stock is sold (4 before: the reservation read, its lines read, then updated); a
    second payment of the order finds no active reservation, reads it and stops."""
    product = await kit.product(on_hand=10)
    order_id = uuid.uuid4()
    made = await reserve(client, service_headers, [(product["id"], 2)], order_id=order_id)
    ours = {str(order_id), made.json()["reservation_id"], product["id"]}

    def this_orders(statement: str, parameters: Any, _connection: Any) -> str | None:
        table = STOCK_TABLES.search(statement)
        if table and ours & values_sent(parameters):
            return f"{verb(statement)} {table.group(1)}"
        return None

    with statements_sent(catalog_app.state.db_engine, this_orders) as sent:
        assert await deliver(paid(order_id, [(product["id"], 2)]))
        first = list(sent)
        sent.clear()
        assert await deliver(paid(order_id, [(product["id"], 2)]))

    assert first == ["WITH reservations", "UPDATE inventory"]
    assert sent[0] == "WITH reservations"
    assert "UPDATE inventory" not in sent
    assert await stock(client, kit, product["id"]) == (8, 0)
    assert await reservation_status(order_id) == "committed"


async def test_the_lookup_reads_in_autocommit(
    catalog_app: Litestar, client: Any, kit: Kit, service_headers: dict[str, str]
) -> None:
    """Cart asks once per write: its one statement runs without a transaction around it (a
    BEGIN and a COMMIT round trip before), and answers as before."""
    product = await kit.product(price=1850, on_hand=9)

    def transaction_of_the_read(statement: str, parameters: Any, connection: Any) -> str | None:
        if "catalog.variants" in statement and product["id"] in values_sent(parameters):
            dbapi = connection.connection.dbapi_connection
            return "autocommit" if getattr(dbapi, "autocommit", False) else "transaction"
        return None

    with statements_sent(catalog_app.state.db_engine, transaction_of_the_read) as seen:
        response = await client.post(
            "/internal/catalog/products/lookup",
            json={"product_ids": [product["id"]]},
            headers=service_headers,
        )
    assert response.status_code == 200, response.text
    (found,) = response.json()["products"]
    assert (found["id"], found["price"], found["available"]) == (product["id"], 1850, 9)
    assert seen == ["autocommit"]


def order_path_statement(text: str) -> str | None:
    """The kind of each statement of an order's path in catalog (None: another one)."""
    if text.startswith("SELECT") and "AS image_url" in text:
        return "lookup"
    if text.startswith("WITH claimed AS"):
        return "reservation"
    if text.startswith("WITH sold AS"):
        return "sale"
    sells = "on_hand=(catalog.inventory.on_hand -" in text
    if text.startswith("UPDATE catalog.inventory") and sells and "reserved=(" in text:
        return "stock sold"
    return None


def order_path_objects_sent(engine: Any, ids: set[str]) -> Any:
    """The statement objects of each kind of ``order_path_statement`` that name one of ``ids``
    among their parameters (the suite's other requests share the engine)."""
    return statement_objects_sent(
        engine, order_path_statement, lambda parameters: bool(ids & values_sent(parameters))
    )


async def test_an_orders_statements_are_built_once(
    catalog_app: Litestar, client: Any, kit: Kit, service_headers: dict[str, str], deliver: Any
) -> None:
    """Cart's lookup, checkout's priced reservation and the payment's sale send statements
    built once and reused (SQLAlchemy memoizes a statement's cache key on it; one built per
    call was constructed and walked for its key again, for every order), and two orders
    still get their own answers."""
    kinds = {"reservation", "sale", "stock sold"}
    product = await kit.product(price=1850, on_hand=10)
    answers = []
    orders = {1: uuid.uuid4(), 2: uuid.uuid4()}
    ours = {product["id"], *(str(order_id) for order_id in orders.values())}
    with order_path_objects_sent(catalog_app.state.db_engine, ours) as sent:
        for quantity, order_id in orders.items():
            looked_up = await client.post(
                "/internal/catalog/products/lookup",
                json={"product_ids": [product["id"]]},
                headers=service_headers,
            )
            made = await reserve(
                client, service_headers, [(product["id"], quantity)], order_id=order_id, priced=True
            )
            assert await deliver(paid(order_id, [(product["id"], quantity)]))
            answers.append((looked_up.json()["products"][0]["available"], made.json()))
    assert each_built_once(sent, kinds, 2), {kind: len(sent.get(kind, [])) for kind in kinds}
    assert each_built_once(sent, {"lookup"}, 2), len(sent.get("lookup", []))
    (before_first, first), (before_second, second) = answers
    assert (before_first, before_second) == (10, 9)
    assert [line["quantity"] for line in first["lines"]] == [1]
    assert [line["quantity"] for line in second["lines"]] == [2]
    assert (first["variants"][0]["available"], second["variants"][0]["available"]) == (9, 7)
    assert await stock(client, kit, product["id"]) == (7, 0)
    assert await reservation_status(order_id) == "committed"
