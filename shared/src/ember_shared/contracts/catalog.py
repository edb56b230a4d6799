"""Catalog's internal API: what cart and checkout ask it (prices and stock, reservations)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

LOOKUP_PATH = "/internal/catalog/products/lookup"
RESERVATIONS_PATH = "/internal/catalog/reservations"
#: Catalog answers at most this many ids per lookup.
LOOKUP_MAX_IDS = 100

Availability = Literal["in_stock", "low_stock", "sold_out"]
ReservationStatus = Literal["active", "committed", "released"]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=1000)]


def reservation_path(order_id: uuid.UUID) -> str:
    return f"{RESERVATIONS_PATH}/{order_id}"


def release_path(order_id: uuid.UUID) -> str:
    return f"{RESERVATIONS_PATH}/{order_id}/release"


# --- POST /internal/catalog/products/lookup ----------------------------------------------


class LookupRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Products, answered as their default variant (the one with the product's id).
    product_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=LOOKUP_MAX_IDS)]
    #: Variants, answered in ``LookupResponse.variants``.
    variant_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=LOOKUP_MAX_IDS)] = (
        msgspec.field(default_factory=list)
    )


class LookupProduct(msgspec.Struct, frozen=True, kw_only=True):
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
    #: The variant answered (price, stock and active are its own; ``id`` is its product's).
    variant_id: uuid.UUID | None = None
    sku: str = ""
    #: One value per option of the product, in the options' order (empty: no options).
    option_values: list[str] = msgspec.field(default_factory=list)
    #: The values joined for display ("Espresso / 1 kg"); empty for a product without options.
    variant_title: str = ""
    weight_grams: int | None = None
    #: The product's category (None: in none), for rules that go by category (discount codes).
    category_id: uuid.UUID | None = None

    @property
    def sellable_now(self) -> int:
        """How many can be bought now; 0 when archived or sold out."""
        if not self.active or self.availability == "sold_out":
            return 0
        return max(self.available, 0)


class LookupResponse(msgspec.Struct, kw_only=True):
    #: The products catalog knows among those asked; an unknown id is simply absent.
    products: list[LookupProduct]
    #: The variants catalog knows among ``variant_ids``; an unknown id is simply absent.
    variants: list[LookupProduct] = msgspec.field(default_factory=list)


# --- POST /internal/catalog/reservations (and .../{order_id}, .../{order_id}/release) ----


class ReservationLineIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    product_id: uuid.UUID
    quantity: Quantity
    #: A variant of ``product_id``; absent: the product's default variant.
    variant_id: uuid.UUID | None = None


class ReservationRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    order_id: uuid.UUID
    lines: Annotated[list[ReservationLineIn], msgspec.Meta(min_length=1, max_length=100)]
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=86_400)]
    #: Also answer each line's variant as the lookup would (price, name, SKU...), read in the
    #: reservation's own transaction: a checkout then needs no lookup of its own before it.
    priced: bool = False


class ReservationLineOut(msgspec.Struct, kw_only=True):
    product_id: uuid.UUID
    quantity: int
    variant_id: uuid.UUID | None = None


class ReservationOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """(``variants`` is left out when empty: an unpriced reservation is answered as before.)"""

    reservation_id: uuid.UUID
    order_id: uuid.UUID
    status: ReservationStatus
    expires_at: dt.datetime
    lines: list[ReservationLineOut]
    #: With ``priced``: the variant of each line, as ``LookupResponse.variants`` answers it
    #: (``available`` is what is left after this reservation); empty otherwise.
    variants: list[LookupProduct] = msgspec.field(default_factory=list)


#: The problem kind of a reservation refused for want of stock (409).
INSUFFICIENT_STOCK = "insufficient-stock"


class UnavailableLine(msgspec.Struct, kw_only=True):
    product_id: uuid.UUID
    requested: int
    available: int
    variant_id: uuid.UUID | None = None


class InsufficientStock(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The member of the 409 ``insufficient-stock`` problem that says which lines fell short
    (the problem's other members are the usual RFC 9457 ones)."""

    unavailable: list[UnavailableLine]
    #: With ``priced``: the variants of the unavailable lines that catalog knows (name, and
    #: ``active``: archived ones are not), as the lookup answers them.
    variants: list[LookupProduct] = msgspec.field(default_factory=list)
