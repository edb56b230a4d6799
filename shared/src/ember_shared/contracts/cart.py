"""Cart's internal API: which lines a shopper would check out (asked by checkout)."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

RESOLVE_PATH = "/internal/cart/resolve"


class ResolveRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which cart a shopper would check out: theirs when signed in, else the guest cookie's."""

    user_id: uuid.UUID | None = None
    #: Any cookie a browser sent: one that is not genuine is simply no cart.
    cart_token: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


class ResolvedLine(msgspec.Struct, kw_only=True):
    product_id: uuid.UUID
    quantity: int
    #: The variant of the product the line holds (its default variant has the product's id).
    variant_id: uuid.UUID | None = None


class ResolvedCart(msgspec.Struct, kw_only=True):
    cart_id: uuid.UUID | None
    lines: list[ResolvedLine]
