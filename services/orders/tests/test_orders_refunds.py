"""Staff refunds: asked of Stripe through checkout, applied only when Stripe's charge.refunded
comes back (payment.refunded), then announced once (order.refunded.v1) with what to restock.

The whole round trip (checkout, the Stripe stand-in, the webhook, catalog and the notifier) is
in tests/flows/test_refund_flow.py; here, the rules orders keeps by itself."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from ember_shared.events.contracts import OrderLine
from orders_testkit import Checkout, line, opened_order_link, problem


@pytest.fixture
def admin(tokens) -> dict[str, str]:
    token, _ = tokens.admin()
    return tokens.bearer(token)


def _refund(order_id: uuid.UUID) -> str:
    return f"/api/admin/orders/{order_id}/refunds"


async def test_refunds_need_the_admin_role(client, tokens) -> None:
    path = _refund(uuid.uuid4())
    body = {"idempotency_key": "key-12345678"}
    problem(await client.post(path, json=body), 401)
    customer, _ = tokens.customer()
    problem(await client.post(path, json=body, headers=tokens.bearer(customer)), 403)
    problem(await client.get(path, headers=tokens.bearer(customer)), 403)


async def test_bad_refunds_are_refused_before_stripe_is_asked(
    client, admin, place, db, monkeypatch
) -> None:
    # Nothing listens here: had a refund got as far as asking checkout, the answer would be 503.
    monkeypatch.setenv("CHECKOUT_URL", "http://127.0.0.1:9")
    paid = await place(Checkout())
    pending = await place(Checkout(), paid=False)
    key = {"idempotency_key": f"k-{uuid.uuid4().hex}"}

    problem(await client.post(_refund(uuid.uuid4()), json=key, headers=admin), 404, "not-found")
    body = problem(await client.post(_refund(pending.order_id), json=key, headers=admin), 409)
    assert body["type"].endswith("/not-paid")
    too_much = problem(
        await client.post(
            _refund(paid.order_id), json={**key, "amount": paid.total + 1}, headers=admin
        ),
        409,
    )
    assert too_much["type"].endswith("/refund-too-large")
    assert too_much["refundable"] == paid.total
    for bad in (
        {**key, "amount": 0},
        {**key, "amount": -5},
        {**key, "amount": 12.5},
        {"idempotency_key": "short"},
        {"idempotency_key": "has spaces in it"},
        {**key, "restock": "yes"},
        {**key, "surprise": 1},
        {**key, "reason": "x" * 301},
    ):
        problem(await client.post(_refund(paid.order_id), json=bad, headers=admin), 400)

    # Stripe cannot be asked: a problem, and no refund is left recorded.
    down = problem(await client.post(_refund(paid.order_id), json=key, headers=admin), 503)
    assert down["type"].endswith("/payment-provider-unavailable")
    assert (await client.get(_refund(paid.order_id), headers=admin)).json() == {"items": []}
    order = await db.order(paid.order_id)
    assert (order.status, order.amount_refunded) == ("paid", 0)


async def _requested(db, order_id: uuid.UUID, amount: int, *, restock: bool) -> uuid.UUID:
    """A refund staff asked for and Stripe accepted (its webhook not back yet)."""
    request_id = uuid.uuid4()
    await db.rows(
        "INSERT INTO orders.refund_requests (id, order_id, idempotency_key, amount, restock, "
        "actor, status, stripe_refund_id) VALUES (:id, :o, :k, :a, :r, 'admin:test', "
        "'requested', :s) RETURNING id",
        id=request_id,
        o=order_id,
        k=f"k-{request_id.hex}",
        a=amount,
        r=restock,
        s=f"re_{request_id.hex[:20]}",
    )
    return request_id


async def test_the_webhook_settles_the_request_and_announces_it_once(
    client, admin, place, deliver, db
) -> None:
    checkout = await place(Checkout())
    first = await _requested(db, checkout.order_id, 1000, restock=True)
    second = await _requested(db, checkout.order_id, 500, restock=False)
    listed = (await client.get(_refund(checkout.order_id), headers=admin)).json()["items"]
    assert [(r["amount"], r["status"], r["restock"]) for r in listed] == [
        (1000, "requested", True),
        (500, "requested", False),
    ]
    # Asked is not refunded: the order has not moved.
    assert (await db.order(checkout.order_id)).status == "paid"
    assert await db.emitted("order.refunded.v1", checkout.order_id) == []

    await deliver(checkout.refunded(1000))
    order = await db.order(checkout.order_id)
    assert (order.status, order.amount_refunded) == ("partially_refunded", 1000)
    statuses = dict(
        await db.rows(
            "SELECT id, status FROM orders.refund_requests WHERE order_id = :o",
            o=checkout.order_id,
        )
    )
    assert statuses == {first: "refunded", second: "requested"}
    (announced,) = await db.emitted("order.refunded.v1", checkout.order_id)
    assert (announced["amount"], announced["amount_refunded"]) == (1000, 1000)
    assert announced["fully_refunded"] is False
    assert announced["email"] == checkout.email
    assert sorted((r["product_id"], r["quantity"]) for r in announced["restock"]) == sorted(
        (str(line.product_id), line.quantity) for line in checkout.lines
    )
    # The plain page; a guest's link only sealed for the notifier.
    assert announced["order_url"].endswith(f"/order/{checkout.order_id}")
    assert opened_order_link(announced["sealed_order_url"]).startswith(
        f"{announced['order_url']}?token="
    )

    # The same event again, or an older total, announces nothing more.
    await deliver(checkout.refunded(1000))
    assert len(await db.emitted("order.refunded.v1", checkout.order_id)) == 1

    await deliver(checkout.refunded(checkout.total, full=True))
    order = await db.order(checkout.order_id)
    assert (order.status, order.amount_refunded) == ("refunded", checkout.total)
    latest = (await db.emitted("order.refunded.v1", checkout.order_id))[-1]
    assert latest["amount"] == checkout.total - 1000
    assert latest["fully_refunded"] is True
    assert latest["restock"] == []  # the second request did not ask for it
    listed = (await client.get(_refund(checkout.order_id), headers=admin)).json()["items"]
    assert [r["status"] for r in listed] == ["refunded", "refunded"]

    # Everything is refunded: nothing more can be.
    body = problem(
        await client.post(
            _refund(checkout.order_id), json={"idempotency_key": "k-123456789"}, headers=admin
        ),
        409,
    )
    assert body["type"].endswith("/refund-too-large")
    assert body["refundable"] == 0


def _variant(base: OrderLine, price: int, quantity: int, sku: str, values: list[str]) -> OrderLine:
    """``base``'s product sold as one of its variants (a new id, its own SKU and options)."""
    return msgspec.structs.replace(
        base,
        unit_price=price,
        quantity=quantity,
        variant_id=uuid.uuid4(),
        sku=sku,
        variant_title=" / ".join(values),
        option_values=values,
    )


