"""``/internal/checkout/*``: for other Ember services (staff refunds from orders), behind the
service credential. A refund asked for here changes nothing locally: Stripe's ``charge.refunded``
webhook does, like every payment state change."""

from __future__ import annotations

import uuid

from ember_shared.auth import requires_service
from ember_shared.contracts.checkout import RefundAccepted, RefundRequest
from ember_shared.problems import Problem, not_found
from litestar import Controller, post
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from checkout.sessions.repositories import CheckoutSessionRepository
from checkout.webhooks.machine import PAID_STATUSES


class InternalCheckoutController(Controller):
    path = "/internal/checkout"
    tags = ["internal"]
    guards = [requires_service]

    @post(
        "/orders/{order_id:uuid}/refund",
        summary="Refund a paid order (all or part)",
        status_code=202,
    )
    async def refund(
        self, order_id: uuid.UUID, data: RefundRequest, db_session: AsyncSession, state: State
    ) -> RefundAccepted:
        repo = CheckoutSessionRepository(db_session)
        row = await repo.by_order_id(order_id)
        if row is None:
            raise not_found("order")
        if row.status not in PAID_STATUSES or not row.stripe_payment_intent_id:
            raise Problem(
                409, "not-paid", "Only a paid order can be refunded.", status_now=row.status
            )
        remaining = row.total - row.amount_refunded
        if remaining <= 0 or (data.amount is not None and data.amount > remaining):
            raise Problem(
                409,
                "refund-too-large",
                f"At most {remaining} can still be refunded.",
                refundable=remaining,
            )
        refund_id = await state.stripe.refund(
            row.stripe_payment_intent_id,
            data.amount,
            f"ember-refund:{order_id}:{data.idempotency_key}",
        )
        return RefundAccepted(order_id=order_id, refund_id=refund_id, status=row.status)
