"""What the cart routes accept and answer (msgspec structs, with their constraints)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from cart.settings import HARD_MAX_LINES, HARD_MAX_QUANTITY_PER_LINE

AddQuantity = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        le=HARD_MAX_QUANTITY_PER_LINE,
        description="How many to add (the per-line limit, 10 by default, is checked too).",
    ),
]
SetQuantityValue = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=HARD_MAX_QUANTITY_PER_LINE,
        description="The line's new quantity; 0 removes the line.",
    ),
]


class AddItem(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A product to put in the cart. Prices are never taken from the client."""

    product_id: uuid.UUID
    quantity: AddQuantity = 1
    #: Which variant of the product; absent: its default variant (the product's id).
    variant_id: uuid.UUID | None = None


class SetQuantity(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    quantity: SetQuantityValue


class SetLine(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    product_id: uuid.UUID
    quantity: SetQuantityValue
    #: Which variant of the product; absent: its default variant (the product's id).
    variant_id: uuid.UUID | None = None


class SetLines(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Quantities to set in one go (all or nothing); a product not yet in the cart is added."""

    lines: Annotated[list[SetLine], msgspec.Meta(min_length=1, max_length=HARD_MAX_LINES)]


class CartLine(msgspec.Struct, kw_only=True):
    """One line, priced now from catalog. ``unit_price`` and the product fields are ``null``
    when catalog could not be asked (``pricing_unavailable`` on the cart) or does not know it."""

    product_id: uuid.UUID
    quantity: int
    name: str | None
    slug: str | None
    image_url: str | None
    #: Price of one, in minor units of ``currency``, as catalog sells it now.
    unit_price: int | None
    #: The same as ``unit_price`` (catalog's name for it).
    price: int | None
    currency: str | None
    line_total: int | None
    availability: Literal["in_stock", "low_stock", "sold_out"] | None
    #: Most this line may hold now: the per-line limit or what is sellable, the smaller.
    max_quantity: int | None
    purchasable: bool
    #: Catalog does not sell it now (unknown, archived or sold out).
    unavailable: bool
    archived: bool
    sold_out: bool
    quantity_exceeds_stock: bool
    added_at: dt.datetime
    #: The variant the line holds (``/api/cart/items/{variant_id}`` changes it); a product
    #: without options has one, with the product's id.
    variant_id: uuid.UUID | None = None
    sku: str | None = None
    #: The variant's option values joined ("Espresso / 1 kg"); empty without options.
    variant_title: str | None = None
    option_values: list[str] = msgspec.field(default_factory=list)


class CartLimits(msgspec.Struct, kw_only=True):
    max_quantity_per_line: int
    max_lines: int


class MergeAdjustment(msgspec.Struct, kw_only=True):
    """A guest line that could not move over whole."""

    product_id: uuid.UUID
    requested: int
    added: int
    variant_id: uuid.UUID | None = None
    quantity: int
    reason: Literal["quantity-limit", "stock", "unavailable", "cart-full"]


class MergeSummary(msgspec.Struct, kw_only=True):
    #: ``False`` when there was nothing to merge (no guest cart, or it was merged already).
    merged: bool
    from_cart_id: uuid.UUID | None = None
    lines_merged: int = 0
    adjustments: list[MergeAdjustment] = msgspec.field(default_factory=list)


class CartView(msgspec.Struct, kw_only=True):
    """The shopper's cart. ``id`` is ``null`` while no cart exists (nothing was added yet)."""

    id: uuid.UUID | None
    lines: list[CartLine]
    line_count: int
    #: Sum of the quantities of every line (the badge count).
    item_count: int
    #: Sum of the purchasable lines, in ``currency``; ``null`` when pricing is unavailable.
    subtotal: int | None
    currency: str | None
    pricing_unavailable: bool
    #: Every line can be bought as it stands (and there is at least one).
    checkout_ready: bool
    limits: CartLimits
    merge: MergeSummary | None = None


class CartLines(msgspec.Struct, kw_only=True):
    lines: list[CartLine]
    pricing_unavailable: bool
