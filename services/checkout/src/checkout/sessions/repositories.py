"""Every query on ``checkout_sessions``. Nothing here commits: the request or handler does."""

from __future__ import annotations

import datetime as dt
import uuid

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import func, or_, select, text

from checkout.models import CheckoutSession, CheckoutStatus


class CheckoutSessionRepository(SQLAlchemyAsyncRepository[CheckoutSession]):
    model_type = CheckoutSession

    async def lock_cart(self, cart_id: uuid.UUID) -> None:
        """Serialise checkouts of one cart until the transaction ends (across replicas too): a
        double click waits here, then finds the first click's session instead of opening another."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"checkout:cart:{cart_id}"},
        )

    async def open_for_cart(self, cart_id: uuid.UUID) -> list[CheckoutSession]:
        statement = (
            select(CheckoutSession)
            .where(
                CheckoutSession.cart_id == cart_id,
                CheckoutSession.status == CheckoutStatus.OPEN.value,
            )
            .order_by(CheckoutSession.created_at.desc())
            .execution_options(populate_existing=True)
        )
        return list((await self.session.execute(statement)).scalars())

    async def lock_budget(self, *subjects: str) -> None:
        """Serialises checkouts of one client address or email, so two at once cannot both
        pass the budget (released when the transaction ends)."""
        for subject in sorted({s for s in subjects if s}):
            await self.session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                {"k": f"checkout-budget:{subject}"},
            )

    async def open_holds(
        self, *, client_ip: str | None, email: str, other_than: uuid.UUID, now: dt.datetime
    ) -> list[CheckoutSession]:
        """Open, unexpired checkouts of this client address or email, but for ``other_than``'s
        (that cart's are being replaced)."""
        who = func.lower(CheckoutSession.email) == email.lower()
        if client_ip:
            who = or_(who, CheckoutSession.client_ip == client_ip)
        statement = select(CheckoutSession).where(
            CheckoutSession.status == CheckoutStatus.OPEN.value,
            CheckoutSession.expires_at > now,
            or_(CheckoutSession.cart_id.is_(None), CheckoutSession.cart_id != other_than),
            who,
        )
        return list((await self.session.execute(statement)).scalars())

    async def by_order_id(self, order_id: uuid.UUID) -> CheckoutSession | None:
        statement = select(CheckoutSession).where(CheckoutSession.order_id == order_id)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def lock_by_stripe_session(self, stripe_session_id: str) -> CheckoutSession | None:
        statement = (
            select(CheckoutSession)
            .where(CheckoutSession.stripe_session_id == stripe_session_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def lock_by_id(self, checkout_session_id: uuid.UUID) -> CheckoutSession | None:
        statement = (
            select(CheckoutSession)
            .where(CheckoutSession.id == checkout_session_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def lock_by_payment_intent(self, payment_intent_id: str) -> CheckoutSession | None:
        statement = (
            select(CheckoutSession)
            .where(CheckoutSession.stripe_payment_intent_id == payment_intent_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalars().first()

    async def lock_by_order_id(self, order_id: uuid.UUID) -> CheckoutSession | None:
        statement = (
            select(CheckoutSession)
            .where(CheckoutSession.order_id == order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()
