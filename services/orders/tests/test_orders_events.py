"""Orders are made and moved by payment events only: correctly, once, in whatever order."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from typing import Any

import msgspec
import pytest
import structlog
from ember_devkit.testing.waiting import eventually_async
from ember_shared.events import stream_for
from ember_shared.events.wire import entry_fields
from ember_shared.settings import service_settings
from litestar import Litestar
from orders.ordering import services as ordering_services
from orders_testkit import Checkout, envelope, line, opened_order_link
from sqlalchemy import event
from sqlalchemy.util import await_only


async def test_checkout_started_creates_a_pending_order_with_snapshots(deliver, db) -> None:
    checkout = Checkout(lines=[line(1800, 2, name="Ethiopia Guji"), line(2400, 1)], shipping=500)
    assert await deliver(checkout.started())

    order = await db.order(checkout.order_id)
    assert order.status == "pending_payment"
    assert (order.subtotal, order.shipping_total, order.total) == (6000, 500, 6500)
    assert order.currency == "USD"
    assert order.email == "shopper@example.com"
    assert order.stripe_session_id is None
    assert order.paid_at is None
    assert order.payment_expires_at is not None
    assert order.shipping_name == "Ada Lovelace"
    assert order.shipping_address["city"] == "Portland"
    assert order.shipping_address["line2"] == "Flat 2"
    items = await db.rows(
        "SELECT name, slug, unit_price, quantity, line_total, position FROM orders.order_items "
        "WHERE order_id = :id ORDER BY position",
        id=checkout.order_id,
    )
    assert [(i.name, i.unit_price, i.quantity, i.line_total) for i in items] == [
        ("Ethiopia Guji", 1800, 2, 3600),
        (checkout.lines[1].name, 2400, 1, 2400),
    ]
    assert items[0].slug == checkout.lines[0].slug
    assert await db.emitted("order.paid.v1", checkout.order_id) == []


async def test_payment_succeeded_marks_paid_and_emits_order_paid_once(deliver, db) -> None:
    checkout = Checkout()
    await deliver(checkout.started())
    paid = checkout.succeeded()
    event_id = str(uuid.uuid4())
    assert await deliver(paid, event_id=event_id)
    # The same event again: the runtime's handled-events record skips it.
    assert not await deliver(paid, event_id=event_id)
    # The same payment under another event id (a replay by the producer): the handler itself
    # sees the order is paid already and changes nothing.
    assert await deliver(paid)

    order = await db.order(checkout.order_id)
    assert order.status == "paid"
    assert order.paid_at is not None
    assert order.stripe_session_id == checkout.stripe_session_id
    assert order.payment_intent_id == paid.payment_intent_id
    emitted = await db.emitted("order.paid.v1", checkout.order_id)
    # It carries the whole order: the confirmation mail follows it, not the payment event.
    assert emitted == [
        {
            "order_id": str(checkout.order_id),
            "user_id": None,
            "email": "shopper@example.com",
            "total": checkout.total,
            "currency": "USD",
            "lines": [msgspec.to_builtins(line) for line in checkout.lines],
            "subtotal": checkout.subtotal,
            "shipping": checkout.shipping,
            "shipping_address": msgspec.to_builtins(checkout.address),
            "stripe_session_id": "",
            "sealed_order_url": order.sealed_order_url,
            "discount": 0,
            "discount_code": "",
            "tax": 0,
            "shipping_name": "",
        }
    ]
    # A guest's link: a secret of ours (only its hash kept), sealed for the notifier; Stripe's
    # session id is in neither the event nor the link.
    assert order.sealed_order_url.startswith("sealed.v1.")
    assert checkout.stripe_session_id not in order.sealed_order_url
    public_url = service_settings("orders").app.public_url.rstrip("/")
    link = opened_order_link(order.sealed_order_url)
    assert link.startswith(f"{public_url}/order/{checkout.order_id}?token=")
    token = link.split("?token=", 1)[1]
    assert len(token) >= 40
    assert order.guest_link_hash == hashlib.sha256(token.encode()).hexdigest()
    history = await db.rows(
        "SELECT from_status, to_status FROM orders.order_status_changes WHERE order_id = :id "
        "ORDER BY created_at, id",
        id=checkout.order_id,
    )
    assert [(h.from_status, h.to_status) for h in history] == [
        (None, "pending_payment"),
        ("pending_payment", "paid"),
    ]


async def test_payment_before_checkout_started_creates_the_order(deliver, db) -> None:
    checkout = Checkout(lines=[line(1500, 3)])
    await deliver(checkout.succeeded())
    order = await db.order(checkout.order_id)
    assert order.status == "paid"
    assert order.total == checkout.total
    assert order.payment_expires_at is None

    # checkout.started arrives late: no second set of items, status stays paid.
    await deliver(checkout.started())
    order = await db.order(checkout.order_id)
    assert order.status == "paid"
    assert order.payment_expires_at is not None
    count = await db.value(
        "SELECT count(*) FROM orders.order_items WHERE order_id = :id", id=checkout.order_id
    )
    assert count == 1
    assert len(await db.emitted("order.paid.v1", checkout.order_id)) == 1


async def test_started_and_succeeded_racing_make_one_order(deliver, db) -> None:
    for _ in range(5):
        checkout = Checkout()
        await asyncio.gather(
            deliver(checkout.started()),
            deliver(checkout.succeeded()),
            deliver(checkout.succeeded()),
        )
        assert (await db.order(checkout.order_id)).status == "paid"
        items = await db.value(
            "SELECT count(*) FROM orders.order_items WHERE order_id = :id", id=checkout.order_id
        )
        assert items == len(checkout.lines)
        assert len(await db.emitted("order.paid.v1", checkout.order_id)) == 1


async def test_payment_failed_then_expired(deliver, db) -> None:
    checkout = Checkout()
    await deliver(checkout.started())
    await deliver(checkout.failed("card_declined"))
    order = await db.order(checkout.order_id)
    assert order.status == "payment_failed"
    reason = await db.value(
        "SELECT reason FROM orders.order_status_changes WHERE order_id = :id "
        "AND to_status = 'payment_failed'",
        id=checkout.order_id,
    )
    assert reason == "card_declined"

    await deliver(checkout.expired())
    order = await db.order(checkout.order_id)
    assert order.status == "cancelled"
    assert order.cancelled_at is not None


async def test_expired_after_paid_changes_nothing(deliver, db) -> None:
    checkout = Checkout()
    await deliver(checkout.started())
    await deliver(checkout.succeeded())
    await deliver(checkout.expired())
    await deliver(checkout.failed())
    order = await db.order(checkout.order_id)
    assert order.status == "paid"
    assert order.cancelled_at is None


async def test_payment_after_expiry_still_makes_the_order_paid(deliver, db) -> None:
    # Money taken is the truth: the order must say paid, even after it was closed.
    checkout = Checkout()
    await deliver(checkout.started())
    await deliver(checkout.expired())
    assert (await db.order(checkout.order_id)).status == "cancelled"
    await deliver(checkout.succeeded())
    assert (await db.order(checkout.order_id)).status == "paid"
    assert len(await db.emitted("order.paid.v1", checkout.order_id)) == 1


async def test_a_payment_checkout_flagged_says_so_in_the_orders_history(deliver, db) -> None:
    checkout = Checkout()
    await deliver(checkout.started())
    note = "Stripe charged 1 USD; the checkout expected 2400 USD."
    await deliver(msgspec.structs.replace(checkout.succeeded(), attention=note))
    assert (await db.order(checkout.order_id)).status == "paid"
    reasons = await db.rows(
        "SELECT reason FROM orders.order_status_changes WHERE order_id = :id AND to_status = 'paid'",
        id=checkout.order_id,
    )
    assert [r.reason for r in reasons] == [f"payment confirmed by Stripe; needs attention: {note}"]
    assert (await db.order(checkout.order_id)).attention == note


async def test_an_ordinary_payment_leaves_the_order_unflagged(deliver, db) -> None:
    checkout = Checkout()
    await deliver(checkout.started())
    await deliver(checkout.succeeded())
    order = await db.order(checkout.order_id)
    assert (order.status, order.attention) == ("paid", None)


async def test_outcomes_before_the_order_exists_are_applied_when_it_does(deliver, db) -> None:
    failed = Checkout()
    await deliver(failed.failed())
    await deliver(failed.expired())
    assert await db.order(failed.order_id) is None
    assert (
        await db.value(
            "SELECT count(*) FROM orders.deferred_events WHERE order_id = :id", id=failed.order_id
        )
        == 2
    )
    await deliver(failed.started())
    assert (await db.order(failed.order_id)).status == "cancelled"
    assert (
        await db.value(
            "SELECT count(*) FROM orders.deferred_events WHERE order_id = :id", id=failed.order_id
        )
        == 0
    )


async def test_an_outcome_handled_while_its_order_is_being_placed_is_not_lost(
    deliver, db, orders_app
) -> None:
    """checkout.started has placed the order and taken its parked outcomes, but not committed,
    when payment.failed for that order is handled: the failure must reach the order."""
    checkout = Checkout()
    engine = orders_app.state.db_engine.sync_engine
    outcome: list[asyncio.Task[bool]] = []

    async def waiting_for_a_lock() -> bool:
        return bool(
            await db.value(
                "SELECT count(*) FROM pg_locks WHERE NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )

    async def handled_or_waiting() -> bool:
        return outcome[0].done() or await waiting_for_a_lock()

    async def the_outcome_meanwhile() -> None:
        outcome.append(asyncio.create_task(deliver(checkout.failed())))
        # Handled at once (parked), or waiting for the placing to end.
        await eventually_async(handled_or_waiting, "payment.failed to be handled or to wait")

    def after(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not outcome and statement.lstrip().startswith("DELETE FROM orders.deferred_events"):
            await_only(the_outcome_meanwhile())

    event.listen(engine, "after_cursor_execute", after)
    try:
        assert await deliver(checkout.started())
        assert await outcome[0]
    finally:
        event.remove(engine, "after_cursor_execute", after)

    assert (await db.order(checkout.order_id)).status == "payment_failed"
    parked = "SELECT count(*) FROM orders.deferred_events WHERE order_id = :id"
    assert await db.value(parked, id=checkout.order_id) == 0


async def test_refund_before_payment_waits_for_the_payment(deliver, db) -> None:
    checkout = Checkout()
    await deliver(checkout.started())
    await deliver(checkout.refunded(1000))
    # The order exists but is not paid: a refund of it cannot be applied yet.
    assert (await db.order(checkout.order_id)).status == "pending_payment"
    await deliver(checkout.succeeded())
    order = await db.order(checkout.order_id)
    assert order.status == "partially_refunded"
    assert order.amount_refunded == 1000


async def test_refunds_partial_then_full_never_go_back(deliver, db) -> None:
    checkout = Checkout()
    await deliver(checkout.started())
    await deliver(checkout.succeeded())
    await deliver(checkout.refunded(1000))
    order = await db.order(checkout.order_id)
    assert (order.status, order.amount_refunded) == ("partially_refunded", 1000)

    await deliver(checkout.refunded(2500))
    assert (await db.order(checkout.order_id)).amount_refunded == 2500
    # An older refund event delivered late cannot lower the running total.
    await deliver(checkout.refunded(1000))
    assert (await db.order(checkout.order_id)).amount_refunded == 2500

    await deliver(checkout.refunded(checkout.total, full=True))
    order = await db.order(checkout.order_id)
    assert (order.status, order.amount_refunded) == ("refunded", checkout.total)
    assert order.refunded_at is not None
    # Nothing moves a refunded order: not a late partial refund, not a late payment.
    await deliver(checkout.refunded(500))
    await deliver(checkout.succeeded())
    assert (await db.order(checkout.order_id)).status == "refunded"


async def test_refund_in_another_currency_is_ignored(deliver, db) -> None:
    checkout = Checkout()
    await deliver(checkout.started())
    await deliver(checkout.succeeded())
    wrong = msgspec.structs.replace(checkout.refunded(1000), currency="EUR")
    await deliver(wrong)
    order = await db.order(checkout.order_id)
    assert (order.status, order.amount_refunded) == ("paid", 0)


async def test_order_created_at_is_when_checkout_started(deliver, db) -> None:
    checkout = Checkout()
    when = dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.UTC)
    await deliver(checkout.started(), occurred_at=when)
    await deliver(checkout.succeeded(), occurred_at=when + dt.timedelta(minutes=3))
    order = await db.order(checkout.order_id)
    assert order.created_at == when
    assert order.paid_at == when + dt.timedelta(minutes=3)


async def test_events_from_the_stream_reach_the_handlers(orders_app: Litestar, db) -> None:
    """The whole path: an envelope on Redis, the orders consumer group, the handler, commit."""
    checkout = Checkout()
    redis = orders_app.state.redis
    for data in (checkout.started(), checkout.succeeded()):
        event = envelope(data)
        # Laid out exactly as checkout's relay lays it out.
        fields = await entry_fields(
            msgspec.json.encode(event),
            event_id=event.id,
            event_type=event.type,
            correlation_id=event.correlation_id,
            producer=event.producer,
        )
        await redis.xadd(stream_for(event.type), fields)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        order = await db.order(checkout.order_id)
        if order is not None and order.status == "paid":
            break
        assert asyncio.get_running_loop().time() < deadline, "the consumer did not handle it"
        await asyncio.sleep(0.1)
    assert len(await db.emitted("order.paid.v1", checkout.order_id)) == 1


async def test_an_order_keeps_its_discount_per_line_its_shipping_method_and_tax(
    deliver, db
) -> None:
    lines = [
        msgspec.structs.replace(line(1800, 2), discount=270),
        msgspec.structs.replace(line(2400, 1), discount=90),
    ]
    checkout = Checkout(lines=lines, shipping=1500)
    started = msgspec.structs.replace(
        checkout.started(),
        discount=360,
        discount_code="WELCOME10",
        tax=0,
        total=6000 - 360 + 1500,
        shipping_rate="express",
        shipping_name="Express",
    )
    assert await deliver(started)
    # Stripe Tax's figure arrives with the payment.
    paid = msgspec.structs.replace(
        checkout.succeeded(),
        discount=360,
        discount_code="WELCOME10",
        tax=518,
        total=6000 - 360 + 1500 + 518,
        shipping_rate="express",
        shipping_name="Express",
    )
    assert await deliver(paid)

    order = await db.order(checkout.order_id)
    assert (order.subtotal, order.discount_total, order.shipping_total, order.tax_total) == (
        6000,
        360,
        1500,
        518,
    )
    assert order.total == 7658
    assert (order.discount_code, order.shipping_method) == ("WELCOME10", "Express")
    items = await db.rows(
        "SELECT line_total, discount FROM orders.order_items WHERE order_id = :id "
        "ORDER BY position",
        id=checkout.order_id,
    )
    assert [(i.line_total, i.discount) for i in items] == [(3600, 270), (2400, 90)]
    [emitted] = await db.emitted("order.paid.v1", checkout.order_id)
    assert (emitted["discount"], emitted["tax"], emitted["total"]) == (360, 518, 7658)
    assert (emitted["discount_code"], emitted["shipping_name"]) == ("WELCOME10", "Express")
    assert [item["discount"] for item in emitted["lines"]] == [270, 90]


async def test_a_line_left_out_for_its_second_price_is_said_once_when_the_order_is_made(
    deliver, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One product on two lines at two prices keeps its first line, and the error says so
    when the items are written; a replay of the event (another event id) makes nothing and
    says nothing again."""
    said = structlog.testing.CapturingLogger()
    monkeypatch.setattr(ordering_services, "log", said)
    beans = uuid.uuid4()
    checkout = Checkout(lines=[line(1800, 1, product_id=beans), line(1500, 1, product_id=beans)])
    checkout.lines[1] = msgspec.structs.replace(checkout.lines[1], slug=checkout.lines[0].slug)
    started = checkout.started()

    assert await deliver(started)
    assert await deliver(started)
    assert await deliver(checkout.succeeded())

    refused = [call for call in said.calls if call.args == ("order_line_duplicate_price",)]
    assert [call.kwargs for call in refused] == [{"order_id": str(checkout.order_id)}]
    items = await db.rows(
        "SELECT unit_price, quantity FROM orders.order_items WHERE order_id = :id",
        id=checkout.order_id,
    )
    assert [tuple(item) for item in items] == [(1800, 1)]
