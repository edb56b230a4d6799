"""What the orders service handles. (It publishes order.paid, order.shipped and order.delivered
through :data:`orders.outbox.outbox`, from the services that make those changes.)

Orders are created from events only, never from a client: checkout.started makes the order
``pending_payment`` with its item snapshots; payment.succeeded makes it paid (creating it from
its own payload when checkout.started has not arrived yet). subscription.invoice_paid makes a
subscription's delivery: an order paid already, one per Stripe invoice. The runtime records each
handled event id, and every handler is also safe to run twice on its own.
"""

from __future__ import annotations

from ember_shared.events import Envelope, EventHandlers
from ember_shared.events.contracts import (
    CheckoutExpired,
    CheckoutStarted,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    SubscriptionInvoicePaid,
)
from sqlalchemy.ext.asyncio import AsyncSession

from orders.ordering.services import OrderService

handlers = EventHandlers("orders")


@handlers.on(CheckoutStarted)
async def record_order(event: Envelope, data: CheckoutStarted, session: AsyncSession) -> None:
    await OrderService(session).on_checkout_started(event, data)


@handlers.on(PaymentSucceeded)
async def mark_paid(event: Envelope, data: PaymentSucceeded, session: AsyncSession) -> None:
    await OrderService(session).on_payment_succeeded(event, data)


@handlers.on(PaymentFailed)
async def mark_payment_failed(event: Envelope, data: PaymentFailed, session: AsyncSession) -> None:
    await OrderService(session).on_payment_failed(event, data)


@handlers.on(CheckoutExpired)
async def cancel_expired(event: Envelope, data: CheckoutExpired, session: AsyncSession) -> None:
    await OrderService(session).on_checkout_expired(event, data)


@handlers.on(PaymentRefunded)
async def record_refund(event: Envelope, data: PaymentRefunded, session: AsyncSession) -> None:
    await OrderService(session).on_payment_refunded(event, data)


@handlers.on(SubscriptionInvoicePaid)
async def record_subscription_order(
    event: Envelope, data: SubscriptionInvoicePaid, session: AsyncSession
) -> None:
    await OrderService(session).on_subscription_invoice_paid(event, data)
