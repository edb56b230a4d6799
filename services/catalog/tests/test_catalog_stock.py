"""Stock that is never oversold: reservations, sales and releases (through the event handlers
and the real event runtime), the sweeper, the internal lookup, and what shoppers see."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from typing import Any

import httpx
import msgspec
import pytest
from catalog.app import create_app
from catalog.sweeper import sweep_once
from catalog_testkit import (
    Kit,
    assert_problem,
    availability,
    envelope,
    query,
    race_watched,
    reserve,
    running,
    stock,
    unique,
    values_sent,
)
from ember_devkit.testing.events import publish
from ember_devkit.testing.statements import statements_sent, verb
from ember_shared.events import Envelope, EventData
from ember_shared.events.contracts import (
    Address,
    CheckoutExpired,
    OrderLine,
    PaymentFailed,
    PaymentSucceeded,
)
from ember_shared.ids import new_id
from litestar import Litestar
from sqlalchemy import event

Client = httpx.AsyncClient


# --- helpers ----------------------------------------------------------------------------


async def reservation_status(order_id: uuid.UUID) -> str | None:
    rows = await query("SELECT status FROM catalog.reservations WHERE order_id = :o", o=order_id)
    return rows[0]["status"] if rows else None


def paid(order_id: uuid.UUID, lines: list[tuple[str, int]]) -> PaymentSucceeded:
    return PaymentSucceeded(
        order_id=order_id,
        checkout_session_id=uuid.uuid4(),
        user_id=None,
        cart_id=None,
        email="shopper@example.com",
        lines=[
            OrderLine(product_id=uuid.UUID(p), slug="x", name="Coffee", unit_price=1500, quantity=q)
            for p, q in lines
        ],
        subtotal=1500,
        shipping=0,
        total=1500,
        currency="USD",
        shipping_address=Address(
            name="Ada", line1="1 Road", city="Portland", postal_code="97201", country="US"
        ),
        reservation_id=uuid.uuid4(),
        stripe_session_id="cs_test_1",
    )


# --- reserving --------------------------------------------------------------------------


async def test_a_reservation_takes_every_line_or_none(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    a = await kit.product(on_hand=5)
    b = await kit.product(on_hand=2)
    order_id = uuid.uuid4()
    refused = await reserve(
        client, service_headers, [(a["id"], 3), (b["id"], 5)], order_id=order_id
    )
    body = assert_problem(refused, 409, "insufficient-stock")
    # A line naming only its product is of the product's default variant (the product's id).
    assert body["unavailable"] == [
        {"product_id": b["id"], "variant_id": b["id"], "requested": 5, "available": 2}
    ]
    assert await stock(client, kit, a["id"]) == (5, 0)
    assert await stock(client, kit, b["id"]) == (2, 0)
    assert_problem(
        await client.get(f"/internal/catalog/reservations/{order_id}", headers=service_headers), 404
    )

    before = dt.datetime.now(dt.UTC)
    granted = await reserve(
        client, service_headers, [(a["id"], 3), (b["id"], 2)], order_id=order_id, ttl=900
    )
    assert granted.status_code == 201, granted.text
    reservation = granted.json()
    assert reservation["order_id"] == str(order_id)
    assert reservation["status"] == "active"
    assert sorted(
        (line["product_id"], line["quantity"]) for line in reservation["lines"]
    ) == sorted([(a["id"], 3), (b["id"], 2)])
    expires = dt.datetime.fromisoformat(reservation["expires_at"])
    assert dt.timedelta(seconds=890) < expires - before < dt.timedelta(seconds=910)
    assert await stock(client, kit, a["id"]) == (5, 3)
    assert await stock(client, kit, b["id"]) == (2, 2)
    assert await availability(client, b["slug"]) == "sold_out"
    fetched = await client.get(
        f"/internal/catalog/reservations/{order_id}", headers=service_headers
    )
    assert fetched.json()["reservation_id"] == reservation["reservation_id"]


async def test_unknown_archived_and_repeated_products(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    archived = await kit.product(on_hand=10)
    await client.post(f"/api/admin/products/{archived['id']}/archive", headers=kit.admin)
    ghost = str(uuid.uuid4())
    body = assert_problem(
        await reserve(client, service_headers, [(archived["id"], 1), (ghost, 1)]), 409
    )
    assert {(u["product_id"], u["available"]) for u in body["unavailable"]} == {
        (archived["id"], 0),
        (ghost, 0),
    }
    assert await stock(client, kit, archived["id"]) == (10, 0)

    product = await kit.product(on_hand=4)
    merged = await reserve(client, service_headers, [(product["id"], 2), (product["id"], 2)])
    assert merged.status_code == 201
    assert merged.json()["lines"] == [
        {"product_id": product["id"], "variant_id": product["id"], "quantity": 4}
    ]
    assert await stock(client, kit, product["id"]) == (4, 4)


async def test_a_priced_reservation_answers_its_lines_as_the_lookup_does(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    product = await kit.product(on_hand=5, price=1850, name=unique("Priced Kenya"))
    unpriced = await reserve(client, service_headers, [(product["id"], 1)])
    assert unpriced.status_code == 201, unpriced.text
    assert "variants" not in unpriced.json()  # answered as before unless asked

    order_id = uuid.uuid4()
    granted = await reserve(
        client, service_headers, [(product["id"], 2)], order_id=order_id, priced=True
    )
    assert granted.status_code == 201, granted.text
    [variant] = granted.json()["variants"]
    assert (variant["id"], variant["variant_id"]) == (product["id"], product["id"])
    assert (variant["name"], variant["price"], variant["currency"]) == (
        product["name"],
        1850,
        "USD",
    )
    assert variant["active"] is True
    assert variant["available"] == 2  # what is left after this reservation and the first
    again = await reserve(
        client, service_headers, [(product["id"], 2)], order_id=order_id, priced=True
    )
    assert again.status_code == 200
    assert again.json()["variants"][0]["price"] == 1850

    archived = await kit.product(on_hand=10, name=unique("Gone Blend"))
    await client.post(f"/api/admin/products/{archived['id']}/archive", headers=kit.admin)
    ghost = str(uuid.uuid4())
    body = assert_problem(
        await reserve(
            client,
            service_headers,
            [(product["id"], 9), (archived["id"], 1), (ghost, 1)],
            priced=True,
        ),
        409,
        "insufficient-stock",
    )
    known = {v["id"]: v for v in body["variants"]}
    assert set(known) == {product["id"], archived["id"]}  # the unknown one is absent
    assert known[archived["id"]]["active"] is False
    assert known[product["id"]]["name"] == product["name"]
    assert await stock(client, kit, product["id"]) == (5, 3)


async def test_bad_reservation_requests_change_nothing(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    product = await kit.product(on_hand=5)
    assert_problem(
        await reserve(client, service_headers, [(product["id"], 1)], ttl=5), 400, "invalid-ttl"
    )
    assert_problem(await reserve(client, service_headers, [(product["id"], 0)]), 400, "validation")
    assert_problem(await reserve(client, service_headers, [(product["id"], -2)]), 400, "validation")
    assert_problem(await reserve(client, service_headers, []), 400, "validation")
    assert_problem(await reserve(client, service_headers, [("not-a-uuid", 1)]), 400, "validation")
    assert_problem(await reserve(client, {}, [(product["id"], 1)]), 401, "service-credential")
    assert_problem(await reserve(client, {"X-Service-Token": "guess"}, [(product["id"], 1)]), 401)
    assert await stock(client, kit, product["id"]) == (5, 0)


async def test_a_repeated_reservation_is_answered_unchanged(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    product = await kit.product(on_hand=10)
    order_id = uuid.uuid4()
    first = await reserve(client, service_headers, [(product["id"], 2)], order_id=order_id)
    again = await reserve(client, service_headers, [(product["id"], 2)], order_id=order_id)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert await stock(client, kit, product["id"]) == (10, 2)

    racing_order = uuid.uuid4()
    answers = await asyncio.gather(
        *(
            reserve(client, service_headers, [(product["id"], 3)], order_id=racing_order)
            for _ in range(10)
        )
    )
    assert sorted(a.status_code for a in answers) == [200] * 9 + [201]
    assert len({a.json()["reservation_id"] for a in answers}) == 1
    assert await stock(client, kit, product["id"]) == (10, 5)


async def test_a_new_reservation_is_written_without_reading_for_it_first(
    catalog_app: Litestar, client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    """The insert itself finds an order's existing reservation (ON CONFLICT DO NOTHING), so a
    new one costs no SELECT of the reservations before it; a repeat still reads the one there."""
    product = await kit.product(on_hand=10)
    order_id = uuid.uuid4()

    def this_orders(statement: str, parameters: Any, _connection: Any) -> str | None:
        # This order's statements only (the sweeper reads reservations too, on its own clock).
        if "catalog.reservations" in statement and str(order_id) in values_sent(parameters):
            return verb(statement)
        return None

    with statements_sent(catalog_app.state.db_engine, this_orders) as statements:
        made = await reserve(client, service_headers, [(product["id"], 2)], order_id=order_id)
        made_statements = list(statements)
        statements.clear()
        again = await reserve(client, service_headers, [(product["id"], 2)], order_id=order_id)

    assert (made.status_code, again.status_code) == (201, 200)
    # The claim is the first part of the reservation's one statement (a data-modifying CTE).
    assert made_statements == ["WITH"]
    assert statements == ["WITH", "SELECT"]
    assert again.json() == made.json()
    assert await stock(client, kit, product["id"]) == (10, 2)


async def test_a_priced_reservation_holds_its_stock_last(
    catalog_app: Litestar, client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    """A held row stays locked until the reservation commits, and every checkout of a product
    wants it: nothing but the COMMIT follows the hold. The claim of the order, the lookup
    (read from the statement's snapshot, before the hold) and the hold with its line are one
    statement (three before: INSERT, SELECT, WITH; first the lookup came after the hold, one
    more round trip with the row locked), and what the hold left is the hold's own."""
    product = await kit.product(on_hand=10)
    order_id = uuid.uuid4()
    trail: list[str] = []
    ours: set[int] = set()

    def on_statement(conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if {product["id"], str(order_id)} & values_sent(parameters):
            ours.add(id(conn.connection))
            trail.append(verb(statement))

    def on_commit(conn: Any) -> None:
        if id(conn.connection) in ours:
            trail.append("COMMIT")

    engine = catalog_app.state.db_engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)
    try:
        made = await reserve(
            client, service_headers, [(product["id"], 3)], order_id=order_id, priced=True
        )
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)

    assert made.status_code == 201, made.text
    # The reservation's row, the lookup and the hold (with its line) in one statement, and
    # nothing between it and the COMMIT.
    assert trail == ["WITH", "COMMIT"], trail
    [variant] = made.json()["variants"]
    assert (variant["available"], variant["availability"]) == (7, "in_stock")
    assert await stock(client, kit, product["id"]) == (10, 3)


