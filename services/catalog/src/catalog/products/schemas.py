"""Product shapes at the edge: what shoppers read, what admins send and read."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec
from ember_shared.pagination import NumberedPage
from msgspec import UNSET, UnsetType

from catalog.fields import (
    Availability,
    CurrencyCode,
    Label,
    LongText,
    MinorUnits,
    Name,
    Note,
    Position,
    ProcessLabel,
    Roast,
    ShortText,
    Slug,
    StockCount,
    WeightGrams,
)
from catalog.variants.schemas import AdminVariant, ProductOption, VariantOut

SortOrder = Literal["newest", "price", "price_desc", "name"]
TastingNotes = Annotated[list[Note], msgspec.Meta(max_length=8)]
ImageUrl = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=500,
        pattern=r"^(https?://[^\s\x00-\x1f]+|/[^\s\x00-\x1f]*)$",
        description="An absolute http(s) URL or a path on this site (as upload-image answers).",
    ),
]
AltText = Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
StorageKey = Annotated[str, msgspec.Meta(max_length=300, pattern=r"^[A-Za-z0-9/_.\-]*$")]


class CategoryRef(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    slug: str
    name: str


class ImageRef(msgspec.Struct, kw_only=True):
    url: str
    alt: str


class ProductImageOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    url: str
    alt: str
    position: int
    primary: bool


class ProductSummary(msgspec.Struct, kw_only=True):
    """One product in a listing or search result."""

    id: uuid.UUID
    slug: str
    name: str
    summary: str
    price: int
    currency: str
    availability: Availability
    category: CategoryRef | None
    image: ImageRef | None
    origin: str
    roast: str
    tasting_notes: list[str]
    #: The next picture after ``image`` (a listing shows it on hover); null with one picture.
    hover_image: ImageRef | None = None
    #: In a search for a variant's SKU, that SKU on the product that sells it (its page opens
    #: on that variant with ``?variant=``); else null.
    variant_sku: str | None = None


class ProductPage(NumberedPage[ProductSummary], kw_only=True):
    # Declared again: Litestar's schema of a subclass of a parametrised struct loses the item type.
    items: list[ProductSummary]
    sort: SortOrder
    category: str | None = None


class ProductDetail(msgspec.Struct, kw_only=True):
    """A product page: everything a shopper may see, with its images in display order."""

    id: uuid.UUID
    slug: str
    name: str
    summary: str
    description: str
    price: int
    currency: str
    availability: Availability
    category: CategoryRef | None
    images: list[ProductImageOut]
    origin: str
    roast: str
    process: str
    tasting_notes: list[str]
    weight_grams: int | None
    updated_at: dt.datetime
    #: What a shopper picks among (empty: the product is sold as one item).
    options: list[ProductOption] = msgspec.field(default_factory=list)
    #: The variants on sale, in display order (a product without options has one, with the
    #: product's id); ``price`` above is the lowest of theirs.
    variants: list[VariantOut] = msgspec.field(default_factory=list)


class SearchResult(NumberedPage[ProductSummary], kw_only=True):
    query: str
    items: list[ProductSummary]
    #: Words of the catalog the query's words were also matched against (typo tolerance).
    matched_words: list[str]


# --- admin -------------------------------------------------------------------------------


class ProductCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    price: MinorUnits
    slug: Slug | None = None
    currency: CurrencyCode | None = None
    summary: ShortText = ""
    description: LongText = ""
    category_id: uuid.UUID | None = None
    active: bool = True
    origin: Label = ""
    roast: Roast = ""
    process: ProcessLabel = ""
    tasting_notes: TastingNotes = msgspec.field(default_factory=list)
    weight_grams: WeightGrams | None = None
    #: Units on hand at creation.
    on_hand: StockCount = 0


class ProductUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the members sent are changed."""

    name: Name | UnsetType = UNSET
    price: MinorUnits | UnsetType = UNSET
    slug: Slug | UnsetType = UNSET
    currency: CurrencyCode | UnsetType = UNSET
    summary: ShortText | UnsetType = UNSET
    description: LongText | UnsetType = UNSET
    category_id: uuid.UUID | UnsetType | None = UNSET
    active: bool | UnsetType = UNSET
    origin: Label | UnsetType = UNSET
    roast: Roast | UnsetType = UNSET
    process: ProcessLabel | UnsetType = UNSET
    tasting_notes: TastingNotes | UnsetType = UNSET
    weight_grams: WeightGrams | UnsetType | None = UNSET


class StockOut(msgspec.Struct, kw_only=True):
    on_hand: int
    reserved: int
    available: int
    availability: Availability


class AdminProduct(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    slug: str
    name: str
    summary: str
    description: str
    price: int
    currency: str
    category_id: uuid.UUID | None
    active: bool
    archived_at: dt.datetime | None
    origin: str
    roast: str
    process: str
    tasting_notes: list[str]
    weight_grams: int | None
    images: list[ProductImageOut]
    #: Stock of the variants on sale, summed.
    stock: StockOut
    created_at: dt.datetime
    updated_at: dt.datetime
    options: list[ProductOption] = msgspec.field(default_factory=list)
    #: Every variant, those on sale first (see ``/api/admin/products/{id}/variants``).
    variants: list[AdminVariant] = msgspec.field(default_factory=list)


AdminProductPage = NumberedPage[AdminProduct]


class ImageCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: ImageUrl
    key: StorageKey = ""
    alt: AltText = ""
    #: Where it goes in the display order (0 first); at the end when absent.
    position: Position | None = None
    #: Make it the product's primary image (the first image always is).
    primary: bool = False


class ImageUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    alt: AltText | UnsetType = UNSET
    position: Position | UnsetType = UNSET
    primary: Literal[True] | UnsetType = UNSET


class ImageOrder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every image id of the product, in the wanted display order."""

    image_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=50)]


class UploadedImage(msgspec.Struct, kw_only=True):
    url: str
    key: str
    width: int
    height: int
    content_type: str
    bytes: int
