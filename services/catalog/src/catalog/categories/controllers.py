"""Category routes: the public list (cached, in display order) and admin CRUD."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from ember_shared.auth import Principal, requires_admin
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.cache import LISTS_SET, CatalogCache, value_key
from catalog.categories.schemas import (
    CategoryCreate,
    CategoryList,
    CategoryOrder,
    CategoryOut,
    CategoryUpdate,
)
from catalog.categories.services import CategoryAdmin, category_list_body, category_out
from catalog.http import cached_json

CATEGORIES_KEY = value_key("categories")


class ShopperCategoryController(Controller):
    path = "/api/categories"
    tags = ["categories"]

    @get("/", summary="List categories in display order", cache=False)
    async def list_categories(self, request: Request[Any, Any, State]) -> Response[CategoryList]:
        async def build(session: AsyncSession) -> tuple[bytes, Sequence[str]]:
            return await category_list_body(session), (LISTS_SET,)

        return await cached_json(request, CATEGORIES_KEY, build)


class AdminCategoryController(Controller):
    path = "/api/admin/categories"
    tags = ["admin: categories"]
    guards = [requires_admin]
    security = [{"BearerToken": []}]

    @get("/", summary="List categories in display order")
    async def list_categories(
        self, db_session: AsyncSession, cache: CatalogCache, principal: Principal
    ) -> CategoryList:
        categories = await CategoryAdmin(db_session, cache, principal).all()
        return CategoryList(items=[category_out(c) for c in categories])

    @post("/", summary="Create a category", status_code=201)
    async def create_category(
        self,
        data: CategoryCreate,
        db_session: AsyncSession,
        cache: CatalogCache,
        principal: Principal,
    ) -> CategoryOut:
        return category_out(await CategoryAdmin(db_session, cache, principal).create(data))

    @put("/order", summary="Put the categories in a new display order")
    async def reorder_categories(
        self,
        data: CategoryOrder,
        db_session: AsyncSession,
        cache: CatalogCache,
        principal: Principal,
    ) -> CategoryList:
        categories = await CategoryAdmin(db_session, cache, principal).reorder(data.category_ids)
        return CategoryList(items=[category_out(c) for c in categories])

    @get("/{category_id:uuid}", summary="Get a category")
    async def get_category(
        self,
        category_id: uuid.UUID,
        db_session: AsyncSession,
        cache: CatalogCache,
        principal: Principal,
    ) -> CategoryOut:
        return category_out(await CategoryAdmin(db_session, cache, principal).get(category_id))

    @patch("/{category_id:uuid}", summary="Change a category (only the members sent)")
    async def update_category(
        self,
        category_id: uuid.UUID,
        data: CategoryUpdate,
        db_session: AsyncSession,
        cache: CatalogCache,
        principal: Principal,
    ) -> CategoryOut:
        return category_out(
            await CategoryAdmin(db_session, cache, principal).update(category_id, data)
        )

    @delete(
        "/{category_id:uuid}", summary="Delete a category that no product uses", status_code=204
    )
    async def delete_category(
        self,
        category_id: uuid.UUID,
        db_session: AsyncSession,
        cache: CatalogCache,
        principal: Principal,
    ) -> None:
        await CategoryAdmin(db_session, cache, principal).delete(category_id)
