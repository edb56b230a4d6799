"""Subscribing to a coffee: price it from catalog, open Stripe Checkout in subscription mode.

The rules:

1. Signed-in shoppers only; the product's price, name and currency come from catalog (the
   client never sends a price). An unknown or archived product, or one in another currency than
   the shop's, is refused with a problem.
2. Stripe Checkout opens in ``mode=subscription`` with one recurring ``price_data`` line (the
   unit price, the quantity, the cadence) and our subscription id and the user id in the
   session's and the subscription's metadata, so every later webhook finds the row.
3. The row is recorded ``incomplete`` in the request's transaction. From then on only Stripe's
   verified webhooks move it (:mod:`checkout.subscriptions.webhooks`); cancelling asks Stripe to
   end it at the period's end and changes nothing here until Stripe's webhook says so.
"""

from __future__ import annotations

import uuid

import msgspec
import structlog
from ember_shared.auth import Principal
from ember_shared.countries import ISO_COUNTRIES
from ember_shared.ids import new_id
from ember_shared.pagination import window
from ember_shared.problems import Problem, not_found
from sqlalchemy.ext.asyncio import AsyncSession

from checkout.models import Subscription, SubscriptionInvoice, SubscriptionStatus
from checkout.payments import PaymentProviderError, StripeGateway
from checkout.sessions.schemas import AddressIn
from checkout.settings import CheckoutSettings
from checkout.subscriptions.repositories import (
    SubscriptionInvoiceRepository,
    SubscriptionRepository,
)
from checkout.subscriptions.schemas import ChangeSubscription, Subscribe
from checkout.upstream import Upstream

log = structlog.get_logger("checkout.subscriptions")

#: Statuses in which Stripe still bills the subscription (so it can be cancelled).
CANCELLABLE = frozenset(
    {
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.TRIALING,
        SubscriptionStatus.PAST_DUE,
        SubscriptionStatus.UNPAID,
        SubscriptionStatus.PAUSED,
    }
)


