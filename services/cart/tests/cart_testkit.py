"""Helpers of the cart's tests (a module name of its own: every service has a conftest.py).

FAKE CATALOG: ``FakeCatalog`` stands for catalog's contract (``POST
/internal/catalog/products/lookup``, body ``{"product_ids": [...]}`` <= 100, answer
``{"products": [{id, slug, name, price, currency, active, availability, available,
image_url}]}``, unknown ids absent, service credential required). It is a real Litestar app served
by uvicorn on a free port, so the cart's real HTTP client talks to it over the network: nothing
is mocked. ``test_cart_catalog_integration.py`` runs the cart against the real catalog app too.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
from ember_shared.contracts.catalog import LOOKUP_PATH, LookupProduct, LookupResponse
from litestar import Litestar, Request, Response, post

BASE_URL = "http://shop.test"


# --- the stand-in for catalog -----------------------------------------------------------


class LookupBody(msgspec.Struct, forbid_unknown_fields=True):
    # Unbounded, unlike the contract's LookupRequest: the fake answers 400 itself to a page that
    # is too long, so a test sees the cart's paging, not a decoding refusal.
    product_ids: list[uuid.UUID]
    variant_ids: list[uuid.UUID] = msgspec.field(default_factory=list)


@dataclass
class FakeCatalog:
    """In-memory products behind a real HTTP lookup route. ``mode`` is ``ok``, ``error``
    (answers 503) or ``slow`` (answers after longer than the cart's timeout)."""

    url: str = ""
    products: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    variants: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    mode: str = "ok"
    calls: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        *,
        price: int = 1250,
        available: int = 20,
        active: bool = True,
        name: str | None = None,
        currency: str = "USD",
    ) -> uuid.UUID:
        product_id = uuid.uuid4()
        slug = f"coffee-{product_id.hex[:8]}"
        self.products[product_id] = {
            "id": str(product_id),
            "slug": slug,
            "name": name or f"Coffee {product_id.hex[:6]}",
            "price": price,
            "currency": currency,
            "active": active,
            "available": available,
            "image_url": f"/media/{slug}.jpg",
        }
        return product_id

    def update(self, product_id: uuid.UUID, **changes: Any) -> None:
        self.products[product_id].update(changes)

    def add_variant(
        self, product_id: uuid.UUID, title: str, *, price: int = 2400, available: int = 20
    ) -> uuid.UUID:
        """Another variant of a product (``title``: its option values joined)."""
        variant_id = uuid.uuid4()
        self.variants[variant_id] = {
            **self.products[product_id],
            "price": price,
            "available": available,
            "variant_id": str(variant_id),
            "sku": f"sku-{variant_id.hex[:8]}",
            "option_values": title.split(" / "),
            "variant_title": title,
        }
        return variant_id

    def answer(self, ids: list[uuid.UUID], *, variants: bool = False) -> list[LookupProduct]:
        """The products (or variants) in catalog's own answer shape (a product the fake holds
        that the contract would refuse fails here, not in the cart)."""
        found = []
        for product_id in ids:
            product = (self.variants if variants else self.products).get(product_id)
            if product is None:
                continue
            available = product["available"]
            availability = (
                "sold_out" if available <= 0 else "low_stock" if available <= 5 else "in_stock"
            )
            found.append(msgspec.convert({**product, "availability": availability}, LookupProduct))
        return found

    def app(self) -> Litestar:
        catalog = self

        @post(LOOKUP_PATH, status_code=200)
        async def lookup(request: Request[Any, Any, Any], data: LookupBody) -> Any:
            catalog.calls.append(
                {
                    "ids": data.product_ids,
                    "correlation_id": request.headers.get("x-correlation-id"),
                }
            )
            if request.headers.get("x-service-token") != os.environ["INTERNAL_SERVICE_TOKEN"]:
                return _status(401)
            if len(data.product_ids) > 100:
                return _status(400)
            if catalog.mode == "error":
                return _status(503)
            if catalog.mode == "slow":
                await asyncio.sleep(3)
            return LookupResponse(
                products=catalog.answer(data.product_ids),
                variants=catalog.answer(data.variant_ids, variants=True),
            )

        return Litestar([lookup])


def _status(code: int) -> Any:
    return Response({"status": code}, status_code=code)


class Browser:
    """One shopper's browser: its own cookie jar, optionally a bearer token."""

    def __init__(self, app: Litestar, token: str | None = None) -> None:
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        self.token = token

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    @property
    def cart_cookie(self) -> str | None:
        return self.client.cookies.get("ember_cart")

    async def get(self, path: str = "/api/cart", **kw: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.headers(kw.pop("headers", None)), **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.client.post(
            path, json=json, headers=self.headers(kw.pop("headers", None)), **kw
        )

    async def patch(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.client.patch(
            path, json=json, headers=self.headers(kw.pop("headers", None)), **kw
        )

    async def delete(self, path: str = "/api/cart", **kw: Any) -> httpx.Response:
        return await self.client.delete(path, headers=self.headers(kw.pop("headers", None)), **kw)

    async def add(self, product_id: uuid.UUID, quantity: int = 1) -> httpx.Response:
        return await self.post(
            "/api/cart/items", {"product_id": str(product_id), "quantity": quantity}
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def set_cookie_headers(response: httpx.Response, name: str = "ember_cart") -> list[str]:
    return [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]


def problem(response: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    """Assert an RFC 9457 answer with this status (and type slug) and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if kind is not None:
        assert body["type"].endswith("/" + kind), body
    assert "Traceback" not in response.text
    return body


def line_of(cart: dict[str, Any], product_id: uuid.UUID) -> dict[str, Any]:
    for line in cart["lines"]:
        if line["product_id"] == str(product_id):
            return line
    raise AssertionError(f"{product_id} not in cart {cart}")
