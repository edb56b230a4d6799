"""Refunds: staff ask, Stripe decides, the webhook tells.

A request is recorded and sent to checkout (which alone calls Stripe's Refunds API); the order
itself does not move. When Stripe's verified ``charge.refunded`` comes back as
``payment.refunded``, the order's refunded amount and status move (in
:meth:`orders.ordering.services.OrderService.on_payment_refunded`), the requests it covers are
settled, and ``order.refunded.v1`` tells catalog what to restock and the notifier whom to mail.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from ember_shared.events.contracts import OrderRefunded, RestockLine
from ember_shared.ids import new_id
from ember_shared.money import Money
from ember_shared.problems import Problem, not_found
from sqlalchemy.ext.asyncio import AsyncSession

from orders.events import outbox
from orders.models import Order, RefundRequest
from orders.ordering.links import order_page_url, sealed_guest_url
from orders.ordering.repositories import OrderRepository
from orders.ordering.status import PAID_STATUSES, OrderStatus
from orders.refunds.checkout import ask_checkout_to_refund
from orders.refunds.repositories import RefundRepository
from orders.refunds.schemas import RefundOrder


class RefundService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.orders = OrderRepository(session=session, auto_commit=False, auto_expunge=False)
        self.refunds = RefundRepository(session)

    async def request(
        self, order_id: uuid.UUID, data: RefundOrder, *, actor: str
    ) -> tuple[Order, RefundRequest]:
        """Ask Stripe (through checkout) for a refund; the same key asks once."""
        # The lock makes two refunds of one order (or one form sent twice) take turns.
        order = await self.orders.get_for_update(order_id)
        if order is None:
            raise not_found("order")
        existing = await self.refunds.by_key(order_id, data.idempotency_key)
        if existing is not None:
            if (data.amount is not None and data.amount != existing.amount) or (
                data.restock != existing.restock
            ):
                raise Problem(
                    409,
                    "idempotency-key-reused",
                    "This key was already used for another refund of this order.",
                )
            return order, existing
        if OrderStatus(order.status) not in PAID_STATUSES:
            raise Problem(
                409, "not-paid", "Only a paid order can be refunded.", status_now=order.status
            )
        if order.checkout_session_id is None:
            raise Problem(
                409,
                "refund-in-stripe",
                "A subscription delivery is refunded from its invoice in Stripe's dashboard.",
            )
        refundable = (
            order.total - order.amount_refunded - await self.refunds.pending_total(order_id)
        )
        amount = data.amount if data.amount is not None else refundable
        if refundable <= 0 or amount > refundable:
            shown = Money(max(refundable, 0), order.currency).display()
            raise Problem(
                409,
                "refund-too-large",
                f"At most {shown} of this order can still be refunded.",
                refundable=max(refundable, 0),
                currency=order.currency,
            )
        if data.restock and await self.refunds.restock_asked(order_id):
            raise Problem(
                409,
                "already-restocked",
                "This order's items were already put back in stock with an earlier refund.",
            )
        request = RefundRequest(
            id=new_id(),
            order_id=order_id,
            idempotency_key=data.idempotency_key,
            amount=amount,
            restock=data.restock,
            reason=data.reason.strip(),
            actor=actor[:120],
            status="requested",
        )
        self.refunds.add(request)
        await self.session.flush()
        # Stripe's idempotency key is the caller's: a retry after a lost answer (or a rolled
        # back transaction) finds the refund Stripe already made instead of making another.
        request.stripe_refund_id = await ask_checkout_to_refund(
            order_id, amount, data.idempotency_key
        )
        return order, request

    async def of_order(self, order_id: uuid.UUID) -> tuple[Order, Sequence[RefundRequest]]:
        order = await self.orders.get_with_items(order_id)
        if order is None:
            raise not_found("order")
        return order, await self.refunds.for_order(order_id)


async def announce_refund(
    session: AsyncSession, order: Order, amount: int, at: dt.datetime
) -> None:
    """Stripe confirmed ``amount`` more refunded on ``order`` (its items loaded): settle the
    requests it covers and publish what follows (restock, mail). A refund made in Stripe's
    dashboard settles nothing here, and is still announced."""
    settled = await RefundRepository(session).settle(order.id, amount, at)
    restock = [
        RestockLine(product_id=item.product_id, variant_id=item.variant_id, quantity=item.quantity)
        for item in (order.items if any(r.restock for r in settled) else [])
    ]
    await outbox.add(
        session,
        OrderRefunded(
            order_id=order.id,
            email=order.email,
            amount=amount,
            amount_refunded=order.amount_refunded,
            total=order.total,
            currency=order.currency,
            fully_refunded=order.amount_refunded >= order.total,
            restock=restock,
            order_url=order_page_url(order),
            sealed_order_url=sealed_guest_url(order),
        ),
    )
