"""Constrained field types shared by the catalog's request and response structs."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec
from ember_shared.contracts.catalog import Availability
from ember_shared.money import CurrencyCode, MinorUnits

__all__ = [
    "Availability",
    "CurrencyCode",
    "LongText",
    "MinorUnits",
    "Name",
    "PageNumber",
    "ShortText",
    "Slug",
    "slugify",
]

#: No control characters (Postgres refuses NUL; the others are never meant in a name).
_LINE = r"[^\x00-\x1f\x7f]"
#: A one-line text with at least one visible character.
_NAME_PATTERN = rf"^{_LINE}*[^\s\x00-\x1f\x7f]{_LINE}*$"
SLUG_PATTERN = r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$"

Slug = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=120,
        pattern=SLUG_PATTERN,
        description="Lowercase letters, digits and single hyphens; unique, case-insensitively.",
        examples=["ethiopia-yirgacheffe"],
    ),
]
CategorySlug = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=80, pattern=SLUG_PATTERN, examples=["single-origin"]),
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=160, pattern=_NAME_PATTERN)]
CategoryName = Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=_NAME_PATTERN)]
ShortText = Annotated[str, msgspec.Meta(max_length=300, pattern=rf"^{_LINE}*$")]
Label = Annotated[str, msgspec.Meta(max_length=80, pattern=rf"^{_LINE}*$")]
ProcessLabel = Annotated[str, msgspec.Meta(max_length=60, pattern=rf"^{_LINE}*$")]
Note = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=_NAME_PATTERN)]
#: Multi-line text: newlines and tabs allowed, NUL never.
LongText = Annotated[str, msgspec.Meta(max_length=20_000, pattern=r"^[^\x00]*$")]
Roast = Literal["", "light", "medium", "medium-dark", "dark"]
StockCount = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Position = Annotated[int, msgspec.Meta(ge=0, le=10_000)]
WeightGrams = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
PageNumber = Annotated[int, msgspec.Meta(ge=1, le=10_000)]

#: Bounds on paging, for every listing.
MAX_PAGE = 10_000
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 24


def availability_of(available: int, low_stock: int) -> Availability:
    """What a shopper may know of stock: never the counts, only this."""
    if available <= 0:
        return "sold_out"
    if available <= low_stock:
        return "low_stock"
    return "in_stock"


def variant_title(option_values: Sequence[str]) -> str:
    """How a variant is named beside its product ("Espresso / 1 kg"); empty for a default."""
    return " / ".join(option_values)


def slugify(text: str, max_length: int = 120) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-")
