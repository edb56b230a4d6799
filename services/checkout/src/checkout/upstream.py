"""Calls to the services checkout needs an answer from now: cart (the lines), catalog (prices
and stock) and identity (a saved address). Each speaks the fixed internal contract, with the
service credential and the correlation id; any failure to get an answer is a 503 problem.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import structlog
from ember_shared.events.contracts import Address
from ember_shared.http import service_client
from ember_shared.problems import Problem

log = structlog.get_logger("checkout.upstream")


class CartLineRef(msgspec.Struct, kw_only=True):
    product_id: uuid.UUID
    quantity: int


class ResolvedCart(msgspec.Struct, kw_only=True):
    cart_id: uuid.UUID | None
    lines: list[CartLineRef]


class CatalogProduct(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    slug: str
    name: str
    price: int
    currency: str
    active: bool
    available: int
    availability: str = "in_stock"
    image_url: str | None = None


class LookupResponse(msgspec.Struct, kw_only=True):
    products: list[CatalogProduct]


class Reservation(msgspec.Struct, kw_only=True):
    reservation_id: uuid.UUID
    order_id: uuid.UUID
    expires_at: dt.datetime


class UnavailableLine(msgspec.Struct, kw_only=True):
    product_id: uuid.UUID
    requested: int
    available: int


@dataclass
class StockUnavailable(Exception):
    lines: list[UnavailableLine]


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
        self, client: httpx.AsyncClient, service: str, path: str, body: Any
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
            self.cart,
            "cart",
            "/internal/cart/resolve",
            {"user_id": user_id, "cart_token": cart_token},
        )
        if response.status_code != 200:
            raise _unavailable("cart", status=response.status_code)
        try:
            return msgspec.json.decode(response.content, type=ResolvedCart)
        except msgspec.ValidationError as exc:
            raise _unavailable("cart", exc) from exc

    # --- catalog ------------------------------------------------------------------------

    async def lookup_products(
        self, product_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, CatalogProduct]:
        response = await self._post(
            self.catalog,
            "catalog",
            "/internal/catalog/products/lookup",
            {"product_ids": product_ids},
        )
        if response.status_code != 200:
            raise _unavailable("catalog", status=response.status_code)
        try:
            found = msgspec.json.decode(response.content, type=LookupResponse)
        except msgspec.ValidationError as exc:
            raise _unavailable("catalog", exc) from exc
        return {product.id: product for product in found.products}

    async def reserve(
        self, order_id: uuid.UUID, lines: list[CartLineRef], ttl_seconds: int
    ) -> Reservation:
        body = {
            "order_id": order_id,
            "lines": [{"product_id": line.product_id, "quantity": line.quantity} for line in lines],
            "ttl_seconds": ttl_seconds,
        }
        response = await self._post(self.catalog, "catalog", "/internal/catalog/reservations", body)
        if response.status_code in (200, 201):
            try:
                return msgspec.json.decode(response.content, type=Reservation)
            except msgspec.ValidationError as exc:
                raise _unavailable("catalog", exc) from exc
        if response.status_code == 409:
            try:
                unavailable = msgspec.convert(
                    response.json().get("unavailable") or [], list[UnavailableLine]
                )
            except (ValueError, msgspec.ValidationError) as exc:
                raise _unavailable("catalog", exc) from exc
            raise StockUnavailable(unavailable)
        raise _unavailable("catalog", status=response.status_code)

    async def release(self, order_id: uuid.UUID) -> bool:
        """Give the stock back now; best effort (catalog's sweeper releases it at expiry anyway)."""
        try:
            response = await self.catalog.post(f"/internal/catalog/reservations/{order_id}/release")
        except httpx.HTTPError as exc:
            log.warning("release_failed", order_id=str(order_id), error=str(exc))
            return False
        if response.status_code >= 300:
            log.warning("release_failed", order_id=str(order_id), status=response.status_code)
            return False
        return True

    # --- identity ---------------------------------------------------------------------

    async def saved_address(self, access_token: str, address_id: uuid.UUID) -> Address | None:
        """One of the shopper's saved addresses, read from identity with the shopper's own
        token (identity decides whose addresses those are); None when it is not theirs."""
        try:
            response = await self.identity.get(
                f"/api/user/addresses/{address_id}",
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.HTTPError as exc:
            raise _unavailable("identity", exc) from exc
        if response.status_code in (401, 403):
            raise Problem(
                401,
                "unauthenticated",
                "Sign in again to use a saved address.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if response.status_code in (404, 422):
            return None
        if response.status_code != 200:
            raise _unavailable("identity", status=response.status_code)
        try:
            saved = msgspec.json.decode(response.content, type=SavedAddress)
        except msgspec.ValidationError as exc:
            raise _unavailable("identity", exc) from exc
        return Address(
            name=saved.name,
            line1=saved.line1,
            line2=saved.line2 or "",
            city=saved.city,
            state=saved.state or "",
            postal_code=saved.postal_code,
            country=saved.country.upper(),
            phone=saved.phone or "",
        )


class SavedAddress(msgspec.Struct, kw_only=True):
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str | None = ""
    state: str | None = ""
    phone: str | None = ""
