"""A subscription's paid invoice becomes an order like a paid one-off one: paid, in its
customer's history and the staff list, shippable; one per invoice, however often it comes."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import msgspec
import pytest
from ember_shared.events import stream_for
from ember_shared.events.wire import entry_fields
from litestar import Litestar
from orders.ordering.services import OrderIdTakenError
from orders_testkit import Checkout, SubscriptionInvoice, envelope, line


@pytest.fixture
def admin(tokens) -> dict[str, str]:
    token, _ = tokens.admin()
    return tokens.bearer(token)


async def order_count(db, invoice: SubscriptionInvoice) -> int:
    count: int = await db.value(
        "SELECT count(*) FROM orders.orders WHERE stripe_invoice_id = :i",
        i=invoice.stripe_invoice_id,
    )
    return count


async def test_a_paid_invoice_makes_a_paid_order_with_its_lines(deliver, db) -> None:
    invoice = SubscriptionInvoice(
        lines=[line(1600, 2, name="Kenya Kiambu"), line(2200, 1, name="Colombia Huila")],
        shipping=450,
    )
    when = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    assert await deliver(invoice.paid(), occurred_at=when)

    order = await db.order(invoice.order_id)
    assert order.status == "paid"
    assert order.created_at == when
    assert order.paid_at == when
    assert order.user_id == invoice.user_id
    assert order.email == "subscriber@example.com"
    assert (order.subtotal, order.shipping_total, order.total) == (5400, 450, 5850)
    assert (order.currency, order.amount_refunded) == ("USD", 0)
    assert order.subscription_id == invoice.subscription_id
    assert order.stripe_invoice_id == invoice.stripe_invoice_id
    # No checkout made it: no checkout session, reservation, cart or Stripe checkout session.
    assert order.checkout_session_id is None
    assert order.reservation_id is None
    assert order.cart_id is None
    assert order.stripe_session_id is None
    assert order.shipping_name == "Grace Hopper"
    assert order.shipping_phone == "+1 703 555 0199"
    assert order.shipping_address == {
        "line1": "7 Roast Road",
        "line2": "Unit 4",
        "city": "Arlington",
        "state": "VA",
        "postal_code": "22201",
        "country": "US",
    }
    items = await db.rows(
        "SELECT product_id, name, slug, unit_price, quantity, line_total, currency "
        "FROM orders.order_items WHERE order_id = :id ORDER BY position",
        id=invoice.order_id,
    )
    assert [(i.name, i.unit_price, i.quantity, i.line_total, i.currency) for i in items] == [
        ("Kenya Kiambu", 1600, 2, 3200, "USD"),
        ("Colombia Huila", 2200, 1, 2200, "USD"),
    ]
    assert [i.product_id for i in items] == [item.product_id for item in invoice.lines]
    history = await db.rows(
        "SELECT from_status, to_status, actor, reason FROM orders.order_status_changes "
        "WHERE order_id = :id",
        id=invoice.order_id,
    )
    assert [(h.from_status, h.to_status, h.actor) for h in history] == [
        (None, "paid", "event:subscription.invoice_paid.v1")
    ]
    assert invoice.stripe_invoice_id in history[0].reason


async def test_a_renewal_of_a_variant_keeps_the_variant_on_its_item(deliver, db) -> None:
    variant_id = uuid.uuid4()
    kilo = msgspec.structs.replace(
        line(5600, 1, name="Ethiopia Guji"),
        variant_id=variant_id,
        sku="guji-es-1kg",
        variant_title="Espresso / 1 kg",
        option_values=["Espresso", "1 kg"],
    )
    invoice = SubscriptionInvoice(lines=[kilo])
    assert await deliver(invoice.paid())

    [item] = await db.rows(
        "SELECT product_id, variant_id, sku, variant_title, option_values, unit_price, quantity "
        "FROM orders.order_items WHERE order_id = :id",
        id=invoice.order_id,
    )
    assert (item.product_id, item.variant_id) == (kilo.product_id, variant_id)
    assert (item.sku, item.variant_title, item.option_values) == (
        "guji-es-1kg",
        "Espresso / 1 kg",
        ["Espresso", "1 kg"],
    )
    assert (item.unit_price, item.quantity) == (5600, 1)


async def test_the_new_order_announces_itself_paid_once(deliver, db) -> None:
    invoice = SubscriptionInvoice()
    event_id = str(uuid.uuid4())
    await deliver(invoice.paid(), event_id=event_id)
    await deliver(invoice.paid(), event_id=event_id)
    await deliver(invoice.paid())
    assert await db.emitted("order.paid.v1", invoice.order_id) == [
        {
            "order_id": str(invoice.order_id),
            "user_id": str(invoice.user_id),
            "email": "subscriber@example.com",
            "total": invoice.total,
            "currency": "USD",
            "lines": [msgspec.to_builtins(line) for line in invoice.lines],
            "subtotal": invoice.subtotal,
            "shipping": invoice.shipping,
            "shipping_address": msgspec.to_builtins(invoice.address),
            "stripe_session_id": "",
            # A customer's order: they sign in to see it, no link opens it.
            "sealed_order_url": "",
            "discount": 0,
            "discount_code": "",
            "tax": 0,
            "shipping_name": "",
        }
    ]


async def test_a_redelivered_invoice_makes_no_second_order(deliver, db) -> None:
    invoice = SubscriptionInvoice()
    event_id = str(uuid.uuid4())
    assert await deliver(invoice.paid(), event_id=event_id)
    # The same event again: the runtime's handled-events record skips it.
    assert not await deliver(invoice.paid(), event_id=event_id)
    # The same invoice under another event id, and under another order id too (a producer that
    # announced it twice): the handler runs and finds the invoice has its order.
    assert await deliver(invoice.paid())
    second_id = uuid.uuid4()
    assert await deliver(invoice.paid(order_id=second_id))

    assert await order_count(db, invoice) == 1
    assert await db.order(second_id) is None
    assert await db.value(
        "SELECT count(*) FROM orders.order_items WHERE order_id = :id", id=invoice.order_id
    ) == len(invoice.lines)
    assert len(await db.emitted("order.paid.v1", invoice.order_id)) == 1
    assert await db.emitted("order.paid.v1", second_id) == []


async def test_one_invoice_racing_under_many_order_ids_makes_one_order(deliver, db) -> None:
    for _ in range(3):
        invoice = SubscriptionInvoice()
        order_ids = [uuid.uuid4() for _ in range(4)]
        await asyncio.gather(*(deliver(invoice.paid(order_id=o)) for o in order_ids))
        assert await order_count(db, invoice) == 1
        (winner,) = await db.rows(
            "SELECT id FROM orders.orders WHERE stripe_invoice_id = :i",
            i=invoice.stripe_invoice_id,
        )
        assert winner.id in order_ids
        paid = [e for o in order_ids for e in await db.emitted("order.paid.v1", o)]
        assert [e["order_id"] for e in paid] == [str(winner.id)]


async def test_each_invoice_of_a_subscription_is_an_order(deliver, db) -> None:
    first = SubscriptionInvoice()
    second = SubscriptionInvoice(
        user_id=first.user_id, subscription_id=first.subscription_id, lines=first.lines
    )
    await deliver(first.paid())
    await deliver(second.paid())
    rows = await db.rows(
        "SELECT id FROM orders.orders WHERE subscription_id = :s", s=first.subscription_id
    )
    assert {r.id for r in rows} == {first.order_id, second.order_id}


async def test_an_order_id_taken_by_another_order_is_refused(deliver, db, place) -> None:
    checkout = await place()
    invoice = SubscriptionInvoice(order_id=checkout.order_id)
    # Not dropped: the event fails (and is dead-lettered after its retries), nothing changes.
    with pytest.raises(OrderIdTakenError):
        await deliver(invoice.paid())
    order = await db.order(checkout.order_id)
    assert order.stripe_invoice_id is None
    assert order.user_id is None
    assert await order_count(db, invoice) == 0
    assert len(await db.emitted("order.paid.v1", checkout.order_id)) == 1


async def test_the_order_is_in_its_customers_history(client, tokens, deliver, place) -> None:
    token, user_id = tokens.customer()
    now = dt.datetime.now(dt.UTC)
    one_off = await place(Checkout(user_id=user_id), occurred_at=now - dt.timedelta(minutes=5))
    invoice = SubscriptionInvoice(user_id=user_id, lines=[line(1900, 2, name="House Blend")])
    await deliver(invoice.paid(), occurred_at=now)

    response = await client.get("/api/orders", headers=tokens.bearer(token))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == 2
    assert [o["id"] for o in page["items"]] == [str(invoice.order_id), str(one_off.order_id)]
    mine = page["items"][0]
    assert mine["status"] == "paid"
    assert mine["paid_at"] is not None
    assert (mine["subtotal"], mine["total"], mine["currency"]) == (3800, 3800, "USD")
    assert mine["item_count"] == 2
    assert [(i["name"], i["quantity"], i["line_total"]) for i in mine["items"]] == [
        ("House Blend", 2, 3800)
    ]
    assert mine["shipping_address"]["postal_code"] == "22201"
    assert mine["subscription_id"] == str(invoice.subscription_id)
    assert page["items"][1]["subscription_id"] is None

    detail = await client.get(f"/api/orders/{invoice.order_id}", headers=tokens.bearer(token))
    assert detail.status_code == 200, detail.text
    assert detail.json()["subscription_id"] == str(invoice.subscription_id)

    # Nobody else sees it.
    other, _ = tokens.customer()
    theirs = await client.get("/api/orders", headers=tokens.bearer(other))
    assert str(invoice.order_id) not in theirs.text
    stranger = await client.get(f"/api/orders/{invoice.order_id}", headers=tokens.bearer(other))
    assert stranger.status_code == 404


async def test_staff_find_and_ship_it_like_any_order(client, admin, deliver, db) -> None:
    invoice = SubscriptionInvoice(email=f"sub-{uuid.uuid4().hex[:10]}@example.com")
    await deliver(invoice.paid())

    listed = (await client.get(f"/api/admin/orders?q={invoice.email}", headers=admin)).json()
    assert [o["id"] for o in listed["items"]] == [str(invoice.order_id)]
    assert listed["items"][0]["status"] == "paid"
    assert listed["items"][0]["subscription_id"] == str(invoice.subscription_id)
    paid = (await client.get("/api/admin/orders?status=paid&page_size=100", headers=admin)).json()
    assert str(invoice.order_id) in [o["id"] for o in paid["items"]]

    detail = (await client.get(f"/api/admin/orders/{invoice.order_id}", headers=admin)).json()
    assert detail["checkout_session_id"] is None
    assert detail["subscription_id"] == str(invoice.subscription_id)
    assert detail["stripe_invoice_id"] == invoice.stripe_invoice_id
    assert [(h["from_status"], h["to_status"]) for h in detail["history"]] == [(None, "paid")]
    assert detail["allowed_statuses"] == ["fulfilled"]

    tracking_number = f"1Z{uuid.uuid4().hex[:14].upper()}"
    shipped = await client.post(
        f"/api/admin/orders/{invoice.order_id}/ship",
        json={"carrier": "UPS", "tracking_number": tracking_number},
        headers=admin,
    )
    assert shipped.status_code == 200, shipped.text
    assert shipped.json()["status"] == "shipped"
    assert shipped.json()["shipment"]["tracking_number"] == tracking_number
    emitted = await db.emitted("order.shipped.v1", invoice.order_id)
    assert [(e["email"], e["tracking_number"]) for e in emitted] == [
        (invoice.email, tracking_number)
    ]


async def test_invoices_from_the_stream_reach_the_handler(orders_app: Litestar, db) -> None:
    """The whole path: an envelope on Redis, the orders consumer group, the handler, commit."""
    invoice = SubscriptionInvoice()
    event = envelope(invoice.paid())
    fields = await entry_fields(
        msgspec.json.encode(event),
        event_id=event.id,
        event_type=event.type,
        correlation_id=event.correlation_id,
        producer=event.producer,
    )
    await orders_app.state.redis.xadd(stream_for(event.type), fields)
    deadline = asyncio.get_running_loop().time() + 30
    while await db.order(invoice.order_id) is None:
        assert asyncio.get_running_loop().time() < deadline, "the consumer did not handle it"
        await asyncio.sleep(0.1)
    assert (await db.order(invoice.order_id)).status == "paid"
    assert len(await db.emitted("order.paid.v1", invoice.order_id)) == 1
