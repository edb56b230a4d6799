"""Helpers of the orders tests: one checkout's events, built consistently, and assertions."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from ember_devkit.testing.events import envelope
from ember_shared.events import EventData
from ember_shared.events.consumer import EventConsumer
from ember_shared.events.contracts import (
    Address,
    CheckoutExpired,
    CheckoutStarted,
    OrderLine,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    SubscriptionInvoicePaid,
)
from ember_shared.ids import new_id
from litestar import Litestar
from orders.settings import TrackingSettings

STANDIN_TOKEN = "orders-test-17token"


def line(
    price: int = 1800,
    quantity: int = 1,
    *,
    product_id: uuid.UUID | None = None,
    name: str | None = None,
) -> OrderLine:
    product_id = product_id or uuid.uuid4()
    return OrderLine(
        product_id=product_id,
        slug=f"coffee-{product_id.hex[:8]}",
        name=name or f"Coffee {product_id.hex[:6]}",
        unit_price=price,
        quantity=quantity,
        image_url=f"/media/coffee-{product_id.hex[:8]}.jpg",
    )


class Priced:
    """Totals from the lines, as checkout computes them."""

    lines: list[OrderLine]
    shipping: int

    @property
    def subtotal(self) -> int:
        return sum(item.unit_price * item.quantity for item in self.lines)

    @property
    def total(self) -> int:
        return self.subtotal + self.shipping


@dataclass
class Checkout(Priced):
    """One shopper's checkout, from which every payment event about its order is built."""

    user_id: uuid.UUID | None = None
    email: str = "shopper@example.com"
    lines: list[OrderLine] = field(default_factory=lambda: [line(1800, 2), line(2400, 1)])
    shipping: int = 500
    currency: str = "USD"
    order_id: uuid.UUID = field(default_factory=new_id)
    checkout_session_id: uuid.UUID = field(default_factory=new_id)
    reservation_id: uuid.UUID = field(default_factory=new_id)
    cart_id: uuid.UUID | None = field(default_factory=new_id)
    stripe_session_id: str = field(default_factory=lambda: f"cs_test_{uuid.uuid4().hex}")

    @property
    def address(self) -> Address:
        return Address(
            name="Ada Lovelace",
            line1="1 Bean Street",
            line2="Flat 2",
            city="Portland",
            state="OR",
            postal_code="97201",
            country="US",
            phone="+1 503 555 0100",
        )

    def started(self) -> CheckoutStarted:
        return CheckoutStarted(
            order_id=self.order_id,
            checkout_session_id=self.checkout_session_id,
            user_id=self.user_id,
            cart_id=self.cart_id,
            email=self.email,
            lines=list(self.lines),
            subtotal=self.subtotal,
            shipping=self.shipping,
            total=self.total,
            currency=self.currency,
            shipping_address=self.address,
            reservation_id=self.reservation_id,
            expires_at=(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)).isoformat(),
        )

    def succeeded(self) -> PaymentSucceeded:
        return PaymentSucceeded(
            order_id=self.order_id,
            checkout_session_id=self.checkout_session_id,
            user_id=self.user_id,
            cart_id=self.cart_id,
            email=self.email,
            lines=list(self.lines),
            subtotal=self.subtotal,
            shipping=self.shipping,
            total=self.total,
            currency=self.currency,
            shipping_address=self.address,
            reservation_id=self.reservation_id,
            stripe_session_id=self.stripe_session_id,
            payment_intent_id=f"pi_{uuid.uuid4().hex[:20]}",
        )

    def failed(self, reason: str = "card_declined") -> PaymentFailed:
        return PaymentFailed(
            order_id=self.order_id,
            checkout_session_id=self.checkout_session_id,
            reservation_id=self.reservation_id,
            email=self.email,
            reason=reason,
        )

    def expired(self) -> CheckoutExpired:
        return CheckoutExpired(
            order_id=self.order_id,
            checkout_session_id=self.checkout_session_id,
            reservation_id=self.reservation_id,
            cart_id=self.cart_id,
        )

    def refunded(self, amount: int, *, full: bool = False) -> PaymentRefunded:
        return PaymentRefunded(
            order_id=self.order_id,
            checkout_session_id=self.checkout_session_id,
            amount_refunded=amount,
            currency=self.currency,
            fully_refunded=full,
            email=self.email,
        )


