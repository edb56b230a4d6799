"""Category queries."""

from __future__ import annotations

import uuid

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import func, select

from catalog.models import Category, Product


class CategoryRepository(SQLAlchemyAsyncRepository[Category]):
    model_type = Category

    async def in_display_order(self) -> list[Category]:
        rows = await self.session.scalars(
            select(Category).order_by(
                Category.display_order, func.lower(Category.name), Category.id
            )
        )
        return list(rows)

    async def taken(
        self,
        *,
        slug: str | None = None,
        name: str | None = None,
        excluding: uuid.UUID | None = None,
    ) -> bool:
        stmt = select(Category.id)
        if slug is not None:
            stmt = stmt.where(func.lower(Category.slug) == slug.lower())
        if name is not None:
            stmt = stmt.where(func.lower(Category.name) == name.lower())
        if excluding is not None:
            stmt = stmt.where(Category.id != excluding)
        return (await self.session.scalar(stmt.limit(1))) is not None

    async def next_display_order(self) -> int:
        current = await self.session.scalar(select(func.max(Category.display_order)))
        return 0 if current is None else int(current) + 1

    async def product_count(self, category_id: uuid.UUID) -> int:
        count = await self.session.scalar(
            select(func.count()).select_from(Product).where(Product.category_id == category_id)
        )
        return int(count or 0)
