"""What ``/api/subscriptions*`` accepts and answers (msgspec structs, with their constraints)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec
from ember_shared.pagination import Page

from checkout.sessions.schemas import AddressIn, AddressOut

Interval = Literal["week", "month"]
SubscriptionStatusName = Literal[
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "unpaid",
    "paused",
    "canceled",
]


class Subscribe(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Subscribe to a coffee: ``quantity`` bags every ``interval_count`` ``interval``\\ s.

    ``variant_id`` names the variant delivered ("Espresso / 1 kg"); left out, the product's
    default variant. The price is catalog's (the variant's), never the client's. The answer's ``checkout_url`` is Stripe's
    hosted page where the shopper pays the first period; the subscription is ``incomplete``
    until Stripe's webhook says it is ``active``.
    """

    product_id: uuid.UUID
    interval: Annotated[Interval, msgspec.Meta(description="Billing and delivery cadence.")]
    shipping_address: AddressIn
    variant_id: (
        Annotated[
            uuid.UUID,
            msgspec.Meta(description="A variant of the product; left out: its default variant."),
        ]
        | None
    ) = None
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10, description="Bags per delivery.")] = 1
    interval_count: Annotated[
        int, msgspec.Meta(ge=1, le=4, description="Every 1 to 4 weeks or months.")
    ] = 1


class ChangeSubscription(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What to change: the bags per delivery, the cadence and/or the variant (another of the
    same product's, at its own price); what is left out stays.

    ``interval`` without ``interval_count`` keeps the count (every 2 weeks -> every 2 months).
    """

    quantity: Annotated[int, msgspec.Meta(ge=1, le=10, description="Bags per delivery.")] | None = (
        None
    )
    interval: (
        Annotated[Interval, msgspec.Meta(description="Billing and delivery cadence.")] | None
    ) = None
    interval_count: (
        Annotated[int, msgspec.Meta(ge=1, le=4, description="Every 1 to 4 weeks or months.")] | None
    ) = None
    variant_id: (
        Annotated[uuid.UUID, msgspec.Meta(description="Another variant of the same product.")]
        | None
    ) = None


class SubscriptionStarted(msgspec.Struct, kw_only=True):
    """A subscription to pay for: send the shopper to ``checkout_url`` (Stripe's hosted page)."""

    subscription_id: uuid.UUID
    status: SubscriptionStatusName
    checkout_url: str


class SubscribedProduct(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    slug: str
    name: str
    image_url: str


class SubscribedVariant(msgspec.Struct, kw_only=True):
    """The variant delivered; a subscription from before variants has its product's default
    (``id`` the product's, no SKU recorded)."""

    id: uuid.UUID
    sku: str
    #: The option values joined ("Espresso / 1 kg"); empty for a product without options.
    title: str
    option_values: list[str]


class InvoiceView(msgspec.Struct, kw_only=True):
    """One of Stripe's invoices of the subscription; a paid one becomes the order ``order_id``."""

    stripe_invoice_id: str
    status: Literal["paid", "payment_failed"]
    amount_due: int
    amount_paid: int
    currency: str
    billing_reason: str
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    order_id: uuid.UUID | None
    paid_at: dt.datetime | None


class SubscriptionView(msgspec.Struct, kw_only=True):
    """A subscription's state. Every change of ``status``, ``current_period_end`` and
    ``cancel_at_period_end`` comes from Stripe's verified webhooks."""

    id: uuid.UUID
    status: SubscriptionStatusName
    product: SubscribedProduct
    quantity: int
    unit_price: int
    #: What each period costs: ``unit_price * quantity``, shipping included.
    amount: int
    currency: str
    interval: Interval
    interval_count: int
    shipping_address: AddressOut
    current_period_end: dt.datetime | None
    cancel_at_period_end: bool
    canceled_at: dt.datetime | None
    #: Stripe's page to pay the first period, while ``incomplete``.
    checkout_url: str | None
    created_at: dt.datetime
    #: The latest invoices first (at most 24); only on ``GET /api/subscriptions/{id}``.
    invoices: list[InvoiceView] | None = None
    #: No delivery is billed while paused (as Stripe's webhook last said); until
    #: ``paused_until``, or until resumed when that is null.
    paused: bool = False
    paused_until: dt.datetime | None = None
    #: What each delivery is (``unit_price`` is its price).
    variant: SubscribedVariant | None = None


SubscriptionPage = Page[SubscriptionView]


class PaymentMethodSession(msgspec.Struct, kw_only=True):
    """Send the subscriber to ``url`` (Stripe's customer portal) to update their card."""

    url: str
