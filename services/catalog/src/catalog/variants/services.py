"""Variant rules: a product's options and the variants it sells, what the product page shows of
them, and a product's default variant (the one with its id: a product sold without options)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from ember_shared.auth import Principal
from ember_shared.ids import new_id
from ember_shared.problems import Problem, not_found
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.audit.recorder import AuditedAdmin
from catalog.cache import CatalogCache
from catalog.fields import availability_of, variant_title
from catalog.inventory.repositories import InventoryRepository
from catalog.inventory.services import set_counted
from catalog.models import Product, Variant
from catalog.settings import CatalogSettings
from catalog.variants.repositories import VariantRepository
from catalog.variants.schemas import (
    AdminVariant,
    AdminVariants,
    ProductOption,
    VariantOut,
    VariantsSet,
)

VARIANT_FIELDS = ("id", "sku", "option_values", "price", "weight_grams", "active", "position")


def options_of(product: Any) -> list[ProductOption]:
    return [ProductOption(name=o["name"], values=list(o["values"])) for o in product.options or []]


def variants_out(rows: Sequence[Any], low_stock: int) -> list[VariantOut]:
    return [
        VariantOut(
            id=row.id,
            sku=row.sku,
            option_values=list(row.option_values),
            title=variant_title(row.option_values),
            price=row.price,
            weight_grams=row.weight_grams,
            availability=availability_of(row.available, low_stock),
        )
        for row in rows
    ]


def admin_variants(rows: Sequence[Any], low_stock: int) -> list[AdminVariant]:
    return [
        AdminVariant(
            id=row.id,
            sku=row.sku,
            option_values=list(row.option_values),
            title=variant_title(row.option_values),
            price=row.price,
            weight_grams=row.weight_grams,
            active=row.active,
            position=row.position,
            on_hand=row.on_hand,
            reserved=row.reserved,
            available=row.on_hand - row.reserved,
            availability=availability_of(row.on_hand - row.reserved, low_stock),
            updated_at=row.updated_at,
        )
        for row in rows
    ]


async def default_sku(variants: VariantRepository, slug: str, product_id: uuid.UUID) -> str:
    """A new product's default SKU: its slug, unless a variant already has that SKU."""
    if not await variants.sku_taken(slug):
        return slug
    return f"{slug}-{product_id.hex[-12:]}"


async def add_default_variant(
    session: AsyncSession, product: Product, on_hand: int, *, sku: str | None = None
) -> Variant:
    """Give a new product its default variant (with the product's id) and its stock."""
    variants = VariantRepository(session)
    variant = Variant(
        id=product.id,
        product_id=product.id,
        sku=sku or await default_sku(variants, product.slug, product.id),
        price=product.price,
        weight_grams=product.weight_grams,
        active=True,
        position=0,
        option_values=[],
    )
    session.add(variant)
    await session.flush()
    await InventoryRepository(session).create(variant.id, product.id, on_hand)
    return variant


def _check(product: Product, data: VariantsSet, existing: dict[uuid.UUID, Variant]) -> None:
    names = [o.name.strip().lower() for o in data.options]
    if len(set(names)) != len(names):
        raise Problem(400, "invalid-options", "Name each option once.")
    for option in data.options:
        if len({v.strip().lower() for v in option.values}) != len(option.values):
            raise Problem(400, "invalid-options", f"Option {option.name!r} repeats a value.")
    if not data.options and (
        len(data.variants) != 1 or data.variants[0].id not in (None, product.id)
    ):
        raise Problem(
            400,
            "invalid-variants",
            "A product without options sells one variant: its default (the product's id).",
        )
    _check_variants(data, existing)


def _check_variants(data: VariantsSet, existing: dict[uuid.UUID, Variant]) -> None:
    combos: set[tuple[str, ...]] = set()
    skus: set[str] = set()
    ids: set[uuid.UUID] = set()
    for variant in data.variants:
        if len(variant.option_values) != len(data.options):
            raise Problem(
                400,
                "invalid-variants",
                f"Variant {variant.sku!r} needs one value per option ({len(data.options)}).",
            )
        for option, value in zip(data.options, variant.option_values, strict=True):
            if value not in option.values:
                raise Problem(
                    400,
                    "invalid-variants",
                    f"Variant {variant.sku!r}: {value!r} is not a value of {option.name!r}.",
                )
        combo = tuple(variant.option_values)
        if combo in combos:
            raise Problem(400, "duplicate-variant", f"Two variants are {' / '.join(combo)!r}.")
        combos.add(combo)
        if variant.sku.lower() in skus:
            raise Problem(400, "duplicate-sku", f"Two variants have the SKU {variant.sku!r}.")
        skus.add(variant.sku.lower())
        if variant.id is not None:
            if variant.id in ids:
                raise Problem(400, "invalid-variants", f"Variant {variant.id} is listed twice.")
            ids.add(variant.id)
            if variant.id not in existing:
                raise Problem(400, "unknown-variant", f"This product has no variant {variant.id}.")