@dataclass
class SubscriptionInvoice(Priced):
    """One paid invoice of a customer's subscription, as checkout announces it."""

    user_id: uuid.UUID = field(default_factory=new_id)
    email: str = "subscriber@example.com"
    lines: list[OrderLine] = field(default_factory=lambda: [line(1600, 2), line(2200, 1)])
    shipping: int = 0
    currency: str = "USD"
    subscription_id: uuid.UUID = field(default_factory=new_id)
    order_id: uuid.UUID = field(default_factory=new_id)
    stripe_invoice_id: str = field(default_factory=lambda: f"in_test_{uuid.uuid4().hex[:24]}")
    stripe_subscription_id: str = field(default_factory=lambda: f"sub_test_{uuid.uuid4().hex[:24]}")

    @property
    def address(self) -> Address:
        return Address(
            name="Grace Hopper",
            line1="7 Roast Road",
            line2="Unit 4",
            city="Arlington",
            state="VA",
            postal_code="22201",
            country="US",
            phone="+1 703 555 0199",
        )

    def paid(self, *, order_id: uuid.UUID | None = None) -> SubscriptionInvoicePaid:
        return SubscriptionInvoicePaid(
            order_id=order_id or self.order_id,
            subscription_id=self.subscription_id,
            user_id=self.user_id,
            email=self.email,
            lines=list(self.lines),
            subtotal=self.subtotal,
            shipping=self.shipping,
            total=self.total,
            currency=self.currency,
            shipping_address=self.address,
            stripe_invoice_id=self.stripe_invoice_id,
            stripe_subscription_id=self.stripe_subscription_id,
            period_start="2026-12-01T00:00:00+00:00",
            period_end="2027-01-01T00:00:00+00:00",
        )


def problem(response: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    """Assert an RFC 9457 answer with this status (and type slug) and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    if kind is not None:
        assert body["type"].endswith("/" + kind), body
    assert "Traceback" not in response.text
    return body


def tracking_settings(api_url: str, **overrides: Any) -> TrackingSettings:
    values: dict[str, Any] = {
        "api_url": api_url,
        "api_key": STANDIN_TOKEN,
        "sync_interval_s": 600,
        "poll_interval_s": 1,
        "batch_size": 40,
        "max_age_days": 90,
        "timeout_ms": 2000,
        "poller_enabled": False,
        "public_url": "",
        "uses_standin": False,
    }
    values.update(overrides)
    return TrackingSettings(**values)


async def run_app(app: Litestar) -> tuple[asyncio.Event, asyncio.Task[None]]:
    # Not AsyncTestClient: it runs the lifespan on a portal thread's loop, and the event
    # runtime's tasks there and the requests here would share one asyncpg pool across loops.
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run())
    await asyncio.wait_for(started.wait(), 30)
    return stop, task


def deliver_with(app: Litestar) -> Callable[..., Awaitable[bool]]:
    """Handle one event through the running app's own event consumer, as a delivery from
    Redis is (its dedupe in handled_events, its transaction); an event already handled is
    skipped. True when a handler ran."""

    async def run(data: EventData, **kwargs: Any) -> bool:
        consumer: EventConsumer = app.state.events.consumer
        return bool(await consumer.handle(envelope(data, **kwargs)))

    return run


def opened_order_link(sealed: str) -> str:
    """A guest's sealed order link as only the notifier can open it (the test stack's key)."""
    from ember_shared.sealing import private_key, unseal

    return unseal(sealed, private_key(local=True))
