"""``/api/subscriptions*``: a signed-in shopper's coffee subscriptions (their own only)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from ember_shared.auth import Principal, provide_principal, requires_admin, requires_signed_in
from ember_shared.pagination import window
from litestar import Controller, Request, Response, get, patch, post, put
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from checkout.models import Subscription, SubscriptionInvoice
from checkout.sessions.controllers import shopper_origin
from checkout.sessions.schemas import AddressIn, AddressOut
from checkout.subscriptions.repositories import SubscriptionRepository
from checkout.subscriptions.schemas import (
    ChangeSubscription,
    InvoiceView,
    PaymentMethodSession,
    Subscribe,
    SubscribedProduct,
    SubscribedVariant,
    SubscriptionPage,
    SubscriptionStarted,
    SubscriptionView,
)
from checkout.subscriptions.services import SubscriptionService

NO_STORE = {"Cache-Control": "no-store"}
Page = Annotated[int, Parameter(ge=1, le=10_000, description="Page number, from 1.")]
PageSize = Annotated[int, Parameter(ge=1, le=50, description="Subscriptions per page (1-50).")]


async def provide_subscription_service(
    db_session: AsyncSession, state: State, request: Request[Any, Any, Any]
) -> SubscriptionService:
    return SubscriptionService(
        db_session,
        state.checkout_settings,
        state.upstream,
        state.stripe,
        shopper_origin(request, state),
    )


def _address(raw: dict[str, str]) -> AddressOut:
    return AddressOut(
        name=raw.get("name", ""),
        line1=raw.get("line1", ""),
        line2=raw.get("line2", ""),
        city=raw.get("city", ""),
        state=raw.get("state", ""),
        postal_code=raw.get("postal_code", ""),
        country=raw.get("country", ""),
        phone=raw.get("phone", ""),
    )


def invoice_view(row: SubscriptionInvoice) -> InvoiceView:
    return InvoiceView(
        stripe_invoice_id=row.stripe_invoice_id,
        status=row.status,  # type: ignore[arg-type]
        amount_due=row.amount_due,
        amount_paid=row.amount_paid,
        currency=row.currency,
        billing_reason=row.billing_reason,
        period_start=row.period_start,
        period_end=row.period_end,
        order_id=row.order_id,
        paid_at=row.paid_at,
    )


def subscription_view(
    row: Subscription, invoices: list[SubscriptionInvoice] | None = None
) -> SubscriptionView:
    return SubscriptionView(
        id=row.id,
        status=row.status,  # type: ignore[arg-type]
        product=SubscribedProduct(
            id=row.product_id, slug=row.product_slug, name=row.product_name, image_url=row.image_url
        ),
        quantity=row.quantity,
        unit_price=row.unit_price,
        amount=row.unit_price * row.quantity,
        currency=row.currency,
        interval=row.interval,  # type: ignore[arg-type]
        interval_count=row.interval_count,
        shipping_address=_address(row.shipping_address),
        current_period_end=row.current_period_end,
        cancel_at_period_end=row.cancel_at_period_end,
        canceled_at=row.canceled_at,
        checkout_url=row.checkout_url if row.status == "incomplete" else None,
        created_at=row.created_at,
        invoices=[invoice_view(i) for i in invoices] if invoices is not None else None,
        paused=row.paused,
        paused_until=row.paused_until,
        variant=SubscribedVariant(
            id=row.variant_id,
            sku=row.sku,
            title=row.variant_title,
            option_values=list(row.option_values),
        ),
    )


class SubscriptionController(Controller):
    path = "/api/subscriptions"
    tags = ["subscriptions"]
    guards = [requires_signed_in]
    dependencies = {
        "subscriptions": Provide(provide_subscription_service),
        "principal": Provide(provide_principal),
    }
    security = [{"BearerToken": []}]

    @post(
        "/",
        summary="Subscribe to a coffee",
        description=(
            "Prices the product's variant (``variant_id``, else its default) from catalog "
            "(never from the client), opens a Stripe Checkout Session in subscription mode and "
            "records the subscription as ``incomplete``. Send the shopper to ``checkout_url``; "
            "the subscription becomes ``active`` when Stripe's verified webhook says so. "
            "Signed-in shoppers only. Subscriptions ship free. 409 ``product-unavailable`` for "
            "an unknown or archived product, ``variant-unavailable`` for a variant unknown, of "
            "another product or not sold now."
        ),
        status_code=201,
    )
    async def subscribe(
        self, data: Subscribe, principal: Principal, subscriptions: SubscriptionService
    ) -> Response[SubscriptionStarted]:
        row = await subscriptions.subscribe(principal, data)
        return Response(
            SubscriptionStarted(
                subscription_id=row.id,
                status=row.status,  # type: ignore[arg-type]
                checkout_url=row.checkout_url,
            ),
            status_code=201,
            headers=NO_STORE,
        )

    @get("/", summary="My subscriptions, newest first", cache=False)
    async def list_subscriptions(
        self,
        principal: Principal,
        subscriptions: SubscriptionService,
        page: Page = 1,
        page_size: PageSize = 20,
    ) -> Response[SubscriptionPage]:
        rows, total = await subscriptions.page(principal, page=page, page_size=page_size)
        return Response(
            SubscriptionPage(
                items=[subscription_view(row) for row in rows],
                total=total,
                page=page,
                page_size=page_size,
            ),
            headers=NO_STORE,
        )

    @get(
        "/{subscription_id:uuid}",
        summary="One of my subscriptions, with its latest invoices",
        description="Someone else's subscription answers 404, as one that does not exist.",
        cache=False,
    )
    async def get_subscription(
        self, subscription_id: uuid.UUID, principal: Principal, subscriptions: SubscriptionService
    ) -> Response[SubscriptionView]:
        row = await subscriptions.get(principal, subscription_id)
        invoices = await subscriptions.invoices_of(row)
        return Response(subscription_view(row, invoices), headers=NO_STORE)

    @patch(
        "/{subscription_id:uuid}",
        summary="Change the bags per delivery, the cadence or the variant",
        description=(
            "Asks Stripe to bill the new quantity, cadence and/or variant (another of the same "
            "product's, at its own price; no proration) and answers 202 with the state as it "
            "is now: ``quantity``, ``interval``, ``interval_count`` and ``variant`` change only "
            "when Stripe's verified webhook arrives. A new quantity or variant is billed from "
            "the next delivery; another cadence starts today (Stripe bills the first period of "
            "the new cadence, and so sends a delivery, at once). Repeating it is harmless. "
            "400 for an empty or bad change; 409 ``subscription-not-active`` for one that is "
            "not active or ends at the period's end, ``subscription-paused`` for a new cadence "
            "while paused, ``variant-unavailable`` for a variant unknown, of another product "
            "or not sold now."
        ),
        status_code=202,
    )
    async def change(
        self,
        subscription_id: uuid.UUID,
        data: ChangeSubscription,
        principal: Principal,
        subscriptions: SubscriptionService,
    ) -> Response[SubscriptionView]:
        row = await subscriptions.change(principal, subscription_id, data)
        return Response(subscription_view(row), status_code=202, headers=NO_STORE)

    @post(
        "/{subscription_id:uuid}/cancel",
        summary="Cancel at the end of the paid period",
        description=(
            "Asks Stripe to end the subscription when the current period ends and answers 202 "
            "with the state as it is now: ``cancel_at_period_end`` (then ``canceled``) is set "
            "only when Stripe's verified webhook arrives. Repeating it is harmless. 409 "
            "``subscription-not-active`` for one never paid or already ended."
        ),
        status_code=202,
    )
    async def cancel(
        self, subscription_id: uuid.UUID, principal: Principal, subscriptions: SubscriptionService
    ) -> Response[SubscriptionView]:
        row = await subscriptions.cancel(principal, subscription_id)
        return Response(subscription_view(row), status_code=202, headers=NO_STORE)


PAUSE_DESCRIPTION = (
    "Asks Stripe to {what} and answers 202 with the state as it is now: ``paused`` and "
    "``paused_until`` change only when Stripe's verified webhook arrives. Repeating it is "
    "harmless. 409 ``subscription-not-active`` for one that is not active or ends at the "
    "period's end."
)


class SubscriptionPauseController(Controller):
    """Self-service: pause, skip the next delivery, resume (Stripe's ``pause_collection``)."""

    path = "/api/subscriptions/{subscription_id:uuid}"
    tags = ["subscriptions"]
    guards = [requires_signed_in]
    dependencies = {
        "principal": Provide(provide_principal),
        "subscriptions": Provide(provide_subscription_service),
    }
    security = [{"BearerToken": []}]

    @post(
        "/pause",
        summary="Pause deliveries until resumed",
        description=PAUSE_DESCRIPTION.format(what="stop billing (and so sending) deliveries"),
        status_code=202,
    )
    async def pause(
        self, subscription_id: uuid.UUID, principal: Principal, subscriptions: SubscriptionService
    ) -> Response[SubscriptionView]:
        row = await subscriptions.pause(principal, subscription_id, skip_one=False)
        return Response(subscription_view(row), status_code=202, headers=NO_STORE)

    @post(
        "/skip-next",
        summary="Skip the next delivery",
        description=PAUSE_DESCRIPTION.format(
            what="bill nothing at the next renewal, then go on as before"
        ),
        status_code=202,
    )
    async def skip_next(
        self, subscription_id: uuid.UUID, principal: Principal, subscriptions: SubscriptionService
    ) -> Response[SubscriptionView]:
        row = await subscriptions.pause(principal, subscription_id, skip_one=True)
        return Response(subscription_view(row), status_code=202, headers=NO_STORE)

    @post(
        "/resume",
        summary="Resume a paused subscription",
        description=PAUSE_DESCRIPTION.format(what="collect again from the next renewal"),
        status_code=202,
    )
    async def resume(
        self, subscription_id: uuid.UUID, principal: Principal, subscriptions: SubscriptionService
    ) -> Response[SubscriptionView]:
        row = await subscriptions.resume(principal, subscription_id)
        return Response(subscription_view(row), status_code=202, headers=NO_STORE)

    @post(
        "/payment-method-session",
        summary="Open Stripe's customer portal to update the card",
        description=(
            "Answers the URL of Stripe's customer portal, where the subscriber updates the card "
            "their renewals are charged to; the portal returns to the subscription's page. "
            "Made on demand (it expires within minutes). 409 ``subscription-not-active`` for "
            "one never paid or already ended."
        ),
        status_code=201,
    )
    async def payment_method_session(
        self, subscription_id: uuid.UUID, principal: Principal, subscriptions: SubscriptionService
    ) -> Response[PaymentMethodSession]:
        url = await subscriptions.payment_method_session(principal, subscription_id)
        return Response(PaymentMethodSession(url=url), status_code=201, headers=NO_STORE)

    @put(
        "/shipping-address",
        summary="Change where the next deliveries go",
        description=(
            "Every delivery billed from now on ships to this address (checkout keeps it; "
            "Stripe never sees it). 409 ``subscription-not-active`` for one that has ended."
        ),
    )
    async def change_address(
        self,
        subscription_id: uuid.UUID,
        data: AddressIn,
        principal: Principal,
        subscriptions: SubscriptionService,
    ) -> Response[SubscriptionView]:
        row = await subscriptions.change_address(principal, subscription_id, data)
        return Response(subscription_view(row), headers=NO_STORE)


class AdminSubscriptionController(Controller):
    """Staff read a customer's subscriptions (the customer screen); they change none here."""

    path = "/api/admin/subscriptions"
    tags = ["admin: subscriptions"]
    guards = [requires_admin]
    security = [{"BearerToken": []}]

    @get("/", summary="A customer's subscriptions, newest first", cache=False)
    async def list_subscriptions(
        self,
        db_session: AsyncSession,
        user_id: Annotated[uuid.UUID, Parameter(description="The customer's account id.")],
        page: Page = 1,
        page_size: PageSize = 20,
    ) -> Response[SubscriptionPage]:
        repo = SubscriptionRepository(session=db_session, auto_commit=False, auto_expunge=False)
        rows, total = await repo.page_for_user(user_id, **window(page, page_size))
        return Response(
            SubscriptionPage(
                items=[subscription_view(row) for row in rows],
                total=total,
                page=page,
                page_size=page_size,
            ),
            headers=NO_STORE,
        )