class VariantAdmin(AuditedAdmin):
    """Admin changes to a product's options and variants, audited in the same transaction."""

    def __init__(
        self,
        session: AsyncSession,
        cache: CatalogCache,
        settings: CatalogSettings,
        actor: Principal | None,
    ) -> None:
        super().__init__(session, cache, settings, actor)
        self.variants = VariantRepository(session)
        self.inventory = InventoryRepository(session)

    async def view(self, product_id: uuid.UUID) -> AdminVariants:
        product = await self.session.get(Product, product_id)
        if product is None:
            raise not_found("product")
        rows = (await self.variants.with_stock([product_id]))[product_id]
        return AdminVariants(
            product_id=product_id,
            options=options_of(product),
            variants=admin_variants(rows, self.settings.low_stock),
        )

    async def put(self, product_id: uuid.UUID, data: VariantsSet) -> AdminVariants:
        """Set a product's options and the variants it sells (see ``VariantsSet``)."""
        product = await self.variants.lock_product(product_id)
        if product is None:
            raise not_found("product")
        current = await self.variants.of_product(product_id)
        existing = {v.id: v for v in current}
        _check(product, data, existing)
        taken = await self.variants.skus_elsewhere([v.sku for v in data.variants], product_id)
        if taken:
            raise Problem(
                409, "duplicate-sku", f"Another product already has the SKU {taken[0]!r}."
            )
        before = {
            "options": product.options,
            "variants": [_snapshot(v) for v in current],
        }
        wanted = list(data.variants)
        if not data.options:
            wanted = [msgspec.structs.replace(wanted[0], id=product_id)]
        listed = {v.id for v in wanted if v.id is not None}
        # A SKU moving between two of this product's variants would meet itself in the unique
        # index halfway: the changed ones first take a placeholder no SKU can be (the pattern
        # refuses "~").
        renamed = [
            existing[v.id]
            for v in wanted
            if v.id is not None and existing[v.id].sku.lower() != v.sku.lower()
        ]
        for variant in renamed:
            variant.sku = f"~{variant.id}"
        for variant in current:
            if variant.id not in listed:
                variant.active = False
        await self.session.flush()
        for position, item in enumerate(wanted):
            if item.id is None:
                variant = Variant(
                    id=new_id(),
                    product_id=product_id,
                    sku=item.sku,
                    price=item.price,
                    weight_grams=item.weight_grams,
                    active=item.active,
                    position=position,
                    option_values=list(item.option_values),
                )
                self.session.add(variant)
                await self.session.flush()
                await self.inventory.create(variant.id, product_id, item.on_hand or 0)
                continue
            variant = existing[item.id]
            variant.sku = item.sku
            variant.price = item.price
            variant.weight_grams = item.weight_grams
            variant.active = item.active
            variant.position = position
            variant.option_values = list(item.option_values)
            if item.on_hand is not None:
                await self._set_on_hand(variant.id, item.on_hand)
        on_sale = [v for v in wanted if v.active] or wanted
        product.options = [{"name": o.name.strip(), "values": list(o.values)} for o in data.options]
        product.price = min(v.price for v in on_sale)
        if not data.options:
            product.weight_grams = wanted[0].weight_grams
        await self.session.flush()
        after_rows = await self.variants.of_product(product_id)
        await self.audit.record(
            self.actor,
            "product.variants_set",
            "product",
            product_id,
            before=before,
            after={"options": product.options, "variants": [_snapshot(v) for v in after_rows]},
        )
        self.cache.invalidate_on_commit(self.session, product_ids=[product_id], lists=True)
        return await self.view(product_id)

    async def _set_on_hand(self, variant_id: uuid.UUID, on_hand: int) -> None:
        before = await self.inventory.lock(variant_id)
        # Every variant is made with its stock row.
        assert before is not None
        if before.on_hand == on_hand:
            return
        await set_counted(
            self.inventory, self.audit, self.actor, variant_id, before, on_hand, held="variant"
        )


def _snapshot(variant: Variant) -> dict[str, Any]:
    return {
        name: str(value) if isinstance(value, uuid.UUID) else value
        for name in VARIANT_FIELDS
        for value in [getattr(variant, name)]
    }
