"""Every query on ``subscriptions`` and ``subscription_invoices``. Nothing here commits."""

from __future__ import annotations

import uuid

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import func, select

from checkout.models import Subscription, SubscriptionInvoice

MAX_INVOICES_SHOWN = 24


class SubscriptionRepository(SQLAlchemyAsyncRepository[Subscription]):
    model_type = Subscription

    async def owned(self, subscription_id: uuid.UUID, user_id: uuid.UUID) -> Subscription | None:
        statement = select(Subscription).where(
            Subscription.id == subscription_id, Subscription.user_id == user_id
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def page_for_user(
        self, user_id: uuid.UUID, *, offset: int, limit: int
    ) -> tuple[list[Subscription], int]:
        total = (
            await self.session.execute(
                select(func.count())
                .select_from(Subscription)
                .where(Subscription.user_id == user_id)
            )
        ).scalar_one()
        rows = (
            await self.session.execute(
                select(Subscription)
                .where(Subscription.user_id == user_id)
                .order_by(Subscription.created_at.desc(), Subscription.id.desc())
                .offset(offset)
                .limit(limit)
            )
        ).scalars()
        return list(rows), int(total)

    async def lock_by_id(self, subscription_id: uuid.UUID) -> Subscription | None:
        statement = (
            select(Subscription)
            .where(Subscription.id == subscription_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def lock_by_stripe_subscription(self, stripe_id: str) -> Subscription | None:
        statement = (
            select(Subscription)
            .where(Subscription.stripe_subscription_id == stripe_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def lock_by_checkout_session(self, stripe_session_id: str) -> Subscription | None:
        statement = (
            select(Subscription)
            .where(Subscription.stripe_checkout_session_id == stripe_session_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()


class SubscriptionInvoiceRepository(SQLAlchemyAsyncRepository[SubscriptionInvoice]):
    model_type = SubscriptionInvoice

    async def lock_by_stripe_id(self, stripe_invoice_id: str) -> SubscriptionInvoice | None:
        statement = (
            select(SubscriptionInvoice)
            .where(SubscriptionInvoice.stripe_invoice_id == stripe_invoice_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def latest_for(self, subscription_id: uuid.UUID) -> list[SubscriptionInvoice]:
        statement = (
            select(SubscriptionInvoice)
            .where(SubscriptionInvoice.subscription_id == subscription_id)
            .order_by(SubscriptionInvoice.created_at.desc(), SubscriptionInvoice.id.desc())
            .limit(MAX_INVOICES_SHOWN)
        )
        return list((await self.session.execute(statement)).scalars())
