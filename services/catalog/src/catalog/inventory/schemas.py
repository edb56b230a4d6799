"""Stock shapes: the admin inventory view and the internal API checkout and cart call."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from catalog.fields import Availability, Quantity, StockCount

ReservationStatus = Literal["active", "committed", "released"]


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


class InventoryPage(msgspec.Struct, kw_only=True):
    items: list[InventoryRow]
    page: int
    page_size: int
    total: int
    pages: int


class StockSet(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    on_hand: StockCount


class StockSetLine(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    product_id: uuid.UUID
    on_hand: StockCount


class StockSetMany(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Set the on-hand count of several products at once (all or none)."""

    items: Annotated[list[StockSetLine], msgspec.Meta(min_length=1, max_length=100)]


class InventoryList(msgspec.Struct, kw_only=True):
    items: list[InventoryRow]


# --- internal ----------------------------------------------------------------------------


class LookupRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    product_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=100)]


class LookupProduct(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    slug: str
    name: str
    price: int
    currency: str
    active: bool
    availability: Availability
    #: Units sellable now (on hand less reserved); for services only, never shown to shoppers.
    available: int
    image_url: str | None


class LookupResponse(msgspec.Struct, kw_only=True):
    products: list[LookupProduct]


class ReservationLineIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    product_id: uuid.UUID
    quantity: Quantity


class ReservationRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    order_id: uuid.UUID
    lines: Annotated[list[ReservationLineIn], msgspec.Meta(min_length=1, max_length=100)]
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=86_400)]


class ReservationLineOut(msgspec.Struct, kw_only=True):
    product_id: uuid.UUID
    quantity: int


class ReservationOut(msgspec.Struct, kw_only=True):
    reservation_id: uuid.UUID
    order_id: uuid.UUID
    status: ReservationStatus
    expires_at: dt.datetime
    lines: list[ReservationLineOut]


class UnavailableLine(msgspec.Struct, kw_only=True):
    product_id: uuid.UUID
    requested: int
    available: int
