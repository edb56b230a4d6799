"""Calls to the services checkout needs an answer from now: cart (the lines), catalog (prices
and stock) and identity (a saved address). Each speaks its provider's structs in
``ember_shared.contracts`` (the ones the provider serves), with the service credential and the
correlation id; any failure to get an answer is a 503 problem.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import httpx
import msgspec
import structlog
from ember_shared.contracts.cart import RESOLVE_PATH, ResolvedCart, ResolvedLine, ResolveRequest
from ember_shared.contracts.catalog import (
    LOOKUP_PATH,
    RESERVATIONS_PATH,
    InsufficientStock,
    LookupProduct,
    LookupRequest,
    LookupResponse,
    ReservationLineIn,
    ReservationOut,
    ReservationRequest,
    UnavailableLine,
    release_path,
)
from ember_shared.contracts.identity import Address, saved_address_path
from ember_shared.http import service_client
from ember_shared.problems import Problem

log = structlog.get_logger("checkout.upstream")


@dataclass
class StockUnavailable(Exception):
    lines: list[UnavailableLine]
    #: With a priced reservation: the variants of those lines that catalog knows.
    variants: list[LookupProduct] = field(default_factory=list)


def _unavailable(service: str, exc: Exception | None = None, status: int | None = None) -> Problem:
    log.warning(
        "upstream_unavailable", service=service, error=str(exc) if exc else None, status=status
    )
    return Problem(
        503,
        f"{service}-unavailable",
        f"The {service} service could not be reached. Try again in a moment.",
        headers={"Retry-After": "2"},
    )


class Upstream:
    """The three internal clients, opened with the app and closed with it."""

    def __init__(self, timeout_ms: int) -> None:
        timeout = httpx.Timeout(timeout_ms / 1000, connect=min(2.0, timeout_ms / 1000))
        self.catalog = service_client("catalog", timeout=timeout)
        self.cart = service_client("cart", timeout=timeout)
        self.identity = service_client("identity", timeout=timeout)

    async def aclose(self) -> None:
        for client in (self.catalog, self.cart, self.identity):
            await client.aclose()

    async def _post(
        self, client: httpx.AsyncClient, service: str, path: str, body: msgspec.Struct
    ) -> httpx.Response:
        try:
            return await client.post(
                path,
                content=msgspec.json.encode(body),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise _unavailable(service, exc) from exc

    # --- cart ---------------------------------------------------------------------------

    async def resolve_cart(self, user_id: uuid.UUID | None, cart_token: str | None) -> ResolvedCart:
        response = await self._post(
            self.cart, "cart", RESOLVE_PATH, ResolveRequest(user_id=user_id, cart_token=cart_token)
        )
        if response.status_code != 200:
            raise _unavailable("cart", status=response.status_code)
        try:
            return msgspec.json.decode(response.content, type=ResolvedCart)
        except msgspec.ValidationError as exc:
            raise _unavailable("cart", exc) from exc

    # --- catalog ------------------------------------------------------------------------

    async def _lookup(self, request: LookupRequest) -> LookupResponse:
        response = await self._post(self.catalog, "catalog", LOOKUP_PATH, request)
        if response.status_code != 200:
            raise _unavailable("catalog", status=response.status_code)
        try:
            return msgspec.json.decode(response.content, type=LookupResponse)
        except msgspec.ValidationError as exc:
            raise _unavailable("catalog", exc) from exc

    async def lookup_products(self, product_ids: list[uuid.UUID]) -> dict[uuid.UUID, LookupProduct]:
        found = await self._lookup(LookupRequest(product_ids=product_ids))
        return {product.id: product for product in found.products}

    async def lookup_lines(
        self, lines: list[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[uuid.UUID, LookupProduct]:
        """What catalog sells now of each ``(product id, variant id)``, by variant id (unknown
        ones absent, and so is a variant of another product than the one named): price, stock,
        SKU and option values are the variant's own."""
        found = await self._lookup(LookupRequest(product_ids=[], variant_ids=[v for _, v in lines]))
        asked = {v: p for p, v in lines}
        return {
            v.variant_id: v
            for v in found.variants
            if v.variant_id is not None and asked.get(v.variant_id) == v.id
        }

    async def lookup_variant(
        self, product_id: uuid.UUID, variant_id: uuid.UUID
    ) -> tuple[LookupProduct | None, LookupProduct | None]:
        """A product (as its default variant) and one of its variants, in one call; a variant
        of another product is answered as unknown (None)."""
        found = await self._lookup(
            LookupRequest(product_ids=[product_id], variant_ids=[variant_id])
        )
        product = next((p for p in found.products if p.id == product_id), None)
        variant = next(
            (v for v in found.variants if v.variant_id == variant_id and v.id == product_id), None
        )
        return product, variant

    async def reserve(
        self,
        order_id: uuid.UUID,
        lines: list[ResolvedLine],
        ttl_seconds: int,
        *,
        priced: bool = False,
    ) -> ReservationOut:
        """Every line held, or none (:class:`StockUnavailable`); ``priced``: catalog answers each
        line's variant too (as the lookup would), so no lookup is needed before."""
        body = ReservationRequest(
            order_id=order_id,
            lines=[
                ReservationLineIn(
                    product_id=ln.product_id, variant_id=ln.variant_id, quantity=ln.quantity
                )
                for ln in lines
            ],
            ttl_seconds=ttl_seconds,
            priced=priced,
        )
        response = await self._post(self.catalog, "catalog", RESERVATIONS_PATH, body)
        if response.status_code in (200, 201):
            try:
                return msgspec.json.decode(response.content, type=ReservationOut)
            except msgspec.DecodeError as exc:
                raise _unavailable("catalog", exc) from exc
        if response.status_code == 409:
            try:
                refusal = msgspec.json.decode(response.content, type=InsufficientStock)
            except msgspec.DecodeError as exc:
                raise _unavailable("catalog", exc) from exc
            raise StockUnavailable(refusal.unavailable, refusal.variants)
        raise _unavailable("catalog", status=response.status_code)

    async def release(self, order_id: uuid.UUID) -> bool:
        """Give the stock back now; best effort (catalog's sweeper releases it at expiry anyway)."""
        try:
            response = await self.catalog.post(release_path(order_id))
        except httpx.HTTPError as exc:
            log.warning("release_failed", order_id=str(order_id), error=str(exc))
            return False
        if response.status_code >= 300:
            log.warning("release_failed", order_id=str(order_id), status=response.status_code)
            return False
        return True

    # --- identity ---------------------------------------------------------------------

    async def saved_address(self, user_id: uuid.UUID, address_id: uuid.UUID) -> Address | None:
        """One of the shopper's saved addresses (checkout has verified who the shopper is; the
        shopper's token stays here); None when it is not theirs."""
        try:
            response = await self.identity.get(saved_address_path(user_id, address_id))
        except httpx.HTTPError as exc:
            raise _unavailable("identity", exc) from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _unavailable("identity", status=response.status_code)
        try:
            return msgspec.json.decode(response.content, type=Address)
        except msgspec.DecodeError as exc:
            raise _unavailable("identity", exc) from exc
