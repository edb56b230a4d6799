"""Subscription deliveries: a paid subscription invoice (``subscription.invoice_paid.v1``) takes
its units out of stock once, never refused, never below what checkouts hold; what is missing
is logged and audited for staff, and shoppers' cached pages show the new availability."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import msgspec
import pytest
import structlog
from catalog.audit.controllers import AUDIT_LOG_PATH
from catalog.inventory import services as inventory_services
from catalog_testkit import Kit, availability, envelope, query, reserve, stock
from ember_shared.events import stream_for
from ember_shared.events.contracts import (
    Address,
    OrderLine,
    PaymentSucceeded,
    SubscriptionInvoicePaid,
)
from ember_shared.events.wire import entry_fields
from litestar import Litestar

Client = httpx.AsyncClient


def invoice_paid(
    lines: list[tuple[str, int]],
    *,
    order_id: uuid.UUID | None = None,
    invoice: str | None = None,
) -> SubscriptionInvoicePaid:
    return SubscriptionInvoicePaid(
        order_id=order_id or uuid.uuid4(),
        subscription_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        email="subscriber@example.com",
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
        stripe_invoice_id=invoice or f"in_{uuid.uuid4().hex[:16]}",
        stripe_subscription_id="sub_test_1",
        period_start="2026-12-01T00:00:00Z",
        period_end="2027-01-01T00:00:00Z",
    )


async def delivery_short(order_id: uuid.UUID) -> int | None:
    rows = await query(
        "SELECT short FROM catalog.subscription_deliveries WHERE order_id = :o", o=order_id
    )
    return int(rows[0]["short"]) if rows else None


async def audit_entries(client: Client, kit: Kit, product_id: str) -> list[dict[str, Any]]:
    response = await client.get(
        AUDIT_LOG_PATH, params={"entity": "inventory", "entity_id": product_id}, headers=kit.admin
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.fixture
def stock_log(monkeypatch: pytest.MonkeyPatch) -> structlog.testing.CapturingLogger:
    """What the stock rules log (the app's loggers are cached, so capture_logs cannot)."""
    captured = structlog.testing.CapturingLogger()
    monkeypatch.setattr(inventory_services, "log", captured)
    return captured


async def test_a_paid_invoice_takes_its_units_out_of_stock(
    client: Client, kit: Kit, deliver: Any
) -> None:
    beans, mug = await kit.product(on_hand=10), await kit.product(on_hand=4)
    event = invoice_paid([(beans["id"], 1), (mug["id"], 1), (beans["id"], 2)])

    assert await deliver(event)

    assert await stock(client, kit, beans["id"]) == (7, 0)
    assert await stock(client, kit, mug["id"]) == (3, 0)
    assert await delivery_short(event.order_id) == 0
    # A full delivery is no shortfall: nothing for staff to see.
    actions = [e["action"] for e in await audit_entries(client, kit, beans["id"])]
    assert not [a for a in actions if a.startswith("inventory.subscription")], actions


async def test_a_renewal_takes_its_variants_units_not_the_default_variants(
    client: Client, kit: Kit, deliver: Any
) -> None:
    product = await kit.product(on_hand=10)
    tag = product["id"][-10:]
    made = await client.put(
        f"/api/admin/products/{product['id']}/variants",
        json={
            "options": [{"name": "Size", "values": ["250 g", "1 kg"]}],
            "variants": [
                {
                    "id": product["id"],
                    "sku": f"r-{tag}-250",
                    "price": 1500,
                    "option_values": ["250 g"],
                },
                {"sku": f"r-{tag}-1kg", "price": 5200, "option_values": ["1 kg"], "on_hand": 5},
            ],
        },
        headers=kit.admin,
    )
    assert made.status_code == 200, made.text
    kilo = next(v for v in made.json()["variants"] if v["option_values"] == ["1 kg"])
    event = invoice_paid([(product["id"], 2)])
    line = msgspec.structs.replace(event.lines[0], variant_id=uuid.UUID(kilo["id"]))
    event = msgspec.structs.replace(event, lines=[line])

    assert await deliver(event)

    rows = await query(
        "SELECT variant_id, on_hand, reserved FROM catalog.inventory WHERE variant_id IN (:p, :k)",
        p=uuid.UUID(product["id"]),
        k=uuid.UUID(kilo["id"]),
    )
    counts = {str(r["variant_id"]): (r["on_hand"], r["reserved"]) for r in rows}
    assert counts == {product["id"]: (10, 0), kilo["id"]: (3, 0)}
    assert await delivery_short(event.order_id) == 0


async def test_a_redelivered_invoice_takes_stock_once(
    client: Client, kit: Kit, deliver: Any
) -> None:
    product = await kit.product(on_hand=10)
    event = invoice_paid([(product["id"], 3)])
    event_id = str(uuid.uuid4())
    assert await deliver(event, event_id=event_id)
    assert await stock(client, kit, product["id"]) == (7, 0)

    # The same event id: the runtime skips it.
    assert not await deliver(event, event_id=event_id)
    # The same order under a new event id, and the same Stripe invoice under a new order id:
    # the handler runs and takes nothing.
    assert await deliver(event)
    assert await deliver(invoice_paid([(product["id"], 3)], invoice=event.stripe_invoice_id))
    assert await stock(client, kit, product["id"]) == (7, 0)
    rows = await query(
        "SELECT order_id FROM catalog.subscription_deliveries WHERE stripe_invoice_id = :i",
        i=event.stripe_invoice_id,
    )
    assert [r["order_id"] for r in rows] == [event.order_id]


async def test_a_delivery_arriving_on_the_stream_is_taken_once(
    client: Client, kit: Kit, catalog_app: Litestar
) -> None:
    product = await kit.product(on_hand=9)
    data = invoice_paid([(product["id"], 2)])
    first, again = envelope(data), envelope(data)
    redis = catalog_app.state.redis
    stream = stream_for(data.TYPE)
    last = b""
    for event in (first, first, again):
        fields = await entry_fields(
            msgspec.json.encode(event),
            event_id=event.id,
            event_type=event.type,
            correlation_id=event.correlation_id,
            producer=event.producer,
        )
        last = await redis.xadd(stream, fields)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        groups = {g["name"]: g for g in await redis.xinfo_groups(stream)}
        group = groups.get(b"catalog") or groups.get("catalog")
        if group and group["last-delivered-id"] in (last, last.decode()) and not group["pending"]:
            break
        assert asyncio.get_running_loop().time() < deadline, "the consumer did not handle them"
        await asyncio.sleep(0.1)

    assert await stock(client, kit, product["id"]) == (7, 0)
    handled = await query(
        "SELECT event_id FROM catalog.handled_events WHERE event_id IN (:a, :b)",
        a=uuid.UUID(first.id),
        b=uuid.UUID(again.id),
    )
    assert len(handled) == 2


async def test_concurrent_deliveries_never_take_what_checkouts_hold(
    client: Client, kit: Kit, service_headers: dict[str, str], deliver: Any
) -> None:
    beans, filters = await kit.product(on_hand=20), await kit.product(on_hand=30)
    held = uuid.uuid4()
    response = await reserve(client, service_headers, [(beans["id"], 5)], order_id=held)
    assert response.status_code == 201, response.text
    # 8 invoices of 3 bags each against 15 sellable; half name the products the other way
    # round (the stock rules lock in one order, so they cannot deadlock).
    events = [
        invoice_paid(
            [(beans["id"], 3), (filters["id"], 1)]
            if n % 2
            else [(filters["id"], 1), (beans["id"], 3)]
        )
        for n in range(8)
    ]

    ran = await asyncio.gather(*(deliver(e) for e in events))

    assert all(ran)
    assert await stock(client, kit, beans["id"]) == (5, 5)
    assert await stock(client, kit, filters["id"]) == (22, 0)
    shorts = [await delivery_short(e.order_id) for e in events]
    assert sorted(s for s in shorts if s is not None) == [0, 0, 0, 0, 0, 3, 3, 3], shorts
    # The checkout's units are still there for it to buy.
    paid = PaymentSucceeded(
        order_id=held,
        checkout_session_id=uuid.uuid4(),
        user_id=None,
        cart_id=None,
        email="shopper@example.com",
        lines=[
            OrderLine(
                product_id=uuid.UUID(beans["id"]),
                slug="x",
                name="Coffee",
                unit_price=1500,
                quantity=5,
            )
        ],
        subtotal=7500,
        shipping=0,
        total=7500,
        currency="USD",
        shipping_address=Address(
            name="Ada", line1="1 Road", city="Portland", postal_code="97201", country="US"
        ),
        reservation_id=uuid.UUID(response.json()["reservation_id"]),
        stripe_session_id="cs_test_held",
    )
    assert await deliver(paid)
    assert await stock(client, kit, beans["id"]) == (0, 0)


async def test_a_shortfall_takes_what_is_there_and_is_audited(
    client: Client,
    kit: Kit,
    service_headers: dict[str, str],
    deliver: Any,
    stock_log: structlog.testing.CapturingLogger,
) -> None:
    product = await kit.product(on_hand=5)
    await reserve(client, service_headers, [(product["id"], 2)])
    event = invoice_paid([(product["id"], 4)])

    assert await deliver(event)

    assert await stock(client, kit, product["id"]) == (2, 2)
    assert await delivery_short(event.order_id) == 1
    [entry] = [
        e
        for e in await audit_entries(client, kit, product["id"])
        if e["action"] == "inventory.subscription_short"
    ]
    assert entry["actor_id"] is None
    assert entry["before"] == {"on_hand": 5, "reserved": 2}
    assert entry["after"] == {
        "on_hand": 2,
        "reserved": 2,
        "quantity": 4,
        "taken": 3,
        "short": 1,
        "order_id": str(event.order_id),
        "subscription_id": str(event.subscription_id),
        "stripe_invoice_id": event.stripe_invoice_id,
    }
    [call] = [c for c in stock_log.calls if c.args == ("subscription_delivery_short",)]
    assert call.method_name == "warning"
    assert call.kwargs["product_id"] == product["id"]
    assert call.kwargs["short"] == 1

    # Nothing sellable at all: the delivery still goes through, taking nothing.
    empty = invoice_paid([(product["id"], 2)])
    assert await deliver(empty)
    assert await stock(client, kit, product["id"]) == (2, 2)
    assert await delivery_short(empty.order_id) == 2


async def test_archived_and_unknown_products_are_recorded_and_skipped(
    client: Client,
    kit: Kit,
    deliver: Any,
    stock_log: structlog.testing.CapturingLogger,
) -> None:
    product, archived = await kit.product(on_hand=6), await kit.product(on_hand=6)
    archiving = await client.post(
        f"/api/admin/products/{archived['id']}/archive", headers=kit.admin
    )
    assert archiving.status_code == 200, archiving.text
    ghost = str(uuid.uuid4())
    event = invoice_paid([(ghost, 1), (archived["id"], 2), (product["id"], 1)])

    assert await deliver(event)

    assert await stock(client, kit, product["id"]) == (5, 0)
    assert await stock(client, kit, archived["id"]) == (6, 0)
    assert await delivery_short(event.order_id) == 3
    for product_id, reason, quantity in ((archived["id"], "archived", 2), (ghost, "unknown", 1)):
        [entry] = [
            e
            for e in await audit_entries(client, kit, product_id)
            if e["action"] == "inventory.subscription_skipped"
        ]
        assert entry["after"]["reason"] == reason
        assert entry["after"]["quantity"] == quantity
        assert entry["after"]["order_id"] == str(event.order_id)
    skipped = {
        c.kwargs["product_id"]: c.kwargs["reason"]
        for c in stock_log.calls
        if c.args == ("subscription_delivery_skipped",)
    }
    assert skipped == {archived["id"]: "archived", ghost: "unknown"}


async def test_the_cached_product_page_shows_the_new_stock(
    client: Client, kit: Kit, deliver: Any
) -> None:
    category = await kit.category()
    product = await kit.product(on_hand=8, category_id=category["id"])
    page_url = f"/api/products/{product['slug']}"
    listing_url = f"/api/products?category={category['slug']}"
    assert await availability(client, product["slug"]) == "in_stock"
    assert (await client.get(listing_url)).json()["items"][0]["availability"] == "in_stock"
    assert (await client.get(page_url)).headers["x-cache"] == "hit"

    assert await deliver(invoice_paid([(product["id"], 4)]))  # 4 left: low stock
    page = await client.get(page_url)
    assert page.headers["x-cache"] == "miss"
    assert page.json()["availability"] == "low_stock"
    assert (await client.get(listing_url)).json()["items"][0]["availability"] == "low_stock"

    assert await deliver(invoice_paid([(product["id"], 9)]))  # short: takes the last 4
    assert await availability(client, product["slug"]) == "sold_out"
    assert (await client.get(listing_url)).json()["items"][0]["availability"] == "sold_out"
    assert await stock(client, kit, product["id"]) == (0, 0)
