"""Ember catalog: categories, products and their images, stock and reservations, search.

Shoppers read products, categories and search results (served from Redis, invalidated at
once by any write that changes what they see; availability is shown as in stock, low stock or
sold out, never as counts). Admins manage the catalog, images and on-hand stock; every admin
write is audited, and admins read the audit log. Checkout reserves stock through the internal
API: all lines of an order or none, never oversold.

Run: ``uvicorn --factory catalog.app:create_app``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
from ember_shared.app import ServiceSpec, create_service_app, redis_client
from ember_shared.db import engine_options, make_engine
from ember_shared.settings import ServiceSettings, service_settings
from ember_shared.tracing import instrument_engine
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.openapi.spec import Components, OpenAPI, Schema, SecurityScheme
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from catalog import events
from catalog.audit.controllers import AdminAuditLogController
from catalog.cache import REDIS_DOWN, CatalogCache
from catalog.categories import schemas as category_schemas
from catalog.categories.controllers import AdminCategoryController, ShopperCategoryController
from catalog.deps import dependencies
from catalog.inventory import schemas as inventory_schemas
from catalog.inventory.controllers import AdminInventoryController, InternalCatalogController
from catalog.inventory.services import keeper_provider
from catalog.media.store import CloudinaryStore, media_store
from catalog.metrics import reservations_probe
from catalog.models import Base
from catalog.products import schemas as product_schemas
from catalog.products.controllers import (
    AdminProductController,
    ShopperProductController,
    upload_image_handler,
)
from catalog.products.repositories import SEARCH_SETTINGS, SEARCH_SETTINGS_OPTION
from catalog.settings import CatalogSettings, load_settings
from catalog.sweeper import sweeper_lifespan
from catalog.variants.controllers import AdminVariantController

#: How long a shutdown waits for the cache guard to stop once cancelled.
GUARD_STOP_TIMEOUT_S = 5.0


def _strict_structs() -> dict[str, type[msgspec.Struct]]:
    """Request bodies that refuse unknown members, by name."""
    found: dict[str, type[msgspec.Struct]] = {}
    for module in (category_schemas, inventory_schemas, product_schemas):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, msgspec.Struct)
                and value.__struct_config__.forbid_unknown_fields
            ):
                found[value.__name__] = value
    return found


def _document_strict_bodies(app: Litestar) -> None:
    """Say ``additionalProperties: false`` where the body refuses unknown members (Litestar's
    schema does not), so clients and fuzzers know an extra member is an error."""
    if app.openapi_config is None:
        return
    openapi: OpenAPI = app.plugins.get("OpenAPIPlugin").provide_openapi()  # type: ignore[attr-defined]
    strict = _strict_structs()
    schemas = (
        openapi.components.schemas if openapi.components and openapi.components.schemas else {}
    )
    for name, schema in schemas.items():
        if isinstance(schema, Schema) and name.rsplit("_", 1)[-1] in strict:
            schema.additional_properties = False


def _configure(config: AppConfig) -> None:
    _document_service_token(config)
    config.on_startup = [*config.on_startup, _document_strict_bodies]


def _document_service_token(config: AppConfig) -> None:
    if config.openapi_config is None:
        return
    components = config.openapi_config.components
    if isinstance(components, list):  # pragma: no cover - we always pass one Components
        return
    components = components or Components()
    schemes = dict(components.security_schemes or {})
    schemes["ServiceToken"] = SecurityScheme(
        type="apiKey",
        name="X-Service-Token",
        security_scheme_in="header",
        description="The shared credential of Ember's services (internal routes only).",
    )
    components.security_schemes = schemes
    config.openapi_config.components = components


def search_engine(service: ServiceSettings, catalog: CatalogSettings) -> AsyncEngine:
    """The search's pool: its connections are opened with the search's settings
    (``SEARCH_SETTINGS``: generic plans, table scans from the first page), so a search on them
    needs no transaction to set them (``ProductReads.generic_plans``). Only searches use it:
    the same settings on the service's pool would change other statements' plans."""
    connect_args = engine_options(service).get("connect_args", {})
    server_settings = {**connect_args.get("server_settings", {}), **SEARCH_SETTINGS}
    engine = make_engine(
        service,
        pool_size=catalog.search_pool_size,
        max_overflow=0,
        connect_args={**connect_args, "server_settings": server_settings},
    )
    instrument_engine(engine)
    return engine


def create_app(settings: CatalogSettings | None = None) -> Litestar:
    service = service_settings("catalog")
    catalog = load_settings(settings, service)
    # The cache exists before the app starts so event handlers and the sweeper can use it
    # from their first call.
    cache_redis = redis_client(service)
    cache = CatalogCache(
        cache_redis, ttl_seconds=catalog.cache_ttl_seconds, lock_ms=catalog.cache_lock_ms
    )
    store = media_store(catalog)

    @contextlib.asynccontextmanager
    async def catalog_resources(app: Litestar) -> AsyncIterator[None]:
        app.state.catalog_settings = catalog
        app.state.catalog_cache = cache
        # The read path only reads, on app.state.db_reads (autocommit): a write between its
        # statements moves the cache generation, so an answer mixing before and after is
        # never stored.
        app.state.catalog_sessions = async_sessionmaker(app.state.db_engine, expire_on_commit=False)
        searches = app.state.search_engine = search_engine(service, catalog)
        app.state.search_sessions = async_sessionmaker(
            searches.execution_options(
                isolation_level="AUTOCOMMIT", **{SEARCH_SETTINGS_OPTION: True}
            ),
            expire_on_commit=False,
        )
        app.state.media_store = store
        app.state.catalog_bypass_allowed = service.app.is_local
        # Checked against Redis before the first request, then watched (see catalog.cache).
        try:
            await cache.resync()
        except REDIS_DOWN as exc:
            cache.unreachable(exc)
        guard = asyncio.create_task(cache.guard(catalog.cache_guard_interval_ms / 1000))
        try:
            yield
        finally:
            guard.cancel()
            # Bounded: a shutdown must end even if the guard were stuck in a Redis call.
            await asyncio.wait({guard}, timeout=GUARD_STOP_TIMEOUT_S)
            await cache.settle()
            if isinstance(store, CloudinaryStore):
                await store.aclose()
            await cache_redis.aclose()
            await searches.dispose()

    return create_service_app(
        ServiceSpec(
            name="catalog",
            title="Ember catalog",
            description=__doc__ or "",
            route_handlers=[
                ShopperProductController,
                ShopperCategoryController,
                AdminProductController,
                AdminVariantController,
                AdminCategoryController,
                AdminInventoryController,
                AdminAuditLogController,
                InternalCatalogController,
                upload_image_handler(catalog.max_upload_bytes),
            ],
            base=Base,
            events=events.handlers,
            event_dependencies={"keeper": keeper_provider(cache, catalog)},
            dependencies=dependencies(),
            lifespans=[catalog_resources, sweeper_lifespan],
            configure=_configure,
            metrics=[reservations_probe],
        ),
        service,
    )
