"""What the orders service publishes and handles.

Published through :data:`outbox`, in the transaction of the change, from the services that make
it: ``order.paid`` (ordering), ``order.shipped`` and ``order.delivered`` (tracking) and
``order.refunded`` (refunds).

Orders are created from events only, never from a client: checkout.started makes the order
``pending_payment`` with its item snapshots; payment.succeeded makes it paid (creating it from
its own payload when checkout.started has not arrived yet). subscription.invoice_paid makes a
subscription's delivery: an order paid already, one per Stripe invoice. The runtime records each
handled event id, and every handler is also safe to run twice on its own. Each handler is given
an :class:`~orders.ordering.services.OrderService` on its session (the app's ``orders`` event
dependency), so this module imports no service and every service may import the outbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ember_shared.events import Envelope, EventData, EventHandlers, Outbox
from ember_shared.events.contracts import (
    CheckoutExpired,
    CheckoutStarted,
    OrderDelivered,
    OrderPaid,
    OrderRefunded,
    OrderShipped,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    SubscriptionInvoicePaid,
)
from sqlalchemy.ext.asyncio import AsyncSession

from orders.models import Base

if TYPE_CHECKING:
    from orders.ordering.services import OrderService

#: Every event type orders publishes (each names ``PRODUCER = "orders"``).
PUBLISHES: tuple[type[EventData], ...] = (OrderPaid, OrderShipped, OrderDelivered, OrderRefunded)

outbox = Outbox("orders", Base.metadata)
handlers = EventHandlers("orders")


@handlers.on(CheckoutStarted)
async def record_order(
    event: Envelope, data: CheckoutStarted, session: AsyncSession, orders: OrderService
) -> None:
    await orders.on_checkout_started(event, data)


# Each payment is about its own order (a second payment of one order waits on the order's row
# lock, in either order), so they need not queue behind each other: at 16 buyers, one at a
# time, a payment waited up to 0.9 s for those before it.
@handlers.on(PaymentSucceeded, concurrency=4)
async def mark_paid(
    event: Envelope, data: PaymentSucceeded, session: AsyncSession, orders: OrderService
) -> None:
    await orders.on_payment_succeeded(event, data)


@handlers.on(PaymentFailed)
async def mark_payment_failed(
    event: Envelope, data: PaymentFailed, session: AsyncSession, orders: OrderService
) -> None:
    await orders.on_payment_failed(event, data)


@handlers.on(CheckoutExpired)
async def cancel_expired(
    event: Envelope, data: CheckoutExpired, session: AsyncSession, orders: OrderService
) -> None:
    await orders.on_checkout_expired(event, data)


@handlers.on(PaymentRefunded)
async def record_refund(
    event: Envelope, data: PaymentRefunded, session: AsyncSession, orders: OrderService
) -> None:
    await orders.on_payment_refunded(event, data)


@handlers.on(SubscriptionInvoicePaid)
async def record_subscription_order(
    event: Envelope, data: SubscriptionInvoicePaid, session: AsyncSession, orders: OrderService
) -> None:
    await orders.on_subscription_invoice_paid(event, data)
