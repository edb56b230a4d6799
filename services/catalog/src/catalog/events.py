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
are invalidated once that transaction commits.

Published through :data:`outbox` (by :class:`~catalog.inventory.services.StockKeeper`, in the
transaction of the change): ``stock.released.v1``. The handlers' ``keeper`` is the app's event
dependency, so this module imports no service and the services import the outbox from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from ember_shared.events import Envelope, EventData, EventHandlers, Outbox
from ember_shared.events.contracts import (
    CheckoutExpired,
    OrderRefunded,
    PaymentFailed,
    PaymentSucceeded,
    StockReleased,
    SubscriptionInvoicePaid,
)
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.models import Base

if TYPE_CHECKING:
    from catalog.inventory.services import StockKeeper

log = structlog.get_logger("catalog.events")

#: Every event type catalog publishes (each names ``PRODUCER = "catalog"``).
PUBLISHES: tuple[type[EventData], ...] = (StockReleased,)

outbox = Outbox("catalog", Base.metadata)
handlers = EventHandlers("catalog")


@handlers.on(PaymentSucceeded)
async def sell_reserved_stock(
    event: Envelope, data: PaymentSucceeded, session: AsyncSession, keeper: StockKeeper
) -> None:
    outcome = await keeper.sell(data.order_id)
    log.info(
        "payment_succeeded_handled", order_id=str(data.order_id), outcome=outcome, event_id=event.id
    )


@handlers.on(SubscriptionInvoicePaid)
async def take_subscription_delivery(
    event: Envelope, data: SubscriptionInvoicePaid, session: AsyncSession, keeper: StockKeeper
) -> None:
    outcome = await keeper.deliver(
        data.order_id,
        data.subscription_id,
        data.stripe_invoice_id,
        # Each line's variant (an event from before variants names none: the default, which
        # has the product's id), as one-off orders sell theirs.
        [(line.variant_id or line.product_id, line.quantity) for line in data.lines],
    )
    log.info(
        "subscription_invoice_paid_handled",
        order_id=str(data.order_id),
        outcome=outcome,
        event_id=event.id,
    )


@handlers.on(PaymentFailed)
async def release_on_payment_failed(
    event: Envelope, data: PaymentFailed, session: AsyncSession, keeper: StockKeeper
) -> None:
    await _release(keeper, data.order_id, "payment_failed", event)


@handlers.on(CheckoutExpired)
async def release_on_checkout_expired(
    event: Envelope, data: CheckoutExpired, session: AsyncSession, keeper: StockKeeper
) -> None:
    await _release(keeper, data.order_id, "checkout_expired", event)


async def _release(keeper: StockKeeper, order_id: Any, reason: str, event: Envelope) -> None:
    record = await keeper.release(order_id, reason)
    log.info(
        "reservation_release_handled",
        order_id=str(order_id),
        reason=reason,
        status=record.status if record else "none",
        event_id=event.id,
    )


@handlers.on(OrderRefunded)
async def restock_refunded_order(
    event: Envelope, data: OrderRefunded, session: AsyncSession, keeper: StockKeeper
) -> None:
    if not data.restock:
        return
    units = await keeper.restock(
        data.order_id,
        [(line.variant_id or line.product_id, line.quantity) for line in data.restock],
    )
    log.info(
        "order_refunded_restocked", order_id=str(data.order_id), units=units, event_id=event.id
    )