async def test_an_order_keeps_the_variants_sold_and_a_refund_restocks_each(
    client, admin, place, deliver, db
) -> None:
    bag = line(1800, 1)
    kilo = _variant(bag, 5600, 1, "ethiopia-es-1kg", ["Espresso", "1 kg"])
    quarter = _variant(bag, 1600, 2, "ethiopia-fi-250", ["Filter", "250 g"])
    # The same product on three lines, two of them variants; the bag names none (an event
    # from before variants), so it is the product's default variant.
    checkout = await place(Checkout(lines=[bag, kilo, quarter]))

    detail = (await client.get(f"/api/admin/orders/{checkout.order_id}", headers=admin)).json()
    assert [
        (i["product_id"], i["variant_id"], i["sku"], i["variant_title"], i["option_values"])
        for i in detail["items"]
    ] == [
        (str(bag.product_id), None, "", "", []),
        (
            str(bag.product_id),
            str(kilo.variant_id),
            "ethiopia-es-1kg",
            "Espresso / 1 kg",
            ["Espresso", "1 kg"],
        ),
        (
            str(bag.product_id),
            str(quarter.variant_id),
            "ethiopia-fi-250",
            "Filter / 250 g",
            ["Filter", "250 g"],
        ),
    ]
    assert [(i["unit_price"], i["quantity"]) for i in detail["items"]] == [
        (1800, 1),
        (5600, 1),
        (1600, 2),
    ]
    (paid,) = await db.emitted("order.paid.v1", checkout.order_id)
    assert [(p["variant_id"], p["sku"], p["option_values"]) for p in paid["lines"]] == [
        (None, "", []),
        (str(kilo.variant_id), "ethiopia-es-1kg", ["Espresso", "1 kg"]),
        (str(quarter.variant_id), "ethiopia-fi-250", ["Filter", "250 g"]),
    ]

    await _requested(db, checkout.order_id, 5600, restock=True)
    await deliver(checkout.refunded(5600))
    (announced,) = await db.emitted("order.refunded.v1", checkout.order_id)
    assert sorted(
        (r["product_id"], r["variant_id"] or "", r["quantity"]) for r in announced["restock"]
    ) == sorted(
        [
            (str(bag.product_id), "", 1),
            (str(bag.product_id), str(kilo.variant_id), 1),
            (str(bag.product_id), str(quarter.variant_id), 2),
        ]
    )