async def test_each_line_is_held_and_written_by_one_statement(
    catalog_app: Litestar, client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    """A line's stock is held and its reservation line written by the same statement (a
    data-modifying CTE): N statements for N lines (N + 1 before: the lines' INSERT after the
    holds). A refused line still leaves nothing held and no line written."""
    first, second = await kit.product(on_hand=10), await kit.product(on_hand=5)
    ids = {first["id"], second["id"]}
    order_id = uuid.uuid4()

    def these_lines(statement: str, parameters: Any, _connection: Any) -> str | None:
        touches = "catalog.inventory" in statement or "catalog.reservation_lines" in statement
        if touches and ids & values_sent(parameters):
            return verb(statement)
        return None

    with statements_sent(catalog_app.state.db_engine, these_lines) as statements:
        made = await reserve(
            client, service_headers, [(first["id"], 2), (second["id"], 1)], order_id=order_id
        )

    assert made.status_code == 201, made.text
    assert statements == ["WITH", "WITH"]
    written = await query(
        "SELECT l.product_id::text, l.quantity FROM catalog.reservation_lines l"
        " JOIN catalog.reservations r ON r.id = l.reservation_id WHERE r.order_id = :o",
        o=order_id,
    )
    assert sorted((row["product_id"], row["quantity"]) for row in written) == sorted(
        [(first["id"], 2), (second["id"], 1)]
    )
    assert await stock(client, kit, first["id"]) == (10, 2)
    assert await stock(client, kit, second["id"]) == (5, 1)

    refused_order = uuid.uuid4()
    refused = await reserve(
        client, service_headers, [(first["id"], 1), (second["id"], 9)], order_id=refused_order
    )
    assert refused.status_code == 409, refused.text
    assert await stock(client, kit, first["id"]) == (10, 2)
    left = await query(
        "SELECT count(*) FROM catalog.reservation_lines l JOIN catalog.reservations r"
        " ON r.id = l.reservation_id WHERE r.order_id = :o",
        o=refused_order,
    )
    assert left[0]["count"] == 0


async def test_two_hundred_concurrent_reservations_for_fifty_units(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    product = await kit.product(on_hand=50)
    # The product's default variant has the product's id.
    answers, lowest = await race_watched(
        product["id"],
        lambda: asyncio.gather(
            *(reserve(client, service_headers, [(product["id"], 1)]) for _ in range(200))
        ),
    )
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 50
    assert statuses.count(409) == 150
    assert min(lowest) >= 0
    assert len(lowest) > 1
    assert await stock(client, kit, product["id"]) == (50, 50)
    granted = await query(
        "SELECT count(*) AS n, sum(quantity) AS q FROM catalog.reservation_lines WHERE product_id = :p",
        p=product["id"],
    )
    assert (granted[0]["n"], granted[0]["q"]) == (50, 50)
    assert await availability(client, product["slug"]) == "sold_out"


# --- selling and releasing --------------------------------------------------------------


async def test_payment_succeeded_turns_the_reservation_into_a_sale(
    client: Client, kit: Kit, service_headers: dict[str, str], deliver: Any
) -> None:
    product = await kit.product(on_hand=10)
    order_id = uuid.uuid4()
    await reserve(client, service_headers, [(product["id"], 2)], order_id=order_id)
    event_id = str(new_id())
    assert await deliver(paid(order_id, [(product["id"], 2)]), event_id=event_id)
    assert await stock(client, kit, product["id"]) == (8, 0)
    assert await reservation_status(order_id) == "committed"
    # A redelivery is skipped; the same payment under another event id changes nothing either.
    assert not await deliver(paid(order_id, [(product["id"], 2)]), event_id=event_id)
    assert await deliver(paid(order_id, [(product["id"], 2)]))
    assert await stock(client, kit, product["id"]) == (8, 0)
    # A sold reservation cannot be released.
    released = await client.post(
        f"/internal/catalog/reservations/{order_id}/release", headers=service_headers
    )
    assert released.json()["status"] == "committed"
    assert await stock(client, kit, product["id"]) == (8, 0)


@pytest.mark.parametrize("outcome", ["checkout_expired", "payment_failed"])
async def test_expired_or_failed_checkouts_release_the_stock(
    client: Client, kit: Kit, service_headers: dict[str, str], deliver: Any, outcome: str
) -> None:
    product = await kit.product(on_hand=6)
    order_id = uuid.uuid4()
    reservation = (
        await reserve(client, service_headers, [(product["id"], 6)], order_id=order_id)
    ).json()
    assert await availability(client, product["slug"]) == "sold_out"
    reservation_id = uuid.UUID(reservation["reservation_id"])
    event: EventData = (
        CheckoutExpired(
            order_id=order_id, checkout_session_id=uuid.uuid4(), reservation_id=reservation_id
        )
        if outcome == "checkout_expired"
        else PaymentFailed(
            order_id=order_id,
            checkout_session_id=uuid.uuid4(),
            reservation_id=reservation_id,
            email="a@b.c",
        )
    )
    assert await deliver(event)
    assert await stock(client, kit, product["id"]) == (6, 0)
    assert await reservation_status(order_id) == "released"
    assert await availability(client, product["slug"]) == "in_stock"
    emitted = await query(
        "SELECT convert_from(envelope, 'UTF8') AS body FROM catalog.outbox_events "
        "WHERE type = 'stock.released.v1'"
    )
    mine = [
        msgspec.json.decode(r["body"].encode(), type=Envelope)
        for r in emitted
        if str(order_id) in r["body"]
    ]
    assert len(mine) == 1
    assert msgspec.json.decode(mine[0].data)["reason"] == outcome
    assert await deliver(event)  # another delivery, new event id: nothing more to release
    assert await stock(client, kit, product["id"]) == (6, 0)


async def test_release_route_is_idempotent(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    product = await kit.product(on_hand=3)
    order_id = uuid.uuid4()
    await reserve(client, service_headers, [(product["id"], 3)], order_id=order_id)
    url = f"/internal/catalog/reservations/{order_id}/release"
    first = await client.post(url, headers=service_headers)
    second = await client.post(url, headers=service_headers)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["status"] == second.json()["status"] == "released"
    assert await stock(client, kit, product["id"]) == (3, 0)
    assert_problem(
        await client.post(
            f"/internal/catalog/reservations/{uuid.uuid4()}/release", headers=service_headers
        ),
        404,
    )
    assert_problem(await client.post(url), 401)


async def test_the_sweeper_releases_what_outlived_its_expiry(
    client: Client, kit: Kit, service_headers: dict[str, str], catalog_app: Litestar
) -> None:
    product = await kit.product(on_hand=10)
    short_lived, long_lived = uuid.uuid4(), uuid.uuid4()
    await reserve(client, service_headers, [(product["id"], 4)], order_id=short_lived, ttl=60)
    await reserve(client, service_headers, [(product["id"], 5)], order_id=long_lived, ttl=3600)
    state = catalog_app.state
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    released = await sweep_once(
        state.catalog_sessions, state.catalog_cache, state.catalog_settings, now=later
    )
    assert released >= 1
    assert await reservation_status(short_lived) == "released"
    assert await reservation_status(long_lived) == "active"
    assert await stock(client, kit, product["id"]) == (10, 5)
    again = await sweep_once(
        state.catalog_sessions, state.catalog_cache, state.catalog_settings, now=later
    )
    assert again == 0


async def test_the_background_sweeper_runs_by_itself(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    product = await kit.product(on_hand=2)
    saved = {
        k: os.environ.get(k)
        for k in ("CATALOG_SWEEP_INTERVAL_SECONDS", "CATALOG_RESERVATION_MIN_TTL_SECONDS")
    }
    os.environ.update(
        {"CATALOG_SWEEP_INTERVAL_SECONDS": "0.2", "CATALOG_RESERVATION_MIN_TTL_SECONDS": "1"}
    )
    try:
        app = create_app()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    order_id = uuid.uuid4()
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://catalog.test") as other:
            assert (
                await reserve(
                    other, service_headers, [(product["id"], 2)], order_id=order_id, ttl=1
                )
            ).status_code == 201
            assert await availability(other, product["slug"]) == "sold_out"
            deadline = asyncio.get_running_loop().time() + 10
            while await reservation_status(order_id) != "released":
                assert asyncio.get_running_loop().time() < deadline, (
                    "the sweeper did not release it"
                )
                await asyncio.sleep(0.1)
            await app.state.catalog_cache.settle()
            assert await availability(other, product["slug"]) == "low_stock"
    assert await stock(client, kit, product["id"]) == (2, 0)


async def test_a_payment_after_the_reservation_lapsed(
    client: Client, kit: Kit, service_headers: dict[str, str], deliver: Any, catalog_app: Litestar
) -> None:
    state = catalog_app.state
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    product = await kit.product(on_hand=5)
    late = uuid.uuid4()
    await reserve(client, service_headers, [(product["id"], 2)], order_id=late, ttl=60)
    await sweep_once(state.catalog_sessions, state.catalog_cache, state.catalog_settings, now=later)
    assert await deliver(paid(late, [(product["id"], 2)]))
    assert await reservation_status(late) == "committed"
    assert await stock(client, kit, product["id"]) == (3, 0)

    scarce = await kit.product(on_hand=2)
    lapsed, other = uuid.uuid4(), uuid.uuid4()
    await reserve(client, service_headers, [(scarce["id"], 2)], order_id=lapsed, ttl=60)
    await sweep_once(state.catalog_sessions, state.catalog_cache, state.catalog_settings, now=later)
    assert (
        await reserve(client, service_headers, [(scarce["id"], 2)], order_id=other)
    ).status_code == 201
    assert await deliver(paid(lapsed, [(scarce["id"], 2)]))
    # Never oversold: the lapsed order gets nothing; the stock stays with the other order.
    assert await reservation_status(lapsed) == "released"
    assert await stock(client, kit, scarce["id"]) == (2, 2)


async def test_events_arriving_on_the_stream_are_handled(
    client: Client, kit: Kit, service_headers: dict[str, str], catalog_app: Litestar
) -> None:
    product = await kit.product(on_hand=4)
    order_id = uuid.uuid4()
    await reserve(client, service_headers, [(product["id"], 1)], order_id=order_id)
    event = envelope(paid(order_id, [(product["id"], 1)]))
    await publish(catalog_app.state.redis, event)
    deadline = asyncio.get_running_loop().time() + 30
    while await reservation_status(order_id) != "committed":
        assert asyncio.get_running_loop().time() < deadline, "the consumer did not handle it"
        await asyncio.sleep(0.1)
    assert await stock(client, kit, product["id"]) == (3, 0)


# --- what shoppers and services see ----------------------------------------------------


async def test_stock_changes_that_flip_availability_refresh_the_cache(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    category = await kit.category()
    product = await kit.product(on_hand=8, category_id=category["id"])
    listing_url = f"/api/products?category={category['slug']}"
    assert await availability(client, product["slug"]) == "in_stock"
    assert (await client.get(listing_url)).json()["items"][0]["availability"] == "in_stock"

    await reserve(client, service_headers, [(product["id"], 1)])  # 7 left: still in stock
    cached = await client.get(f"/api/products/{product['slug']}")
    assert cached.headers["x-cache"] == "hit"

    order_id = uuid.uuid4()
    await reserve(client, service_headers, [(product["id"], 3)], order_id=order_id)  # 4 left
    assert await availability(client, product["slug"]) == "low_stock"
    assert (await client.get(listing_url)).json()["items"][0]["availability"] == "low_stock"
    await reserve(client, service_headers, [(product["id"], 4)])
    assert await availability(client, product["slug"]) == "sold_out"
    await client.post(f"/internal/catalog/reservations/{order_id}/release", headers=service_headers)
    assert await availability(client, product["slug"]) == "low_stock"


async def test_lookup_answers_prices_and_sellable_stock(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    product = await kit.product(price=1850, on_hand=9)
    await client.post(
        f"/api/admin/products/{product['id']}/images",
        json={"url": "/media/products/l.webp"},
        headers=kit.admin,
    )
    archived = await kit.product(on_hand=9)
    await client.post(f"/api/admin/products/{archived['id']}/archive", headers=kit.admin)
    await reserve(client, service_headers, [(product["id"], 5)])
    ghost = str(uuid.uuid4())
    response = await client.post(
        "/internal/catalog/products/lookup",
        json={"product_ids": [product["id"], archived["id"], ghost]},
        headers=service_headers,
    )
    assert response.status_code == 200, response.text
    found = {p["id"]: p for p in response.json()["products"]}
    assert set(found) == {product["id"], archived["id"]}
    assert found[product["id"]] == {
        "id": product["id"],
        "slug": product["slug"],
        "name": product["name"],
        "price": 1850,
        "currency": "USD",
        "active": True,
        "availability": "low_stock",
        "available": 4,
        "image_url": "/media/products/l.webp",
        "variant_id": product["id"],
        "sku": product["slug"],
        "option_values": [],
        "variant_title": "",
        "weight_grams": None,
        "category_id": None,
    }
    assert found[archived["id"]]["active"] is False
    assert found[archived["id"]]["availability"] == "sold_out"
    assert found[archived["id"]]["available"] == 0
    assert found[archived["id"]]["image_url"] is None
    assert_problem(
        await client.post("/internal/catalog/products/lookup", json={"product_ids": []}), 401
    )
    too_many = {"product_ids": [str(uuid.uuid4()) for _ in range(101)]}
    assert_problem(
        await client.post(
            "/internal/catalog/products/lookup", json=too_many, headers=service_headers
        ),
        400,
    )
    empty = await client.post(
        "/internal/catalog/products/lookup", json={"product_ids": []}, headers=service_headers
    )
    assert empty.json() == {"products": [], "variants": []}
