"""What the order APIs take and answer (msgspec structs, with the limits they enforce)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec
from ember_shared.pagination import Page

OrderStatusName = Literal[
    "pending_payment",
    "payment_failed",
    "cancelled",
    "paid",
    "fulfilled",
    "shipped",
    "delivered",
    "partially_refunded",
    "refunded",
]
AdminStatusName = Literal["fulfilled", "delivered", "cancelled"]

MinorUnits = Annotated[int, msgspec.Meta(ge=0, description="Amount in minor units (cents).")]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", description="ISO 4217 code.")]

Carrier = Annotated[
    str,
    msgspec.Meta(
        min_length=2,
        max_length=40,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 .&'-]*[A-Za-z0-9.]$",
        description="Carrier name, e.g. UPS, FedEx, USPS, DHL, Royal Mail.",
        examples=["UPS"],
    ),
]
TrackingNumber = Annotated[
    str,
    msgspec.Meta(
        min_length=5,
        max_length=40,
        pattern="^[A-Za-z0-9-]+$",
        description="The carrier's tracking number (letters, digits, dashes).",
        examples=["1Z999AA10123456784"],
    ),
]
Notes = Annotated[str, msgspec.Meta(max_length=4000, description="Staff notes on the order.")]


class OrderItemView(msgspec.Struct, kw_only=True):
    """One line of the order, as it was sold (never changes afterwards)."""

    product_id: uuid.UUID
    slug: str
    name: str
    image_url: str
    unit_price: MinorUnits
    quantity: Annotated[int, msgspec.Meta(ge=1)]
    line_total: MinorUnits
    #: This line's share of the order's discount (``line_total`` is before it).
    discount: MinorUnits = 0
    #: The variant sold, with its SKU, title ("Espresso / 1 kg") and option values at the
    #: sale; null/empty on items from before variants (the product's default variant).
    variant_id: uuid.UUID | None = None
    sku: str = ""
    variant_title: str = ""
    option_values: list[str] = msgspec.field(default_factory=list)


class AddressView(msgspec.Struct, kw_only=True):
    name: str
    line1: str
    line2: str
    city: str
    state: str
    postal_code: str
    country: str
    phone: str


class ShipmentView(msgspec.Struct, kw_only=True):
    carrier: str
    tracking_number: str
    tracking_url: str
    #: The provider's latest main status: InfoReceived, InTransit, OutForDelivery, Delivered, ...
    status: str | None
    shipped_at: dt.datetime | None
    delivered_at: dt.datetime | None
    last_sync: dt.datetime | None


class OrderView(msgspec.Struct, kw_only=True):
    """An order as its customer sees it."""

    id: uuid.UUID
    status: OrderStatusName
    created_at: dt.datetime
    updated_at: dt.datetime
    paid_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    email: str
    currency: Currency
    subtotal: MinorUnits
    shipping_total: MinorUnits
    total: MinorUnits
    amount_refunded: MinorUnits
    item_count: int
    items: list[OrderItemView]
    shipping_address: AddressView
    shipment: ShipmentView | None
    #: The customer's subscription this order delivers; None for a one-off order.
    subscription_id: uuid.UUID | None
    #: ``total`` = ``subtotal`` - ``discount_total`` + ``shipping_total`` + ``tax_total``.
    discount_total: MinorUnits = 0
    discount_code: str = ""
    tax_total: MinorUnits = 0
    shipping_method: str = ""


OrderPage = Page[OrderView]


class StatusChangeView(msgspec.Struct, kw_only=True):
    from_status: OrderStatusName | None
    to_status: OrderStatusName
    reason: str
    actor: str
    at: dt.datetime


class AdminOrderView(OrderView, kw_only=True):
    """An order as staff see it: payment references, notes and its history as well."""

    user_id: uuid.UUID | None
    #: None for a subscription's delivery (no checkout session made it).
    checkout_session_id: uuid.UUID | None
    reservation_id: uuid.UUID | None
    #: The paid Stripe invoice when the order is a subscription's delivery.
    stripe_invoice_id: str | None
    stripe_session_id: str | None
    payment_intent_id: str | None
    notes: str
    tracking_registered: bool
    tracking_error: str | None
    fulfilled_at: dt.datetime | None
    refunded_at: dt.datetime | None
    #: Why staff should look before shipping (checkout's note on the payment: another amount,
    #: money taken after the checkout closed); None for an ordinary payment.
    attention: str | None
    allowed_statuses: list[AdminStatusName]
    history: list[StatusChangeView]


class AdminOrderSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    status: OrderStatusName
    created_at: dt.datetime
    paid_at: dt.datetime | None
    email: str
    user_id: uuid.UUID | None
    currency: Currency
    total: MinorUnits
    amount_refunded: MinorUnits
    item_count: int
    carrier: str | None
    tracking_number: str | None
    subscription_id: uuid.UUID | None
    #: Checkout's note when the payment needs a look before shipping; None otherwise.
    attention: str | None


AdminOrderPage = Page[AdminOrderSummary]


class AdminOrderUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Move an order through fulfilment by hand, or edit its notes.

    Payment states (paid, refunded, ...) change only from verified payment events, and an order
    is shipped with ``POST /api/admin/orders/{id}/ship`` (it needs a tracking number)."""

    status: AdminStatusName | None = None
    notes: Notes | None = None
    reason: Annotated[str, msgspec.Meta(max_length=300)] = ""


class ShipRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    carrier: Carrier
    tracking_number: TrackingNumber


class TrackingEventView(msgspec.Struct, kw_only=True):
    occurred_at: dt.datetime
    status: str
    sub_status: str
    description: str
    location: str


class TrackingView(msgspec.Struct, kw_only=True):
    order_id: uuid.UUID
    order_status: OrderStatusName
    carrier: str
    tracking_number: str
    tracking_url: str
    status: str | None
    shipped_at: dt.datetime | None
    delivered_at: dt.datetime | None
    last_sync: dt.datetime | None
    events: list[TrackingEventView]
