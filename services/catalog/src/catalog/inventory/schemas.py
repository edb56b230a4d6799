"""Stock shapes: the admin inventory view. The internal API that checkout and cart call speaks
:mod:`ember_shared.contracts.catalog`."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec
from ember_shared.pagination import NumberedPage

from catalog.fields import Availability, StockCount


class InventoryRow(msgspec.Struct, kw_only=True):
    product_id: uuid.UUID
    slug: str
    name: str
    active: bool
    on_hand: int
    reserved: int
    available: int
    availability: Availability
    updated_at: dt.datetime
    #: The variant this stock is of (a product sold without options has one, with its id).
    variant_id: uuid.UUID | None = None
    sku: str = ""
    option_values: list[str] = msgspec.field(default_factory=list)
    variant_title: str = ""
    variant_active: bool = True


InventoryPage = NumberedPage[InventoryRow]


class StockSet(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    on_hand: StockCount


class StockSetLine(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    product_id: uuid.UUID
    on_hand: StockCount
    #: A variant of ``product_id``; absent: the product's default variant.
    variant_id: uuid.UUID | None = None


class StockSetMany(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Set the on-hand count of several products at once (all or none)."""

    items: Annotated[list[StockSetLine], msgspec.Meta(min_length=1, max_length=100)]


class InventoryList(msgspec.Struct, kw_only=True):
    items: list[InventoryRow]
