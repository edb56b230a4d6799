"""Category shapes."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

from catalog.fields import CategoryName, CategorySlug, LongText

DisplayOrder = Annotated[int, msgspec.Meta(ge=0, le=10_000)]


class CategoryOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    slug: str
    name: str
    description: str
    display_order: int


class CategoryList(msgspec.Struct, kw_only=True):
    items: list[CategoryOut]


class CategoryCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: CategoryName
    slug: CategorySlug | None = None
    description: LongText = ""
    #: Where it shows among the others (smaller first); after the last one when absent.
    display_order: DisplayOrder | None = None


class CategoryUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: CategoryName | UnsetType = UNSET
    slug: CategorySlug | UnsetType = UNSET
    description: LongText | UnsetType = UNSET
    display_order: DisplayOrder | UnsetType = UNSET


class CategoryOrder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every category id, in the wanted display order."""

    category_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=200)]
