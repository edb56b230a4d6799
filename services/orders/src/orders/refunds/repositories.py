"""Every query about refund requests. Repositories never commit."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from orders.models import RefundRequest

#: An order has few refunds; staff see them all, but never an unbounded list.
MAX_LISTED = 100


class RefundRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_key(self, order_id: uuid.UUID, key: str) -> RefundRequest | None:
        statement = select(RefundRequest).where(
            RefundRequest.order_id == order_id, RefundRequest.idempotency_key == key
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def for_order(self, order_id: uuid.UUID) -> Sequence[RefundRequest]:
        statement = (
            select(RefundRequest)
            .where(RefundRequest.order_id == order_id)
            .order_by(RefundRequest.created_at, RefundRequest.id)
            .limit(MAX_LISTED)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def pending_total(self, order_id: uuid.UUID) -> int:
        statement = select(func.coalesce(func.sum(RefundRequest.amount), 0)).where(
            RefundRequest.order_id == order_id, RefundRequest.status == "requested"
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def restock_asked(self, order_id: uuid.UUID) -> bool:
        statement = select(RefundRequest.id).where(
            RefundRequest.order_id == order_id, RefundRequest.restock.is_(True)
        )
        return (await self.session.execute(statement.limit(1))).first() is not None

    def add(self, request: RefundRequest) -> None:
        self.session.add(request)

    async def settle(
        self, order_id: uuid.UUID, newly_refunded: int, at: dt.datetime
    ) -> list[RefundRequest]:
        """Mark the oldest pending requests that ``newly_refunded`` covers as refunded (Stripe
        reports a running total, not which refund it was); the ones marked."""
        settled: list[RefundRequest] = []
        left = newly_refunded
        statement = (
            select(RefundRequest)
            .where(RefundRequest.order_id == order_id, RefundRequest.status == "requested")
            .order_by(RefundRequest.created_at, RefundRequest.id)
            .with_for_update()
        )
        for request in (await self.session.execute(statement)).scalars().all():
            if request.amount > left:
                break
            left -= request.amount
            request.status = "refunded"
            request.refunded_at = at
            settled.append(request)
        return settled
