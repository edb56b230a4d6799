"""Stock routes: the admin inventory, and the internal API cart and checkout call."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from ember_shared.auth import Principal, requires_admin, requires_service
from ember_shared.contracts.catalog import (
    LookupRequest,
    LookupResponse,
    ReservationOut,
    ReservationRequest,
)
from ember_shared.problems import not_found
from litestar import Controller, Response, get, post, put
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.cache import CatalogCache
from catalog.fields import DEFAULT_PAGE_SIZE, MAX_PAGE, MAX_PAGE_SIZE
from catalog.inventory.schemas import (
    InventoryList,
    InventoryPage,
    InventoryRow,
    StockSet,
    StockSetMany,
)
from catalog.inventory.services import InventoryAdmin, StockKeeper, reservation_out
from catalog.settings import CatalogSettings


def provide_inventory_admin(
    db_session: AsyncSession,
    cache: CatalogCache,
    catalog_settings: CatalogSettings,
    principal: Principal,
) -> InventoryAdmin:
    return InventoryAdmin(db_session, cache, catalog_settings, principal)


def provide_stock_keeper(
    db_session: AsyncSession, cache: CatalogCache, catalog_settings: CatalogSettings
) -> StockKeeper:
    return StockKeeper(db_session, cache, catalog_settings)


async def provide_stock_reader(
    state: State, cache: CatalogCache, catalog_settings: CatalogSettings
) -> AsyncIterator[StockKeeper]:
    """A keeper on the read path's autocommit session, for a route that only reads with one
    statement (the lookup, once per cart write): no BEGIN and COMMIT round trips around it."""
    async with state.db_reads() as session:
        yield StockKeeper(session, cache, catalog_settings)


class AdminInventoryController(Controller):
    path = "/api/admin/inventory"
    tags = ["admin: inventory"]
    guards = [requires_admin]
    security = [{"BearerToken": []}]
    dependencies = {"admin": Provide(provide_inventory_admin, sync_to_thread=False)}

    @get("/", summary="Stock of every product (on hand, reserved, available), lowest first")
    async def list_inventory(
        self,
        admin: InventoryAdmin,
        page: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 1,
        page_size: Annotated[int, Parameter(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        low: Annotated[
            bool, Parameter(description="Only products at or below the low-stock level.")
        ] = False,
        q: Annotated[str | None, Parameter(max_length=100, pattern=r"^[^\x00]*$")] = None,
    ) -> InventoryPage:
        items, total = await admin.page(page=page, page_size=page_size, low_only=low, q=q)
        return InventoryPage.of(items, total=total, page=page, page_size=page_size)

    @put("/", summary="Set the on-hand stock of several products (all or none)")
    async def set_many(
        self,
        data: StockSetMany,
        admin: InventoryAdmin,
    ) -> InventoryList:
        rows = await admin.set_on_hand(
            [(line.variant_id or line.product_id, line.on_hand) for line in data.items],
            products={line.variant_id: line.product_id for line in data.items if line.variant_id},
        )
        return InventoryList(items=rows)

    @put("/{product_id:uuid}", summary="Set the on-hand stock of one product")
    async def set_one(
        self,
        product_id: uuid.UUID,
        data: StockSet,
        admin: InventoryAdmin,
    ) -> InventoryRow:
        rows = await admin.set_on_hand([(product_id, data.on_hand)])
        return rows[0]

    @put("/variants/{variant_id:uuid}", summary="Set the on-hand stock of one variant")
    async def set_variant(
        self,
        variant_id: uuid.UUID,
        data: StockSet,
        admin: InventoryAdmin,
    ) -> InventoryRow:
        rows = await admin.set_on_hand([(variant_id, data.on_hand)])
        return rows[0]


class InternalCatalogController(Controller):
    """For Ember services only (``X-Service-Token``); never routed by Caddy."""

    path = "/internal/catalog"
    tags = ["internal"]
    guards = [requires_service]
    security = [{"ServiceToken": []}]
    dependencies = {"keeper": Provide(provide_stock_keeper, sync_to_thread=False)}

    @post(
        "/products/lookup",
        summary="Current price and availability of products",
        status_code=200,
        dependencies={"reader": Provide(provide_stock_reader)},
    )
    async def lookup(
        self,
        data: LookupRequest,
        reader: StockKeeper,
    ) -> LookupResponse:
        products, variants = await reader.lookup(data.product_ids, data.variant_ids)
        return LookupResponse(products=products, variants=variants)

    @post(
        "/reservations",
        summary="Reserve every line of an order, or none",
        description=(
            "201 with a new reservation; 200 with the existing one when the order already has one "
            "(idempotent per order_id); 409 with `unavailable` when any line cannot be had."
        ),
        status_code=201,
    )
    async def reserve(
        self,
        data: ReservationRequest,
        keeper: StockKeeper,
    ) -> Response[ReservationOut]:
        reservation, created = await keeper.reserve(data)
        return Response(reservation, status_code=201 if created else 200)

    @get("/reservations/{order_id:uuid}", summary="An order's reservation")
    async def get_reservation(
        self,
        order_id: uuid.UUID,
        keeper: StockKeeper,
    ) -> ReservationOut:
        record = await keeper.get(order_id)
        if record is None:
            raise not_found("reservation", "This order has no reservation.")
        return reservation_out(record)

    @post(
        "/reservations/{order_id:uuid}/release",
        summary="Release an order's reservation (idempotent)",
        description="Answers the reservation as it now is; a sold (committed) one is left as it is.",
        status_code=200,
    )
    async def release(
        self,
        order_id: uuid.UUID,
        keeper: StockKeeper,
    ) -> ReservationOut:
        record = await keeper.release(order_id, "requested")
        if record is None:
            raise not_found("reservation", "This order has no reservation.")
        return reservation_out(record)
