"""The reconciler's one query on ``checkout_sessions``. Nothing here commits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from checkout.models import CheckoutSession
from checkout.models import CheckoutStatus as S

UNSETTLED = (S.OPEN.value, S.PAYMENT_PENDING.value)


@dataclass(frozen=True)
class Due:
    stripe_session_id: str
    status: str


class ReconciliationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lease_due(self, *, quiet_since: dt.datetime, limit: int) -> list[Due]:
        """Take up to ``limit`` unsettled checkouts not heard of since ``quiet_since``, oldest
        first, and stamp them heard of now: a lease. Another replica skips the rows this one
        holds locked and, once committed, finds them not due again for a whole quiet period."""
        due = (
            select(CheckoutSession.id)
            .where(
                CheckoutSession.status.in_(UNSETTLED),
                CheckoutSession.updated_at <= quiet_since,
            )
            .order_by(CheckoutSession.updated_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        statement = (
            update(CheckoutSession)
            .where(CheckoutSession.id.in_(due))
            .values(updated_at=func.now())
            .returning(CheckoutSession.stripe_session_id, CheckoutSession.status)
            .execution_options(synchronize_session=False)
        )
        rows = (await self.session.execute(statement)).all()
        return [Due(stripe_session_id=str(r[0]), status=str(r[1])) for r in rows]
