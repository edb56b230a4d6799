"""Every variant query."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.models import Inventory, Product, Variant


class VariantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_product(self, product_id: uuid.UUID) -> Product | None:
        """The product, locked: one change to its variants at a time."""
        product: Product | None = await self.session.scalar(
            select(Product).where(Product.id == product_id).with_for_update()
        )
        return product

    async def of_product(self, product_id: uuid.UUID) -> list[Variant]:
        rows = await self.session.scalars(
            select(Variant)
            .where(Variant.product_id == product_id)
            .order_by(Variant.active.desc(), Variant.position, Variant.id)
        )
        return list(rows)

    async def with_stock(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Row[Any]]]:
        """Each product's variants with their stock, those on sale first, in display order."""
        if not product_ids:
            return {}
        rows = await self.session.execute(
            select(
                Variant.id,
                Variant.product_id,
                Variant.sku,
                Variant.option_values,
                Variant.price,
                Variant.weight_grams,
                Variant.active,
                Variant.position,
                Variant.updated_at,
                func.coalesce(Inventory.on_hand, 0).label("on_hand"),
                func.coalesce(Inventory.reserved, 0).label("reserved"),
            )
            .outerjoin(Inventory, Inventory.variant_id == Variant.id)
            .where(Variant.product_id.in_(product_ids))
            .order_by(Variant.product_id, Variant.active.desc(), Variant.position, Variant.id)
        )
        found: dict[uuid.UUID, list[Any]] = {pid: [] for pid in product_ids}
        for row in rows:
            found[row.product_id].append(row)
        return found

    async def on_sale(self, product_id: uuid.UUID) -> Sequence[Row[Any]]:
        """The variants a shopper may pick, in display order, with what is sellable now."""
        rows: Sequence[Any] = (
            await self.session.execute(
                select(
                    Variant.id,
                    Variant.sku,
                    Variant.option_values,
                    Variant.price,
                    Variant.weight_grams,
                    func.coalesce(Inventory.on_hand - Inventory.reserved, 0).label("available"),
                )
                .outerjoin(Inventory, Inventory.variant_id == Variant.id)
                .where(Variant.product_id == product_id, Variant.active.is_(True))
                .order_by(Variant.position, Variant.id)
            )
        ).all()
        return rows

    async def skus_elsewhere(self, skus: Sequence[str], product_id: uuid.UUID) -> list[str]:
        """Those of ``skus`` (case-insensitively) another product's variants have."""
        if not skus:
            return []
        rows = await self.session.scalars(
            select(Variant.sku).where(
                func.lower(Variant.sku).in_([s.lower() for s in skus]),
                Variant.product_id != product_id,
            )
        )
        return list(rows)

    async def sku_taken(self, sku: str) -> bool:
        found = await self.session.scalar(
            select(Variant.id).where(func.lower(Variant.sku) == sku.lower()).limit(1)
        )
        return found is not None

    async def sync_default(self, product_id: uuid.UUID, **values: Any) -> None:
        """Give a product's default variant (the one with its id) ``values``."""
        await self.session.execute(
            update(Variant)
            .execution_options(synchronize_session=False)
            .where(Variant.id == product_id)
            .values(updated_at=func.now(), **values)
        )
