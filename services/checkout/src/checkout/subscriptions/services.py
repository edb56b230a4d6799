"""Subscribing to a coffee: price it from catalog, open Stripe Checkout in subscription mode.

The rules:

1. Signed-in shoppers only; a subscription delivers one variant of a product (the default one
   when none is named), whose price, name and currency come from catalog (the client never
   sends a price). An unknown or archived product, an unknown or inactive variant, or one in
   another currency than the shop's, is refused with a problem.
2. Stripe Checkout opens in ``mode=subscription`` with one recurring ``price_data`` line (the
   variant's unit price, the quantity, the cadence; its product named after the variant) and
   our subscription id and the user id in the session's and the subscription's metadata, so
   every later webhook finds the row. Another variant later is another Stripe price, of a
   Stripe product named after it, whose metadata says which (:func:`variant_price`).
3. The row is recorded ``incomplete`` in the request's transaction. From then on only Stripe's
   verified webhooks move it (:mod:`checkout.subscriptions.webhooks`); cancelling asks Stripe to
   end it at the period's end and changes nothing here until Stripe's webhook says so.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import msgspec
import structlog
from ember_shared.auth import Principal
from ember_shared.contracts.catalog import LookupProduct
from ember_shared.countries import ISO_COUNTRIES
from ember_shared.ids import new_id
from ember_shared.pagination import window
from ember_shared.problems import Problem, not_found
from sqlalchemy.ext.asyncio import AsyncSession

from checkout.models import Subscription, SubscriptionInvoice, SubscriptionStatus
from checkout.payments import PaymentProviderError, StripeGateway, VariantPrice
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
        product = await self._sold_variant(data.product_id, data.variant_id)
        variant_id = product.variant_id or product.id
        row_id = new_id()
        address = msgspec.to_builtins(data.shipping_address)
        metadata = {"subscription_id": str(row_id), "user_id": str(principal.user_id)}
        product_data: dict[str, object] = {
            "name": stripe_name(product),
            "metadata": variant_metadata(product),
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
            "cancel_url": f"{self.public_url}/coffee/{product.slug}"
            + (f"?variant={quote(product.sku, safe='')}" if product.option_values else ""),
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
            variant_id=variant_id,
            sku=product.sku,
            variant_title=product.variant_title,
            option_values=list(product.option_values),
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
            variant_id=str(variant_id),
            quantity=data.quantity,
            cadence=f"{data.interval_count} {data.interval}",
        )
        return row

    async def _sold_variant(
        self, product_id: uuid.UUID, variant_id: uuid.UUID | None
    ) -> LookupProduct:
        """What catalog sells now as ``variant_id`` of the product (its default variant when
        None), in the shop's currency; anything else is refused with a problem."""
        product, variant = await self.upstream.lookup_variant(product_id, variant_id or product_id)
        if variant_id is None or product is None:
            # No variant named: the product's default is the product, as before variants.
            found = product if variant_id is None else None
            if found is None or not found.active:
                raise Problem(
                    409,
                    "product-unavailable",
                    "This coffee is not sold (any more): it cannot be subscribed to.",
                    product_id=str(product_id),
                    reason="unknown" if found is None else "archived",
                )
            variant = found
        elif variant is None or not variant.active:
            raise Problem(
                409,
                "variant-unavailable",
                "This choice of the coffee is not sold (any more): pick another.",
                product_id=str(product_id),
                variant_id=str(variant_id),
                reason="unknown" if variant is None else "inactive",
            )
        if variant.currency.upper() != self.settings.currency:
            raise Problem(
                409,
                "currency-mismatch",
                f"This shop charges in {self.settings.currency}; the product is priced otherwise.",
            )
        return variant

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
        """Ask Stripe for another quantity, cadence and/or variant. Stripe bills it, so Stripe's
        state is the truth: the row follows its ``customer.subscription.updated`` webhook (and
        each paid invoice's order carries the quantity Stripe billed), not this request.
        Another variant is another Stripe price at the variant's own price, billed from the
        next delivery (from now with another cadence)."""
        if (
            data.quantity is None
            and data.interval is None
            and data.interval_count is None
            and data.variant_id is None
        ):
            raise Problem(
                400,
                "validation",
                "The request is not valid: see errors.",
                title="Invalid request",
                errors=[{"key": "quantity", "message": "give a quantity, a cadence or a variant"}],
            )
        row = await self._pausable(principal, subscription_id)
        assert row.stripe_subscription_id is not None
        price: VariantPrice | None = None
        if data.variant_id is not None and data.variant_id != row.variant_id:
            chosen = await self._sold_variant(row.product_id, data.variant_id)
            price = variant_price(chosen)
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
            variant=price,
            # One request, one key (the SDK's retries reuse it); asking again is a new change.
            idempotency_key=f"ember-subscription-change:{row.id}:{new_id()}",
        )
        log.info(
            "subscription_change_requested",
            subscription_id=str(row.id),
            quantity=quantity,
            cadence=f"{interval_count} {interval}",
            variant_id=str(data.variant_id or row.variant_id),
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


def stripe_name(product: LookupProduct) -> str:
    """What Stripe shows and bills: the coffee and its variant ("Kenya AA - Espresso / 1 kg")."""
    if product.variant_title:
        return f"{product.name} - {product.variant_title}"[:250]
    return product.name[:250]


def variant_metadata(product: LookupProduct) -> dict[str, str]:
    """The variant as Stripe keeps it on a price or product (metadata values are strings of
    at most 500 characters): what the webhook reads back when the price changes."""
    metadata = {
        "product_id": str(product.id),
        "slug": product.slug[:500],
        "variant_id": str(product.variant_id or product.id),
    }
    if product.sku:
        metadata["sku"] = product.sku[:500]
    if product.option_values:
        metadata["variant_title"] = product.variant_title[:500]
        metadata["option_values"] = json.dumps(list(product.option_values))[:500]
    return metadata


def variant_price(product: LookupProduct) -> VariantPrice:
    return VariantPrice(
        variant_id=str(product.variant_id or product.id),
        name=stripe_name(product),
        unit_amount=product.price,
        metadata=variant_metadata(product),
    )


def _require_country(address: AddressIn, key: str) -> None:
    if address.country not in ISO_COUNTRIES:
        raise Problem(
            400,
            "validation",
            "The request is not valid: see errors.",
            title="Invalid request",
            errors=[{"key": key, "message": "not an ISO 3166-1 country code"}],
        )
