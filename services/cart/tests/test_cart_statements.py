"""How many statements the purchase path's cart work sends to Postgres (issue 12).

Every statement is a round trip and a piece of the ORM's and asyncpg's work in the cart and of
Postgres' own; at the benchmark's 16 buyers they were the cart's largest cost per order. The
counts are of statements on the cart's own tables, seen by the engine as they are sent.
"""

from __future__ import annotations

import os
import re
import uuid
from contextlib import AbstractContextManager
from typing import Any

from cart.events import empty_paid_cart
from cart_testkit import line_of
from ember_devkit.testing.events import envelope
from ember_devkit.testing.statements import statements_sent, verb
from sqlalchemy.ext.asyncio import AsyncSession
from test_cart_events import payment

CART_TABLES = re.compile(r"\bcart\.(carts|cart_items)\b")


def statements(cart_app: Any) -> AbstractContextManager[list[str]]:
    """The statements on the cart's tables sent while the block runs (the relay's and the
    consumer's on their own tables are left out)."""

    def on_cart_tables(statement: str, _parameters: Any, _connection: Any) -> str | None:
        return verb(statement) if CART_TABLES.search(statement) else None

    return statements_sent(cart_app.state.db_engine, on_cart_tables)


async def test_a_guests_first_add_inserts_the_cart_and_its_line_in_one_statement(
    browsers, catalog, cart_app, db
):
    """The cart was made by the request's own transaction: nobody else can reach it before
    the commit, so no lock, no read of lines it cannot have, no touch of a time its insert just
    set, no reread for the answer; the cart and its line go in one statement (8 statements,
    then two INSERTs, before)."""
    product = catalog.add(price=1450)
    guest = browsers()
    with statements(cart_app) as sent:
        response = await guest.add(product, 2)
    assert response.status_code == 201, response.text
    assert sent == ["WITH"]
    cart = response.json()
    assert line_of(cart, product)["quantity"] == 2
    assert cart["subtotal"] == 2900
    row = await db.rows(
        "SELECT status, last_activity_at, created_at FROM cart.carts WHERE id = :id",
        id=uuid.UUID(cart["id"]),
    )
    assert row[0].status == "active"
    assert row[0].last_activity_at == row[0].created_at


async def test_adding_to_an_existing_cart_reads_its_lines_once(browsers, catalog, cart_app):
    """The lock, one read of the lines (for the room check, the line's quantity and the
    answer), the upsert and the touch (7 statements before: the line and the lines were read
    apart, and the lines again for the answer)."""
    first, second = catalog.add(price=900), catalog.add(price=1200)
    guest = browsers()
    await guest.add(first, 1)
    with statements(cart_app) as sent:
        grown = (await guest.add(second, 2)).json()
        again = (await guest.add(first, 2)).json()
    assert sent == ["SELECT", "SELECT", "SELECT", "INSERT", "UPDATE"] * 2
    assert [line["product_id"] for line in grown["lines"]] == [str(first), str(second)]
    assert grown["subtotal"] == 900 + 2 * 1200
    assert [line["quantity"] for line in again["lines"]] == [3, 2]
    assert again["subtotal"] == 3 * 900 + 2 * 1200
    assert again == (await guest.get()).json()


async def test_converting_a_paid_cart_is_two_statements(browsers, catalog, cart_app, db):
    """The conditional update locks and converts, then the lines go (3 before: a locking read
    first); a second delivery's update finds no active cart and stops there."""
    guest = browsers()
    cart_id = uuid.UUID((await guest.add(catalog.add(), 2)).json()["id"])
    data = payment(cart_id)
    engine = cart_app.state.db_engine
    with statements(cart_app) as sent:
        async with AsyncSession(engine) as session, session.begin():
            await empty_paid_cart(envelope(data), data, session)
    assert sent == ["UPDATE", "DELETE"]
    with statements(cart_app) as sent:
        async with AsyncSession(engine) as session, session.begin():
            await empty_paid_cart(envelope(data), data, session)
    assert sent == ["UPDATE"]
    assert await db.value("SELECT status FROM cart.carts WHERE id = :id", id=cart_id) == "converted"
    assert (
        await db.value("SELECT count(*) FROM cart.cart_items WHERE cart_id = :id", id=cart_id) == 0
    )


async def test_resolving_a_guest_cart_for_checkout_is_one_statement(browsers, catalog, cart_app):
    """Checkout resolves every session's cart: the guest cart and its lines are read together
    (2 statements before); an empty cart, a forged token and a converted cart answer as before."""
    a, b = catalog.add(), catalog.add()
    guest = browsers()
    cart_id = (await guest.add(a, 2)).json()["id"]
    await guest.add(b, 1)
    headers = {"X-Service-Token": os.environ["INTERNAL_SERVICE_TOKEN"]}

    async def resolve(token: str | None) -> Any:
        body = {"user_id": None, "cart_token": token}
        answer = await browsers().client.post("/internal/cart/resolve", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.json()

    with statements(cart_app) as sent:
        resolved = await resolve(guest.cart_cookie)
    assert sent == ["SELECT"]
    assert resolved == {
        "cart_id": cart_id,
        "lines": [
            {"product_id": str(a), "variant_id": str(a), "quantity": 2},
            {"product_id": str(b), "variant_id": str(b), "quantity": 1},
        ],
    }
    assert await resolve(guest.cart_cookie[:-2] + "xx") == {"cart_id": None, "lines": []}
    assert await resolve(None) == {"cart_id": None, "lines": []}
    await guest.delete()
    assert await resolve(guest.cart_cookie) == {"cart_id": cart_id, "lines": []}
    data = payment(uuid.UUID(cart_id))
    async with AsyncSession(cart_app.state.db_engine) as session, session.begin():
        await empty_paid_cart(envelope(data), data, session)
    assert await resolve(guest.cart_cookie) == {"cart_id": None, "lines": []}


async def test_a_guest_carts_resolve_reads_in_autocommit(browsers, catalog, cart_app):
    """Its one statement runs without a transaction around it (a BEGIN and a COMMIT round trip
    before); a signed-in shopper's resolve, which may merge, stays in the request's transaction
    (test_cart_merge)."""
    a = catalog.add()
    guest = browsers()
    await guest.add(a, 3)
    headers = {"X-Service-Token": os.environ["INTERNAL_SERVICE_TOKEN"]}

    def transaction_of_the_read(statement: str, _parameters: Any, connection: Any) -> str | None:
        if CART_TABLES.search(statement):
            dbapi = connection.connection.dbapi_connection
            return "autocommit" if getattr(dbapi, "autocommit", False) else "transaction"
        return None

    with statements_sent(cart_app.state.db_engine, transaction_of_the_read) as seen:
        answer = await browsers().client.post(
            "/internal/cart/resolve",
            json={"user_id": None, "cart_token": guest.cart_cookie},
            headers=headers,
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["lines"] == [{"product_id": str(a), "variant_id": str(a), "quantity": 3}]
    assert seen == ["autocommit"]
