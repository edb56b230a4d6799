"""What the cart asks catalog: current price and availability of products.

One route, ``POST /internal/catalog/products/lookup`` (service credential; the request and the
answer are :mod:`ember_shared.contracts.catalog`, the very structs catalog serves), with a short
timeout and one retry, through the shared service client (credential and correlation id). When
catalog cannot answer, :class:`CatalogUnavailable` is raised and callers decide: showing a cart
degrades (lines without prices), a write that needs availability is refused with 503.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable

import httpx
import msgspec
import structlog
from ember_shared.contracts.catalog import (
    LOOKUP_MAX_IDS,
    LOOKUP_PATH,
    LookupProduct,
    LookupRequest,
    LookupResponse,
)
from ember_shared.http import service_client

log = structlog.get_logger("cart.catalog")

RETRY_DELAY_S = 0.05


class CatalogUnavailable(Exception):  # a state of catalog, not an error of ours
    """Catalog did not answer (down, too slow, or an answer we cannot read)."""


class CatalogClient:
    def __init__(self, base_url: str, timeout_ms: int) -> None:
        # Retries are ours (below): a timeout or a 5xx deserves one more try, not only a refusal.
        self._client = service_client(
            "catalog", timeout=httpx.Timeout(timeout_ms / 1000), retries=0
        )
        self._client.base_url = httpx.URL(base_url.rstrip("/"))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def lookup(
        self, lines: Iterable[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[uuid.UUID, LookupProduct]:
        """What catalog sells now of each ``(product id, variant id)``, by variant id; unknown
        ones are simply absent. A default variant (the product's id) is asked as its product,
        which every catalog answers; another variant as itself."""
        keys = list(dict.fromkeys(lines))
        products = [p for p, v in keys if p == v]
        variants = [v for p, v in keys if p != v]
        found: dict[uuid.UUID, LookupProduct] = {}
        for start in range(0, len(products), LOOKUP_MAX_IDS):
            page = LookupRequest(product_ids=products[start : start + LOOKUP_MAX_IDS])
            for product in (await self._lookup_page(page)).products:
                found[product.variant_id or product.id] = product
        for start in range(0, len(variants), LOOKUP_MAX_IDS):
            page = LookupRequest(
                product_ids=[], variant_ids=variants[start : start + LOOKUP_MAX_IDS]
            )
            for variant in (await self._lookup_page(page)).variants:
                if variant.variant_id is not None:
                    found[variant.variant_id] = variant
        return found

    async def _lookup_page(self, request: LookupRequest) -> LookupResponse:
        ids = request.product_ids + request.variant_ids
        body = msgspec.json.encode(request)
        last_error = ""
        for attempt in (1, 2):
            try:
                response = await self._client.post(
                    LOOKUP_PATH, content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    try:
                        return msgspec.json.decode(response.content, type=LookupResponse)
                    except msgspec.DecodeError as exc:
                        # A malformed answer will not improve on a retry.
                        log.warning("catalog_lookup_unreadable", error=str(exc))
                        raise CatalogUnavailable("catalog answered something unreadable") from exc
                last_error = f"status {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break
            if attempt == 1:
                await asyncio.sleep(RETRY_DELAY_S)
        log.warning("catalog_lookup_failed", error=last_error, ids=len(ids))
        raise CatalogUnavailable(last_error)
