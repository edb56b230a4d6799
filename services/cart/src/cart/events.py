"""What the cart does when domain events arrive. It publishes none."""

from __future__ import annotations

import structlog
from ember_shared.events import Envelope, EventHandlers
from ember_shared.events.contracts import PaymentSucceeded
from sqlalchemy.ext.asyncio import AsyncSession

from cart.carts.services import convert_cart

log = structlog.get_logger("cart.events")

handlers = EventHandlers("cart")


@handlers.on(PaymentSucceeded)
async def empty_paid_cart(
    envelope: Envelope, data: PaymentSucceeded, session: AsyncSession
) -> None:
    """The shopper paid: the cart they checked out is converted and emptied."""
    if data.cart_id is None:
        return
    converted = await convert_cart(session, data.cart_id, data.order_id)
    log.info(
        "cart_converted" if converted else "cart_conversion_skipped",
        cart_id=str(data.cart_id),
        order_id=str(data.order_id),
        event_id=envelope.id,
    )
