"""What the catalog does when other services' events arrive.

- ``payment.succeeded.v1``: the order's reservation becomes a sale.
- ``payment.failed.v1`` and ``checkout.expired.v1``: the reservation is released.
- ``subscription.invoice_paid.v1``: the delivery's units leave stock (it reserved none); what
  is not there is recorded for staff, never refused.
- ``order.refunded.v1``: the units staff chose to restock with a refund go back on the shelf.

The runtime calls each handler in a transaction that also records the event id, so a
redelivered event changes nothing; the handlers are also idempotent by themselves (each moves a
reservation out of ``active`` with a conditional update; a delivery claims its order id and
invoice first), so the same order under a new event id changes nothing either. Cached shopper answers made stale
are invalidated once that transaction commits. Published: ``stock.released.v1``.
"""

from __future__ import annotations

from typing import Any

import structlog
from ember_shared.events import Envelope, EventHandlers
from ember_shared.events.contracts import (
    CheckoutExpired,
    OrderRefunded,
    PaymentFailed,
    PaymentSucceeded,
    SubscriptionInvoicePaid,
)
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.cache import CatalogCache
from catalog.inventory.services import StockKeeper
from catalog.settings import CatalogSettings

log = structlog.get_logger("catalog.events")

handlers = EventHandlers("catalog")


class _Context:
    """The cache and settings the app built; set by the app's lifespan before events flow."""

    cache: CatalogCache | None = None
    settings: CatalogSettings | None = None


context = _Context()


def _keeper(session: AsyncSession) -> StockKeeper:
    assert context.cache is not None, "catalog app not created"
    assert context.settings is not None, "catalog app not created"
    return StockKeeper(session, context.cache, context.settings)


@handlers.on(PaymentSucceeded)
async def sell_reserved_stock(
    event: Envelope, data: PaymentSucceeded, session: AsyncSession
) -> None:
    outcome = await _keeper(session).sell(data.order_id)
    log.info(
        "payment_succeeded_handled", order_id=str(data.order_id), outcome=outcome, event_id=event.id
    )


@handlers.on(SubscriptionInvoicePaid)
async def take_subscription_delivery(
    event: Envelope, data: SubscriptionInvoicePaid, session: AsyncSession
) -> None:
    outcome = await _keeper(session).deliver(
        data.order_id,
        data.subscription_id,
        data.stripe_invoice_id,
        [(line.product_id, line.quantity) for line in data.lines],
    )
    log.info(
        "subscription_invoice_paid_handled",
        order_id=str(data.order_id),
        outcome=outcome,
        event_id=event.id,
    )


@handlers.on(PaymentFailed)
async def release_on_payment_failed(
    event: Envelope, data: PaymentFailed, session: AsyncSession
) -> None:
    await _release(session, data.order_id, "payment_failed", event)


@handlers.on(CheckoutExpired)
async def release_on_checkout_expired(
    event: Envelope, data: CheckoutExpired, session: AsyncSession
) -> None:
    await _release(session, data.order_id, "checkout_expired", event)


async def _release(session: AsyncSession, order_id: Any, reason: str, event: Envelope) -> None:
    record = await _keeper(session).release(order_id, reason)
    log.info(
        "reservation_release_handled",
        order_id=str(order_id),
        reason=reason,
        status=record.status if record else "none",
        event_id=event.id,
    )


@handlers.on(OrderRefunded)
async def restock_refunded_order(
    event: Envelope, data: OrderRefunded, session: AsyncSession
) -> None:
    if not data.restock:
        return
    units = await _keeper(session).restock(
        data.order_id, [(line.product_id, line.quantity) for line in data.restock]
    )
    log.info(
        "order_refunded_restocked", order_id=str(data.order_id), units=units, event_id=event.id
    )
