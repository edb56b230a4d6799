"""What the shipping-rate and discount-code routes accept and answer (msgspec structs)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec

Money = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
RateCode = Annotated[
    str,
    msgspec.Meta(pattern="^[a-z0-9][a-z0-9-]{0,39}$", examples=["express"]),
]
Country = Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$", examples=["US"])]
Days = Annotated[int, msgspec.Meta(ge=0, le=365)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
#: Typed by shoppers in any case; kept upper case.
CodeText = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=40, pattern="^[A-Za-z0-9][A-Za-z0-9_-]*$", examples=["WELCOME10"]
    ),
]


class ShippingRateIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A shipping rate. ``free_over``: subtotals (after any discount) at or above this ship
    free. ``countries``: ISO codes it ships to (empty: everywhere)."""

    code: RateCode
    name: Name
    price: Money
    free_over: Annotated[int, msgspec.Meta(gt=0, le=100_000_000)] | None = None
    countries: Annotated[list[Country], msgspec.Meta(max_length=250)] = msgspec.field(
        default_factory=list
    )
    min_days: Days | None = None
    max_days: Days | None = None
    position: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0
    active: bool = True


class ShippingRatePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | None = None
    price: Money | None = None
    free_over: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)] | None = None
    countries: Annotated[list[Country], msgspec.Meta(max_length=250)] | None = None
    min_days: Days | None = None
    max_days: Days | None = None
    position: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None
    active: bool | None = None


class ShippingRateOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    code: str
    name: str
    price: int
    free_over: int | None
    countries: list[str]
    min_days: int | None
    max_days: int | None
    position: int
    active: bool
    currency: str


class ShippingOption(msgspec.Struct, kw_only=True):
    """A rate a shopper may pick for a subtotal and country: ``amount`` is what it costs them."""

    code: str
    name: str
    amount: int
    currency: str
    min_days: int | None = None
    max_days: int | None = None


class ShippingOptions(msgspec.Struct, kw_only=True):
    options: list[ShippingOption]


class DiscountCodeIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A discount code: ``percent_off`` or ``amount_off`` (minor units), not both."""

    code: CodeText
    description: Annotated[str, msgspec.Meta(max_length=200)] = ""
    percent_off: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    amount_off: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | None = None
    min_subtotal: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)] = 0
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    max_uses: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] | None = None
    max_uses_per_customer: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    first_order_only: bool = False
    #: The products it takes money off (this and ``category_ids`` empty: all).
    product_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=500)] = msgspec.field(
        default_factory=list
    )
    #: The catalog categories whose products it takes money off, as well as ``product_ids``'.
    category_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=100)] = msgspec.field(
        default_factory=list
    )
    active: bool = True


class DiscountCodePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What is given changes. ``percent_off`` or ``amount_off`` (not both) changes what it
    takes off, and of which kind, for checkouts started from then on. ``starts_at``,
    ``ends_at``, ``max_uses`` and ``max_uses_per_customer`` given as null are removed (no start,
    no end, no limit); any other field given as null is left as it is."""

    description: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    percent_off: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    amount_off: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | None = None
    min_subtotal: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)] | None = None
    starts_at: dt.datetime | msgspec.UnsetType | None = msgspec.UNSET
    ends_at: dt.datetime | msgspec.UnsetType | None = msgspec.UNSET
    max_uses: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )
    max_uses_per_customer: (
        Annotated[int, msgspec.Meta(ge=1, le=1000)] | msgspec.UnsetType | None
    ) = msgspec.UNSET
    first_order_only: bool | None = None
    product_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=500)] | None = None
    category_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=100)] | None = None
    active: bool | None = None


class DiscountCodeOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    code: str
    description: str
    percent_off: int | None
    amount_off: int | None
    min_subtotal: int
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    max_uses: int | None
    max_uses_per_customer: int | None
    first_order_only: bool
    product_ids: list[uuid.UUID]
    category_ids: list[uuid.UUID]
    active: bool
    #: Paid checkouts that used it.
    uses: int
    #: Open checkouts holding a use until they are paid or lapse.
    holds: int
    currency: str
    created_at: dt.datetime


class DiscountCodePage(msgspec.Struct, kw_only=True):
    items: list[DiscountCodeOut]
