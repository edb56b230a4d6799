"""Fixtures of the cart's tests: the cart app in-process on the real test database and Redis,
"browsers" (each with its own cookie jar), and a stand-in for catalog's lookup route.

FAKE CATALOG: ``FakeCatalog`` below stands for catalog's contract (``POST
/internal/catalog/products/lookup``, body ``{"product_ids": [...]}`` <= 100, answer
``{"products": [{id, slug, name, price, currency, active, availability, available,
image_url}]}``, unknown ids absent, service credential required). It is a real Litestar app served
by uvicorn on a free port, so the cart's real HTTP client talks to it over the network: nothing
is mocked. ``test_cart_catalog_integration.py`` runs the cart against the real catalog app too.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from litestar import Litestar, Request, post
from sqlalchemy import text

from cart.app import create_app
from cart.settings import CartSettings

BASE_URL = "http://shop.test"


# --- the stand-in for catalog -----------------------------------------------------------


class LookupBody(msgspec.Struct, forbid_unknown_fields=True):
    product_ids: list[uuid.UUID]


@dataclass
class FakeCatalog:
    """In-memory products behind a real HTTP lookup route. ``mode`` is ``ok``, ``error``
    (answers 503) or ``slow`` (answers after longer than the cart's timeout)."""

    url: str = ""
    products: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
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

    def answer(self, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        found = []
        for product_id in ids:
            product = self.products.get(product_id)
            if product is None:
                continue
            available = product["available"]
            availability = (
                "sold_out" if available <= 0 else "low_stock" if available <= 5 else "in_stock"
            )
            found.append({**product, "availability": availability})
        return found

    def app(self) -> Litestar:
        catalog = self

        @post("/internal/catalog/products/lookup", status_code=200)
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
            return {"products": catalog.answer(data.product_ids)}

        return Litestar([lookup])


def _status(code: int) -> Any:
    from litestar import Response

    return Response({"status": code}, status_code=code)


def _serve(app: Litestar) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the fake catalog did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def fake_catalog(ember_env: Any) -> Iterator[FakeCatalog]:
    catalog = FakeCatalog()
    server, thread, url = _serve(catalog.app())
    catalog.url = url
    try:
        yield catalog
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def catalog(fake_catalog: FakeCatalog) -> Iterator[FakeCatalog]:
    """The fake catalog, answering normally at the start and end of every test."""
    fake_catalog.mode = "ok"
    fake_catalog.calls.clear()
    yield fake_catalog
    fake_catalog.mode = "ok"


# --- the cart app -------------------------------------------------------------------------


TEST_CART_SETTINGS = {"catalog_timeout_ms": 300, "sweep_interval_s": 0}


@pytest.fixture(scope="session")
async def cart_app(ember_env: Any, fake_catalog: FakeCatalog) -> AsyncIterator[Litestar]:
    app = create_app(cart=CartSettings(catalog_url=fake_catalog.url, **TEST_CART_SETTINGS))
    # Not AsyncTestClient: it runs the lifespan on a portal thread's loop, so the event runtime's
    # tasks there and the requests here would share one asyncpg pool across two loops.
    # The lifespan runs in a task of its own: its anyio scopes must be left by the task that
    # entered them, and a session fixture's teardown runs in another.
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run())
    await asyncio.wait_for(started.wait(), 30)
    yield app
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.fixture
def limits(cart_app: Litestar) -> Iterator[Any]:
    """Change the cart's limits for one test: ``limits(max_lines=3)``."""
    original = cart_app.state.cart_settings

    def change(**values: Any) -> None:
        cart_app.state.cart_settings = replace(original, **values)

    yield change
    cart_app.state.cart_settings = original


class Browser:
    """One shopper's browser: its own cookie jar, optionally a bearer token."""

    def __init__(self, app: Litestar, token: str | None = None) -> None:
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE_URL
        )
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


@pytest.fixture
async def browsers(cart_app: Litestar) -> AsyncIterator[Any]:
    """Factory of browsers: ``browsers()`` for a guest, ``browsers(token)`` for a shopper."""
    made: list[Browser] = []

    def make(token: str | None = None) -> Browser:
        browser = Browser(cart_app, token)
        made.append(browser)
        return browser

    yield make
    for browser in made:
        await browser.aclose()


@pytest.fixture
async def db(cart_app: Litestar) -> AsyncIterator[Any]:
    """Run SQL against the cart schema (autocommitted), to look behind the API."""

    class Db:
        async def rows(self, sql: str, **params: Any) -> list[Any]:
            async with cart_app.state.db_engine.begin() as connection:
                return list((await connection.execute(text(sql), params)).all())

        async def execute(self, sql: str, **params: Any) -> None:
            async with cart_app.state.db_engine.begin() as connection:
                await connection.execute(text(sql), params)

        async def value(self, sql: str, **params: Any) -> Any:
            rows = await self.rows(sql, **params)
            return rows[0][0] if rows else None

    yield Db()


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
