"""Variant shapes: a product's options, the variants shoppers pick among, and the admin's edit."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec

from catalog.fields import Availability, MinorUnits, StockCount, WeightGrams

#: No control characters; at least one visible character.
_VALUE_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
OptionName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=40, pattern=_VALUE_PATTERN, examples=["Grind"])
]
OptionValue = Annotated[
    str, msgspec.Meta(min_length=1, max_length=60, pattern=_VALUE_PATTERN, examples=["Espresso"])
]
Sku = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=120,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$",
        description="Letters, digits, dots, hyphens, underscores; unique, case-insensitively.",
        examples=["ETH-YIRG-ESP-1KG"],
    ),
]
#: How many options a product may have, values an option, and variants a product.
MAX_OPTIONS = 3
MAX_VALUES = 20
MAX_VARIANTS = 100


class ProductOption(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: OptionName
    values: Annotated[list[OptionValue], msgspec.Meta(min_length=1, max_length=MAX_VALUES)]


class VariantOut(msgspec.Struct, kw_only=True):
    """One variant on the product page: what the picker shows for a choice."""

    id: uuid.UUID
    sku: str
    #: One value per option, in the options' order (empty for a product without options).
    option_values: list[str]
    #: The values joined for display ("Espresso / 1 kg").
    title: str
    price: int
    weight_grams: int | None
    availability: Availability


class VariantIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A variant to keep (``id`` of one the product has) or to make (no ``id``)."""

    sku: Sku
    price: MinorUnits
    option_values: Annotated[list[OptionValue], msgspec.Meta(max_length=MAX_OPTIONS)] = (
        msgspec.field(default_factory=list)
    )
    id: uuid.UUID | None = None
    weight_grams: WeightGrams | None = None
    active: bool = True
    #: Units on hand: a new variant's first count, or an existing one's new count (absent:
    #: a new variant starts at 0, an existing one keeps its count).
    on_hand: StockCount | None = None


class VariantsSet(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A product's options and every variant it sells, in display order. Variants the
    product has and that are not listed stop being sold (they are kept: orders name them). No
    options: one variant, the product's default (its id is the product's)."""

    options: Annotated[list[ProductOption], msgspec.Meta(max_length=MAX_OPTIONS)]
    variants: Annotated[list[VariantIn], msgspec.Meta(min_length=1, max_length=MAX_VARIANTS)]


class AdminVariant(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    sku: str
    option_values: list[str]
    title: str
    price: int
    weight_grams: int | None
    active: bool
    position: int
    on_hand: int
    reserved: int
    available: int
    availability: Availability
    updated_at: dt.datetime


class AdminVariants(msgspec.Struct, kw_only=True):
    product_id: uuid.UUID
    options: list[ProductOption]
    #: Every variant the product has had, those on sale first, in display order.
    variants: list[AdminVariant]
