"""Variant routes: a product's options and variants (admin)."""

from __future__ import annotations

import uuid

from ember_shared.auth import Principal, requires_admin
from litestar import Controller, get, put
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.cache import CatalogCache
from catalog.settings import CatalogSettings
from catalog.variants.schemas import AdminVariants, VariantsSet
from catalog.variants.services import VariantAdmin


def provide_variant_admin(
    db_session: AsyncSession,
    cache: CatalogCache,
    catalog_settings: CatalogSettings,
    principal: Principal,
) -> VariantAdmin:
    return VariantAdmin(db_session, cache, catalog_settings, principal)


class AdminVariantController(Controller):
    path = "/api/admin/products/{product_id:uuid}/variants"
    tags = ["admin: products"]
    guards = [requires_admin]
    security = [{"BearerToken": []}]
    dependencies = {"admin": Provide(provide_variant_admin, sync_to_thread=False)}

    @get("/", summary="A product's options and variants, with stock per variant")
    async def get_variants(self, product_id: uuid.UUID, admin: VariantAdmin) -> AdminVariants:
        return await admin.view(product_id)

    @put(
        "/",
        summary="Set a product's options and the variants it sells",
        description=(
            "Lists every variant to sell, in display order: those with an `id` are changed, "
            "those without are made. Variants not listed stop being sold (kept: orders name "
            "them). Without options a product sells one variant, its default (the product's id)."
        ),
    )
    async def put_variants(
        self, product_id: uuid.UUID, data: VariantsSet, admin: VariantAdmin
    ) -> AdminVariants:
        return await admin.put(product_id, data)
