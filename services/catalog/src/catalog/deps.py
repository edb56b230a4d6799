"""Dependencies the catalog's handlers ask for by name."""

from __future__ import annotations

from ember_shared.auth import provide_principal
from litestar.datastructures import State
from litestar.di import Provide

from catalog.cache import CatalogCache
from catalog.settings import CatalogSettings


def provide_cache(state: State) -> CatalogCache:
    cache: CatalogCache = state.catalog_cache
    return cache


def provide_catalog_settings(state: State) -> CatalogSettings:
    settings: CatalogSettings = state.catalog_settings
    return settings


def dependencies() -> dict[str, Provide]:
    return {
        "cache": Provide(provide_cache, sync_to_thread=False),
        "catalog_settings": Provide(provide_catalog_settings, sync_to_thread=False),
        "principal": Provide(provide_principal),
    }
