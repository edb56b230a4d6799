"""Category rules: unique names and slugs, display order, never deleting one still in use."""

from __future__ import annotations

import uuid

import msgspec
from ember_shared.auth import Principal
from ember_shared.problems import Problem, not_found
from msgspec import UNSET
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.audit.recorder import AuditLog, snapshot
from catalog.cache import CatalogCache
from catalog.categories.repositories import CategoryRepository
from catalog.categories.schemas import CategoryCreate, CategoryList, CategoryOut, CategoryUpdate
from catalog.fields import slugify
from catalog.models import Category

FIELDS = ("id", "slug", "name", "description", "display_order")


def category_out(category: Category) -> CategoryOut:
    return CategoryOut(
        id=category.id,
        slug=category.slug,
        name=category.name,
        description=category.description,
        display_order=category.display_order,
    )


async def category_list_body(session: AsyncSession) -> bytes:
    """The public category list, in display order, as the JSON bytes the cache keeps."""
    categories = await CategoryRepository(session=session).in_display_order()
    return msgspec.json.encode(CategoryList(items=[category_out(c) for c in categories]))


class CategoryAdmin:
    def __init__(self, session: AsyncSession, cache: CatalogCache, actor: Principal | None) -> None:
        self.session = session
        self.cache = cache
        self.actor = actor
        self.categories = CategoryRepository(session=session)
        self.audit = AuditLog(session)

    def _stale(self) -> None:
        # Listings and product pages show category names: every cached answer may be stale.
        self.cache.invalidate_on_commit(self.session, everything=True)

    async def all(self) -> list[Category]:
        return await self.categories.in_display_order()

    async def get(self, category_id: uuid.UUID) -> Category:
        category = await self.categories.get_one_or_none(id=category_id)
        if category is None:
            raise not_found("category")
        return category

    async def _check_unique(
        self, *, slug: str | None, name: str | None, excluding: uuid.UUID | None
    ) -> None:
        if name is not None and await self.categories.taken(name=name, excluding=excluding):
            raise Problem(409, "duplicate-name", f"Another category is already called {name!r}.")
        if slug is not None and await self.categories.taken(slug=slug, excluding=excluding):
            raise Problem(
                409, "duplicate-slug", f"Another category already uses the slug {slug!r}."
            )

    async def create(self, data: CategoryCreate) -> Category:
        name = data.name.strip()
        slug = (data.slug or slugify(name, 80) or "category").lower()
        await self._check_unique(slug=slug, name=name, excluding=None)
        order = (
            data.display_order
            if data.display_order is not None
            else await self.categories.next_display_order()
        )
        category = await self.categories.add(
            Category(
                slug=slug, name=name, description=data.description.strip(), display_order=order
            )
        )
        await self.audit.record(
            self.actor,
            "category.created",
            "category",
            category.id,
            after=snapshot(category, FIELDS),
        )
        self._stale()
        return category

    async def update(self, category_id: uuid.UUID, data: CategoryUpdate) -> Category:
        category = await self.get(category_id)
        before = snapshot(category, FIELDS)
        name = data.name.strip() if data.name is not UNSET else None
        slug = data.slug.lower() if data.slug is not UNSET else None
        await self._check_unique(slug=slug, name=name, excluding=category.id)
        if name is not None:
            category.name = name
        if slug is not None:
            category.slug = slug
        if data.description is not UNSET:
            category.description = data.description.strip()
        if data.display_order is not UNSET:
            category.display_order = data.display_order
        await self.session.flush()
        after = snapshot(category, FIELDS)
        if after != before:
            await self.audit.record(
                self.actor, "category.updated", "category", category.id, before=before, after=after
            )
            self._stale()
        return category

    async def delete(self, category_id: uuid.UUID) -> None:
        category = await self.get(category_id)
        in_use = await self.categories.product_count(category.id)
        if in_use:
            raise Problem(
                409,
                "category-in-use",
                f"{in_use} product(s) are in this category; move or archive them first.",
                products=in_use,
            )
        before = snapshot(category, FIELDS)
        await self.categories.delete(category.id)
        await self.audit.record(
            self.actor, "category.deleted", "category", category_id, before=before
        )
        self._stale()

    async def reorder(self, category_ids: list[uuid.UUID]) -> list[Category]:
        categories = await self.categories.in_display_order()
        by_id = {c.id: c for c in categories}
        if len(category_ids) != len(set(category_ids)) or set(category_ids) != set(by_id):
            raise Problem(
                400, "category-order", "Send every category id exactly once, in the wanted order."
            )
        before = [str(c.id) for c in categories]
        for position, category_id in enumerate(category_ids):
            by_id[category_id].display_order = position
        await self.session.flush()
        after = [str(i) for i in category_ids]
        await self.audit.record(
            self.actor,
            "category.reordered",
            "category",
            "*",
            before={"order": before},
            after={"order": after},
        )
        self._stale()
        return [by_id[i] for i in category_ids]
