"""Staff's refunds of an order: ask Stripe for one, see them all."""

from __future__ import annotations

import uuid

from ember_shared.auth import Principal, provide_principal, requires_admin
from litestar import Controller, get, post
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from orders.models import Order, RefundRequest
from orders.refunds.schemas import RefundList, RefundOrder, RefundView
from orders.refunds.services import RefundService


async def provide_refund_service(db_session: AsyncSession) -> RefundService:
    return RefundService(db_session)


def refund_view(order: Order, request: RefundRequest) -> RefundView:
    return RefundView(
        id=request.id,
        order_id=request.order_id,
        amount=request.amount,
        currency=order.currency,
        restock=request.restock,
        reason=request.reason,
        status=request.status,
        stripe_refund_id=request.stripe_refund_id,
        created_at=request.created_at,
        refunded_at=request.refunded_at,
    )


class AdminRefundController(Controller):
    path = "/api/admin/orders/{order_id:uuid}/refunds"
    tags = ["admin: orders"]
    guards = [requires_admin]
    cache_control = CacheControlHeader(no_store=True, private=True)
    security = [{"BearerToken": []}]
    dependencies = {
        "refunds": Provide(provide_refund_service),
        "principal": Provide(provide_principal),
    }

    @post(
        "/",
        status_code=202,
        summary="Refund an order, all or part, through Stripe",
        description=(
            "Asks Stripe (through checkout) for the refund and answers 202 with the request, "
            "`requested`. The order's refunded amount and status change only when Stripe's "
            "`charge.refunded` webhook arrives; then `restock: true` puts the order's items "
            "back in stock (once per order) and the customer is mailed. The same "
            "`idempotency_key` asks once (409 `idempotency-key-reused` with other values). "
            "409 `refund-too-large` past what is left (`refundable`), `not-paid`, "
            "`already-restocked`; 503 when Stripe cannot be asked now."
        ),
    )
    async def refund(
        self,
        order_id: uuid.UUID,
        data: RefundOrder,
        principal: Principal,
        refunds: RefundService,
    ) -> RefundView:
        order, request = await refunds.request(order_id, data, actor=f"admin:{principal.user_id}")
        return refund_view(order, request)

    @get("/", summary="An order's refunds, oldest first")
    async def list_refunds(self, order_id: uuid.UUID, refunds: RefundService) -> RefundList:
        order, rows = await refunds.of_order(order_id)
        return RefundList(items=[refund_view(order, r) for r in rows])
