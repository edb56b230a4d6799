"""What ``/api/checkout*`` accepts and answers (msgspec structs, with their constraints)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from checkout.offers.schemas import CodeText, RateCode

_LINE = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
_OPTIONAL_LINE = r"^[^\x00-\x1f\x7f]*$"

Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$",
        description="Where the receipt and order emails go.",
        examples=["ada@example.com"],
    ),
]
Line = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_LINE)]
OptionalLine = Annotated[str, msgspec.Meta(max_length=200, pattern=_OPTIONAL_LINE)]
Status = Literal[
    "open", "payment_pending", "paid", "payment_failed", "expired", "partially_refunded", "refunded"
]


class AddressIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A shipping address typed in at checkout."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=_LINE)]
    line1: Line
    city: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=_LINE)]
    postal_code: Annotated[str, msgspec.Meta(min_length=1, max_length=20, pattern=_LINE)]
    country: Annotated[
        str,
        msgspec.Meta(pattern="^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code.", examples=["US"]),
    ]
    line2: OptionalLine = ""
    state: Annotated[str, msgspec.Meta(max_length=100, pattern=_OPTIONAL_LINE)] = ""
    phone: Annotated[str, msgspec.Meta(max_length=40, pattern=r"^[0-9+() .\-]*$")] = ""


class StartCheckout(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Start paying for the cart. Give ``shipping_address`` or (signed in) ``saved_address_id``.

    Prices are never taken from the client: every line is priced again from catalog. Send the
    total the shopper was shown as ``expected_total``; if the prices changed meanwhile the answer
    is 409 ``price-changed`` with the new lines, and nothing is charged until they are accepted.
    """

    email: Email | None = None
    shipping_address: AddressIn | None = None
    saved_address_id: uuid.UUID | None = None
    expected_total: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] | None = None
    #: A discount code to apply (one per checkout); refused with a problem saying why.
    discount_code: CodeText | None = None
    #: The shipping rate picked (``GET /api/checkout/shipping-options``); absent: the first.
    shipping_rate: RateCode | None = None


class PricedLine(msgspec.Struct, kw_only=True):
    product_id: uuid.UUID
    slug: str
    name: str
    unit_price: int
    quantity: int
    line_total: int
    image_url: str = ""
    #: The variant of the product the line sells (its default variant has the product's id).
    variant_id: uuid.UUID | None = None
    sku: str = ""
    #: The variant's option values joined ("Espresso / 1 kg"); empty without options.
    variant_title: str = ""
    option_values: list[str] = msgspec.field(default_factory=list)
    #: What the checkout's discount code takes off this line (already out of the total).
    discount: int = 0


class AddressOut(msgspec.Struct, kw_only=True):
    name: str
    line1: str
    line2: str
    city: str
    state: str
    postal_code: str
    country: str
    phone: str


class Quote(msgspec.Struct, kw_only=True):
    """The cart priced now from catalog: what a checkout would charge."""

    cart_id: uuid.UUID | None
    lines: list[PricedLine]
    subtotal: int
    shipping: int
    total: int
    currency: str
    discount: int = 0
    discount_code: str = ""
    shipping_rate: str = ""
    shipping_name: str = ""
    #: Stripe Tax's amount, in ``total`` (a quote's is 0: the tax is known once Stripe has
    #: the address, when the checkout starts).
    tax: int = 0
    #: Stripe Tax adds the tax due where it ships when the shopper pays (``CHECKOUT_TAX``
    #: on): ``total`` has none of it yet. False: no tax is charged.
    tax_at_payment: bool = False


class CheckoutStarted(msgspec.Struct, kw_only=True):
    """A checkout to pay: send the shopper to ``checkout_url`` (Stripe's hosted page)."""

    order_id: uuid.UUID
    checkout_session_id: uuid.UUID
    status: Status
    checkout_url: str
    expires_at: dt.datetime
    lines: list[PricedLine]
    subtotal: int
    shipping: int
    total: int
    currency: str
    discount: int = 0
    discount_code: str = ""
    shipping_rate: str = ""
    shipping_name: str = ""
    #: Stripe Tax's amount, in ``total`` (a quote's is 0: the tax is known once Stripe has
    #: the address, when the checkout starts).
    tax: int = 0
    email: str


class CheckoutView(msgspec.Struct, kw_only=True):
    """A checkout's state. ``paid`` is set only by Stripe's verified webhook, never by the redirect."""

    order_id: uuid.UUID
    checkout_session_id: uuid.UUID
    status: Status
    checkout_url: str | None
    expires_at: dt.datetime
    lines: list[PricedLine]
    subtotal: int
    shipping: int
    total: int
    currency: str
    discount: int = 0
    discount_code: str = ""
    shipping_rate: str = ""
    shipping_name: str = ""
    #: Stripe Tax's amount, in ``total`` (a quote's is 0: the tax is known once Stripe has
    #: the address, when the checkout starts).
    tax: int = 0
    email: str
    shipping_address: AddressOut
    amount_refunded: int
    paid_at: dt.datetime | None
    created_at: dt.datetime
