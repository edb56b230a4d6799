"""Starting a checkout: re-pricing, reservation, the Stripe session, and what goes wrong."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from checkout_testkit import ADDRESS, World, orm_handling_of_checkouts
from ember_devkit.testing.statements import parameter_texts, statements_sent
from sqlalchemy import text


async def test_guest_checkout_opens_a_stripe_session_priced_from_catalog(world: World) -> None:
    shopper, product_id = await world.basket(price=1850, quantity=2)

    response = await shopper.checkout()

    assert response.status_code == 201, response.text
    body = response.json()
    order_id = body["order_id"]
    assert body["status"] == "open"
    assert body["subtotal"] == 3700
    assert body["shipping"] == 600  # under the free-shipping threshold
    assert body["total"] == 4300
    assert body["currency"] == "USD"
    assert body["lines"][0]["unit_price"] == 1850
    assert body["lines"][0]["quantity"] == 2
    assert body["checkout_url"].startswith(world.standin_url + "/pay/cs_test_")

    # Stripe's session: our amounts, the order id in metadata, the email, the return URLs.
    row = await world.row(order_id)
    stripe = await world.stripe_session(row["stripe_session_id"])
    session, items = stripe["session"], stripe["line_items"]
    assert session["amount_total"] == 4300
    assert session["currency"] == "usd"
    assert session["metadata"] == {
        "order_id": order_id,
        "checkout_session_id": body["checkout_session_id"],
    }
    assert session["client_reference_id"] == order_id
    assert session["customer_email"] == "guest@example.com"
    assert (
        session["success_url"]
        == f"http://shop.test/order/{order_id}?session_id={{CHECKOUT_SESSION_ID}}"
    )
    assert session["cancel_url"] == "http://shop.test/cart"
    assert [(i["price"]["unit_amount"], i["quantity"]) for i in items] == [(1850, 2)]

    # Catalog holds the stock until a little after Stripe's page closes.
    reservation = await world.reservation(order_id)
    assert reservation is not None
    assert reservation["status"] == "active"
    assert str(reservation["reservation_id"]) == str(row["reservation_id"])
    reservation_end = dt.datetime.fromisoformat(reservation["expires_at"]).timestamp()
    assert 60 <= reservation_end - session["expires_at"] <= 180
    assert session["expires_at"] - dt.datetime.now(dt.UTC).timestamp() >= 30 * 60
    assert (await world.stock(product_id))["available"] == 18

    started = await world.outbox(order_id, "checkout.started.v1")
    assert len(started) == 1
    data = started[0]["data"]
    assert data["total"] == 4300
    assert data["email"] == "guest@example.com"
    assert data["lines"][0]["name"]
    assert data["lines"][0]["unit_price"] == 1850
    assert data["shipping_address"]["country"] == "GB"


async def test_a_new_checkout_prices_and_reserves_in_one_call_to_catalog(world: World) -> None:
    shopper, product_id = await world.basket(price=1850, quantity=2)
    catalog = world.apps["checkout"].state.upstream.catalog
    calls: list[str] = []

    async def note(request: httpx.Request) -> None:
        calls.append(f"{request.method} {request.url.path}")

    catalog.event_hooks["request"].append(note)
    try:
        response = await shopper.checkout(expected_total=1850 * 2 + 600)
    finally:
        catalog.event_hooks["request"].remove(note)

    assert response.status_code == 201, response.text
    assert calls == ["POST /internal/catalog/reservations"]
    body = response.json()
    assert body["lines"][0]["unit_price"] == 1850
    assert body["lines"][0]["name"].startswith("Test Coffee")
    assert body["total"] == 4300
    assert (await world.stock(product_id))["available"] == 18


async def test_free_shipping_over_the_threshold(world: World) -> None:
    shopper, _ = await world.basket(price=2600, quantity=2)
    response = await shopper.checkout()
    assert response.status_code == 201, response.text
    assert response.json()["shipping"] == 0
    assert response.json()["total"] == 5200


async def test_signed_in_shopper_defaults_to_the_token_email(world: World) -> None:
    product_id = await world.product(price=1200)
    shopper = world.customer(email="member@example.com")
    await shopper.add(product_id)
    response = await shopper.checkout()
    assert response.status_code == 201, response.text
    assert response.json()["email"] == "member@example.com"
    row = await world.row(response.json()["order_id"])
    assert row["user_id"] == shopper.user_id


async def test_quote_prices_the_cart_without_reserving(world: World) -> None:
    shopper, product_id = await world.basket(price=999, quantity=3)
    response = await shopper.quote()
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 999 * 3 + 600
    assert (await world.stock(product_id))["available"] == 20


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"email": None}, "email-required"),
        ({"shipping_address": None}, "address-required"),
        ({"saved_address_id": str(uuid.uuid4())}, "address-required"),
        ({"shipping_address": {**ADDRESS, "country": "Britain"}}, "validation"),
        ({"shipping_address": {**ADDRESS, "country": "ZZ"}}, "validation"),  # no such country
        ({"shipping_address": {**ADDRESS, "name": ""}}, "validation"),
        ({"email": "not-an-email"}, "validation"),
        ({"expected_total": -1}, "validation"),
        # A client-sent price is not a thing the route takes at all.
        ({"lines": [{"product_id": str(uuid.uuid4()), "unit_price": 1}]}, "validation"),
    ],
)
async def test_bad_input_is_a_problem(world: World, body: dict[str, object], kind: str) -> None:
    shopper, _ = await world.basket()
    response = await shopper.checkout(**body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/" + kind)


async def test_empty_cart_is_refused(world: World) -> None:
    response = await world.guest().checkout()
    assert response.status_code == 409
    assert response.json()["type"].endswith("/cart-empty")


async def test_guest_saved_address_needs_sign_in(world: World) -> None:
    shopper, _ = await world.basket()
    response = await shopper.checkout(shipping_address=None, saved_address_id=str(uuid.uuid4()))
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_double_click_opens_one_session_and_one_reservation(world: World) -> None:
    shopper, product_id = await world.basket(quantity=2)

    first, second = await asyncio.gather(shopper.checkout(), shopper.checkout())

    assert sorted([first.status_code, second.status_code]) == [200, 201], (first.text, second.text)
    assert first.json()["order_id"] == second.json()["order_id"]
    assert first.json()["checkout_url"] == second.json()["checkout_url"]
    assert (await world.stock(product_id))["available"] == 18  # one reservation of 2, not two
    # A third click later still answers the same open session.
    third = await shopper.checkout()
    assert third.status_code == 200
    assert third.json()["order_id"] == first.json()["order_id"]


async def test_changed_cart_closes_the_previous_session_and_frees_its_stock(world: World) -> None:
    shopper, product_id = await world.basket(quantity=1)
    first = await shopper.checkout()
    assert first.status_code == 201
    old_order = first.json()["order_id"]
    old_row = await world.row(old_order)

    await shopper.add(product_id, 1)
    second = await shopper.checkout()

    assert second.status_code == 201, second.text
    assert second.json()["order_id"] != old_order
    assert (await world.stripe_session(old_row["stripe_session_id"]))["session"][
        "status"
    ] == "expired"
    assert (await world.reservation(old_order))["status"] == "released"  # type: ignore[index]
    assert (await world.stock(product_id))["available"] == 18
    # Stripe's expiry webhook closes the old checkout here too.
    await world.checkout_status(old_order, "expired")


async def test_price_change_is_shown_before_paying_and_charged_at_the_new_price(
    world: World,
) -> None:
    shopper, product_id = await world.basket(price=1500, quantity=2)
    shown = (await shopper.quote()).json()["total"]
    assert shown == 3600
    await world.set_price(product_id, 1700)

    refused = await shopper.checkout(expected_total=shown)

    assert refused.status_code == 409
    problem = refused.json()
    assert problem["type"].endswith("/price-changed")
    assert problem["expected_total"] == 3600
    assert problem["total"] == 4000
    assert problem["lines"][0]["unit_price"] == 1700
    assert (await world.stock(product_id))["available"] == 20  # nothing reserved

    accepted = await shopper.checkout(expected_total=problem["total"])
    assert accepted.status_code == 201, accepted.text
    row = await world.row(accepted.json()["order_id"])
    items = (await world.stripe_session(row["stripe_session_id"]))["line_items"]
    assert items[0]["price"]["unit_amount"] == 1700
    assert row["total"] == 4000


async def test_archived_and_short_lines_are_named(world: World) -> None:
    archived = await world.product(name="Discontinued Blend")
    short = await world.product(name="Rare Geisha", on_hand=2)
    shopper = world.guest()
    await shopper.add(archived)
    await shopper.add(short, 2)
    await world.archive(archived)
    await world.set_stock(short, 1)

    response = await shopper.checkout()

    assert response.status_code == 409
    problem = response.json()
    assert problem["type"].endswith("/lines-unavailable")
    named = {line["product_id"]: line for line in problem["unavailable"]}
    assert named[str(archived)]["reason"] == "archived"
    assert named[str(short)]["reason"] == "insufficient_stock"
    assert named[str(short)]["available"] == 1
    assert "Rare Geisha" in problem["detail"]
    assert "Discontinued Blend" in problem["detail"]


async def test_two_browsers_for_the_last_unit_make_one_order_and_one_clear_refusal(
    world: World,
) -> None:
    product_id = await world.product(name="Last Bag", on_hand=1)
    first, second = world.guest(), world.guest()
    await first.add(product_id)
    await second.add(product_id)

    answers = await asyncio.gather(first.checkout(), second.checkout())

    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    refusal = next(a for a in answers if a.status_code == 409).json()
    assert refusal["type"].endswith("/lines-unavailable")
    assert refusal["unavailable"][0]["product_id"] == str(product_id)
    assert "Last Bag" in refusal["detail"]
    stock = await world.stock(product_id)
    assert stock["available"] == 0


async def test_status_is_for_its_owner_only(world: World) -> None:
    shopper, _ = await world.basket()
    started = (await shopper.checkout()).json()
    order_id = started["order_id"]
    stripe_id = (await world.row(order_id))["stripe_session_id"]

    mine = await shopper.status(order_id)
    assert mine.status_code == 200
    assert mine.json()["status"] == "open"
    assert mine.json()["checkout_url"] == started["checkout_url"]

    stranger = world.guest()
    assert (await stranger.status(order_id)).status_code == 404
    assert (await world.customer().status(order_id)).status_code == 404
    assert (await stranger.status(order_id, session_id="cs_test_wrong")).status_code == 404
    # Stripe's redirect carries the session id: that holder may look.
    assert (await stranger.status(order_id, session_id=stripe_id)).status_code == 200
    assert (await stranger.status(str(uuid.uuid4()))).status_code == 404

    # But only for the success page: the id rests in clear (we talk to Stripe with it), so an
    # hour after the payment, or after the session's expiry while unpaid, it opens nothing.
    async def moved(column: str, minutes_ago: int) -> None:
        async with world.engine.begin() as connection:
            await connection.execute(
                text(
                    f"UPDATE checkout.checkout_sessions SET {column} = now() - make_interval("
                    "mins => :m) WHERE order_id = :o"
                ),
                {"m": minutes_ago, "o": order_id},
            )

    await moved("expires_at", 61)
    assert (await stranger.status(order_id, session_id=stripe_id)).status_code == 404
    await moved("paid_at", 59)
    assert (await stranger.status(order_id, session_id=stripe_id)).status_code == 200
    await moved("paid_at", 61)
    assert (await stranger.status(order_id, session_id=stripe_id)).status_code == 404
    assert (await shopper.status(order_id)).status_code == 200


async def test_signed_in_owner_reads_their_checkout(world: World) -> None:
    product_id = await world.product()
    shopper = world.customer()
    await shopper.add(product_id)
    order_id = (await shopper.checkout()).json()["order_id"]
    assert (await shopper.status(order_id)).status_code == 200
    assert (await world.customer().status(order_id)).status_code == 404


async def test_a_saved_address_is_read_from_identitys_internal_route(world: World) -> None:
    """Checkout asks identity for (this shopper's id, the address id) with the service
    credential; the shopper's own token is never relayed."""
    member = await world.member()
    assert member.token is not None
    saved = await member.http.post(
        f"{world.identity_url}/api/user/addresses",
        json={
            "name": "Grace Hopper",
            "line1": "1 Navy Yard",
            "city": "Arlington",
            "postal_code": "22202",
            "country": "us",
            "state": "VA",
        },
        headers={"Authorization": f"Bearer {member.token}"},
    )
    assert saved.status_code == 201, saved.text
    product_id = await world.product()
    await member.add(product_id)

    response = await member.checkout(shipping_address=None, saved_address_id=saved.json()["id"])

    assert response.status_code == 201, response.text
    address = (await world.row(response.json()["order_id"]))["shipping_address"]
    assert address["name"] == "Grace Hopper"
    assert address["country"] == "US"
    assert address["state"] == "VA"
    # Someone else's address id is no address at all.
    stranger = await world.member()
    await stranger.add(product_id)
    refused = await stranger.checkout(shipping_address=None, saved_address_id=saved.json()["id"])
    assert refused.status_code == 404
    assert refused.json()["type"].endswith("/not-found")


async def test_the_status_is_read_in_autocommit(world: World) -> None:
    """The order page polls the status until the payment is in: its one statement runs without
    a transaction around it (a BEGIN and a COMMIT round trip before), and answers as before."""
    shopper, _ = await world.basket(price=1850, quantity=1)
    started = await shopper.checkout()
    assert started.status_code == 201, started.text
    order_id = started.json()["order_id"]

    def transaction_of_the_read(statement: str, parameters: Any, connection: Any) -> str | None:
        if "checkout.checkout_sessions" in statement and order_id in parameter_texts(parameters):
            dbapi = connection.connection.dbapi_connection
            return "autocommit" if getattr(dbapi, "autocommit", False) else "transaction"
        return None

    engine = world.apps["checkout"].state.db_engine
    with statements_sent(engine, transaction_of_the_read) as seen:
        mine = await shopper.status(order_id)
        theirs = await world.customer().status(order_id)
    assert mine.status_code == 200, mine.text
    assert (mine.json()["order_id"], mine.json()["status"]) == (order_id, "open")
    assert theirs.status_code == 404
    assert seen == ["autocommit", "autocommit"]


async def test_a_start_reads_its_rates_with_the_claim_and_its_rows_without_the_orm(
    world: World,
) -> None:
    """A start's shipping rates are read by the statement that claims its budget (a statement
    of their own before, built for each start by the ORM), and the cart's open checkouts are
    read as rows by one statement built once: the ORM loads none of them, on the first click
    nor on the repeat that answers the open one."""
    shopper, _ = await world.basket(price=1900, quantity=1)

    def on_rates(statement: str, _parameters: Any, _connection: Any) -> str | None:
        flat = " ".join(statement.split())
        if "checkout.shipping_rates" not in flat:
            return None
        return "with the claim" if "checkout.claim_hold_budget(" in flat else "alone"

    engine = world.apps["checkout"].state.claim_engine  # (the claims' own pool)
    with orm_handling_of_checkouts() as orm, statements_sent(engine, on_rates) as rates:
        first = await shopper.checkout()
        again = await shopper.checkout()
    assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
    assert again.json()["order_id"] == first.json()["order_id"]
    assert again.json()["checkout_url"] == first.json()["checkout_url"]
    assert rates == ["with the claim", "with the claim"]
    assert orm == []


async def test_a_start_writes_its_row_and_its_event_in_one_statement(world: World) -> None:
    """A new checkout's row and its ``checkout.started`` reach Postgres in one statement (two
    round trips before, each a turn of checkout's loop under load): the event is written once
    and the relay is woken by its commit."""
    from checkout.events import outbox

    shopper, _ = await world.basket(price=2100, quantity=1)
    # An address of its own: every other test's open checkouts count against 127.0.0.1's budget.
    shopper.http.headers["X-Forwarded-For"] = "192.0.2.201"
    woken = asyncio.Event()
    engine = world.apps["checkout"].state.db_engine

    def writes(statement: str, _parameters: Any, _connection: Any) -> str | None:
        flat = " ".join(statement.split())
        tables = ("checkout.checkout_sessions", "checkout.outbox_events")
        written = [table for table in tables if f"INSERT INTO {table}" in flat]
        return " + ".join(written) or None

    async with world.engine.connect() as listening:
        raw = (await listening.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.add_listener(outbox.channel, lambda *_: woken.set())
        with statements_sent(engine, writes) as written:
            started = await shopper.checkout()
        assert started.status_code == 201, started.text
        await asyncio.wait_for(woken.wait(), timeout=10)
        await raw.remove_listener(outbox.channel, lambda *_: None)

    assert written == ["checkout.checkout_sessions + checkout.outbox_events"]
    [event] = await world.outbox(started.json()["order_id"], "checkout.started.v1")
    assert event["data"]["total"] == started.json()["total"]


async def test_a_start_begins_its_transaction_with_the_carts_lock(world: World) -> None:
    """A start's transaction is begun by the round trip that takes its cart's lock (BEGIN was a
    round trip of its own, and the lock a statement after it): one turn of checkout's loop less
    per start. A double click still waits on the lock and gets the same checkout."""
    import asyncpg

    shopper, _ = await world.basket(price=2300, quantity=1)
    shopper.http.headers["X-Forwarded-For"] = "192.0.2.202"  # (a budget of its own, as above)
    simple: list[str] = []
    execute = asyncpg.Connection.execute

    async def recording(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> str:
        if not args and "checkout:cart:" in query:
            simple.append(" ".join(query.split()))
        return await execute(self, query, *args, **kwargs)

    def lock_alone(statement: str, _parameters: Any, _connection: Any) -> str | None:
        return "lock" if "pg_advisory_xact_lock" in statement else None

    engine = world.apps["checkout"].state.db_engine
    asyncpg.Connection.execute = recording  # type: ignore[method-assign]
    try:
        with statements_sent(engine, lock_alone) as prepared:
            first, again = await asyncio.gather(shopper.checkout(), shopper.checkout())
    finally:
        asyncpg.Connection.execute = execute  # type: ignore[method-assign]

    assert sorted((first.status_code, again.status_code)) == [200, 201], (first.text, again.text)
    assert first.json()["order_id"] == again.json()["order_id"]
    assert len(simple) == 2, simple
    assert all(
        q.startswith("BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('checkout:cart:")
        for q in simple
    ), simple
    assert prepared == []