class SubscriptionService:
    def __init__(
        self,
        db: AsyncSession,
        settings: CheckoutSettings,
        upstream: Upstream,
        stripe: StripeGateway,
        public_url: str,
    ) -> None:
        self.db = db
        self.repo = SubscriptionRepository(session=db, auto_commit=False, auto_expunge=False)
        self.invoices = SubscriptionInvoiceRepository(
            session=db, auto_commit=False, auto_expunge=False
        )
        self.settings = settings
        self.upstream = upstream
        self.stripe = stripe
        self.public_url = public_url.rstrip("/")

    async def subscribe(self, principal: Principal, data: Subscribe) -> Subscription:
        if not principal.email:
            raise Problem(
                400,
                "email-required",
                "Your account has no email address for receipts; add one and try again.",
            )
        # Two letters are not enough: identity and the order's shipping need a real country.
        _require_country(data.shipping_address, "shipping_address.country")
        product = (await self.upstream.lookup_products([data.product_id])).get(data.product_id)
        if product is None or not product.active:
            raise Problem(
                409,
                "product-unavailable",
                "This coffee is not sold (any more): it cannot be subscribed to.",
                product_id=str(data.product_id),
                reason="unknown" if product is None else "archived",
            )
        if product.currency.upper() != self.settings.currency:
            raise Problem(
                409,
                "currency-mismatch",
                f"This shop charges in {self.settings.currency}; the product is priced otherwise.",
            )
        row_id = new_id()
        address = msgspec.to_builtins(data.shipping_address)
        metadata = {"subscription_id": str(row_id), "user_id": str(principal.user_id)}
        product_data: dict[str, object] = {
            "name": product.name,
            "metadata": {"product_id": str(product.id), "slug": product.slug},
        }
        if product.image_url:
            image = product.image_url
            product_data["images"] = [
                image
                if image.startswith(("http://", "https://"))
                else f"{self.public_url}/{image.lstrip('/')}"
            ]
        params = {
            "mode": "subscription",
            "line_items": [
                {
                    "quantity": data.quantity,
                    "price_data": {
                        "currency": self.settings.currency.lower(),
                        "unit_amount": product.price,
                        "product_data": product_data,
                        "recurring": {
                            "interval": data.interval,
                            "interval_count": data.interval_count,
                        },
                    },
                }
            ],
            "customer_email": principal.email,
            "client_reference_id": str(row_id),
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
            "success_url": f"{self.public_url}/account?subscription={row_id}",
            "cancel_url": f"{self.public_url}/coffee/{product.slug}",
        }
        try:
            opened = await self.stripe.open_session(
                params, idempotency_key=f"ember-subscription:{row_id}"
            )
        except PaymentProviderError as exc:
            raise exc.problem() from exc
        row = Subscription(
            id=row_id,
            user_id=principal.user_id,
            email=principal.email,
            status=SubscriptionStatus.INCOMPLETE.value,
            product_id=product.id,
            product_slug=product.slug,
            product_name=product.name,
            image_url=product.image_url or "",
            unit_price=product.price,
            quantity=data.quantity,
            currency=self.settings.currency,
            interval=data.interval,
            interval_count=data.interval_count,
            shipping_address=address,
            stripe_checkout_session_id=opened.id,
            checkout_url=opened.url,
        )
        try:
            await self.repo.add(row)
        except Exception:
            # Nothing will be committed: close the payment page that would pay for nothing.
            await self._abandon(opened.id)
            raise
        log.info(
            "subscription_started",
            subscription_id=str(row_id),
            stripe_session_id=opened.id,
            product_id=str(product.id),
            quantity=data.quantity,
            cadence=f"{data.interval_count} {data.interval}",
        )
        return row

    async def _abandon(self, stripe_session_id: str) -> None:
        try:
            await self.stripe.expire_session(stripe_session_id)
        except PaymentProviderError:
            log.warning("abandon_expire_failed", stripe_session_id=stripe_session_id)

    async def page(
        self, principal: Principal, *, page: int, page_size: int
    ) -> tuple[list[Subscription], int]:
        return await self.repo.page_for_user(principal.user_id, **window(page, page_size))

    async def get(self, principal: Principal, subscription_id: uuid.UUID) -> Subscription:
        """The shopper's own subscription; anyone else's does not exist (404)."""
        row = await self.repo.owned(subscription_id, principal.user_id)
        if row is None:
            raise not_found("subscription")
        return row

    async def invoices_of(self, row: Subscription) -> list[SubscriptionInvoice]:
        return await self.invoices.latest_for(row.id)

    async def cancel(self, principal: Principal, subscription_id: uuid.UUID) -> Subscription:
        """Ask Stripe to end the subscription at the end of the paid period. The row is not
        changed here: Stripe's ``customer.subscription.updated`` (then ``.deleted``) does it."""
        row = await self.get(principal, subscription_id)
        if row.status == SubscriptionStatus.CANCELED or row.cancel_at_period_end:
            return row
        if row.stripe_subscription_id is None or row.status not in CANCELLABLE:
            raise Problem(
                409,
                "subscription-not-active",
                "This subscription has not started (or has ended): there is nothing to cancel.",
                status_now=row.status,
            )
        await self.stripe.cancel_subscription_at_period_end(
            row.stripe_subscription_id, idempotency_key=f"ember-subscription-cancel:{row.id}"
        )
        log.info(
            "subscription_cancel_requested",
            subscription_id=str(row.id),
            stripe_subscription_id=row.stripe_subscription_id,
        )
        return row

    async def pause(
        self, principal: Principal, subscription_id: uuid.UUID, *, skip_one: bool
    ) -> Subscription:
        """Ask Stripe to bill nothing: until resumed, or (``skip_one``) for the next renewal
        only (collection resumes just after it). The row changes when the webhook arrives."""
        row = await self._pausable(principal, subscription_id)
        assert row.stripe_subscription_id is not None
        resumes_at: int | None = None
        if skip_one:
            if row.current_period_end is None:
                raise Problem(
                    409, "no-next-delivery", "This subscription has no next delivery to skip."
                )
            # Just past the renewal that would bill the next delivery: that one is skipped.
            resumes_at = int(row.current_period_end.timestamp()) + 3600
        await self.stripe.pause_subscription(
            row.stripe_subscription_id,
            resumes_at,
            idempotency_key=f"ember-subscription-pause:{row.id}:{resumes_at or 'open'}",
        )
        log.info("subscription_pause_requested", subscription_id=str(row.id), resumes_at=resumes_at)
        return row

    async def resume(self, principal: Principal, subscription_id: uuid.UUID) -> Subscription:
        row = await self._pausable(principal, subscription_id)
        assert row.stripe_subscription_id is not None
        if not row.paused:
            return row
        stamp = int(row.last_event_created.timestamp()) if row.last_event_created else 0
        await self.stripe.resume_subscription(
            row.stripe_subscription_id,
            idempotency_key=f"ember-subscription-resume:{row.id}:{stamp}",
        )
        log.info("subscription_resume_requested", subscription_id=str(row.id))
        return row

    async def payment_method_session(self, principal: Principal, subscription_id: uuid.UUID) -> str:
        """Stripe's customer portal, where the subscriber updates the card the next renewal
        (and Stripe's retry of a failed one) is charged to; it returns to the subscription."""
        row = await self.get(principal, subscription_id)
        if row.stripe_customer_id is None or row.status not in CANCELLABLE:
            raise Problem(
                409,
                "subscription-not-active",
                "This subscription has not started (or has ended): it has no card to update.",
                status_now=row.status,
            )
        return await self.stripe.open_billing_portal(
            row.stripe_customer_id, f"{self.public_url}/account/subscriptions/{row.id}"
        )

    async def change_address(
        self, principal: Principal, subscription_id: uuid.UUID, address: AddressIn
    ) -> Subscription:
        """Where the next deliveries go. Checkout keeps the address (Stripe never sees it): each
        paid renewal's order takes it from the row, so the change is ours to make at once."""
        row = await self.get(principal, subscription_id)
        _require_country(address, "country")
        if row.status in (SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED):
            raise Problem(
                409,
                "subscription-not-active",
                "This subscription has ended: nothing more is delivered.",
                status_now=row.status,
            )
        row.shipping_address = msgspec.to_builtins(address)
        log.info("subscription_address_changed", subscription_id=str(row.id))
        return row

    async def change(
        self, principal: Principal, subscription_id: uuid.UUID, data: ChangeSubscription
    ) -> Subscription:
        """Ask Stripe for another quantity and/or cadence. Stripe bills it, so Stripe's state is
        the truth: the row follows its ``customer.subscription.updated`` webhook (and each paid
        invoice's order carries the quantity Stripe billed), not this request."""
        if data.quantity is None and data.interval is None and data.interval_count is None:
            raise Problem(
                400,
                "validation",
                "The request is not valid: see errors.",
                title="Invalid request",
                errors=[{"key": "quantity", "message": "give a quantity, a cadence or both"}],
            )
        row = await self._pausable(principal, subscription_id)
        assert row.stripe_subscription_id is not None
        quantity = data.quantity if data.quantity is not None else row.quantity
        interval = data.interval or row.interval
        interval_count = data.interval_count or row.interval_count
        if row.paused and (interval, interval_count) != (row.interval, row.interval_count):
            # Another cadence bills its first period at once, which a pause must not do.
            raise Problem(
                409,
                "subscription-paused",
                "Resume this subscription before changing how often it comes.",
            )
        asked = await self.stripe.change_subscription(
            row.stripe_subscription_id,
            quantity=quantity,
            interval=interval,
            interval_count=interval_count,
            # One request, one key (the SDK's retries reuse it); asking again is a new change.
            idempotency_key=f"ember-subscription-change:{row.id}:{new_id()}",
        )
        log.info(
            "subscription_change_requested",
            subscription_id=str(row.id),
            quantity=quantity,
            cadence=f"{interval_count} {interval}",
            asked=asked,
        )
        return row

    async def _pausable(self, principal: Principal, subscription_id: uuid.UUID) -> Subscription:
        row = await self.get(principal, subscription_id)
        if (
            row.stripe_subscription_id is None
            or row.status != SubscriptionStatus.ACTIVE
            or row.cancel_at_period_end
        ):
            raise Problem(
                409,
                "subscription-not-active",
                "Only an active subscription that is not ending can be paused or resumed.",
                status_now=row.status,
            )
        return row


def _require_country(address: AddressIn, key: str) -> None:
    if address.country not in ISO_COUNTRIES:
        raise Problem(
            400,
            "validation",
            "The request is not valid: see errors.",
            title="Invalid request",
            errors=[{"key": key, "message": "not an ISO 3166-1 country code"}],
        )
