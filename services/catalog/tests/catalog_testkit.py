"""Helpers of the catalog's tests (imported by name: pytest puts this folder on the path)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from ember_devkit.testing.apps import running  # noqa: F401 - the suite imports it from here
from ember_devkit.testing.apps import serve as served  # noqa: F401 - the suite imports it from here
from ember_devkit.testing.events import envelope  # noqa: F401 - the suite imports it from here
from ember_shared.settings import DatabaseSettings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


def values_sent(parameters: Any) -> set[str]:
    """A statement's parameter values as text, an array's (the lookup's ids) one by one."""
    values = parameters.values() if isinstance(parameters, dict) else parameters or ()
    found: set[str] = set()
    for value in values:
        items = value if isinstance(value, list | tuple) else [value]
        found.update(str(item) for item in items)
    return found


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Kit:
    """Makes catalog data through the admin API (so the tests exercise it too)."""

    client: httpx.AsyncClient
    admin: dict[str, str]

    async def category(self, name: str | None = None, **extra: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api/admin/categories",
            json={"name": name or unique("Category"), **extra},
            headers=self.admin,
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def product(self, **fields: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {"name": unique("Coffee"), "price": 1500, "on_hand": 20, **fields}
        response = await self.client.post("/api/admin/products", json=payload, headers=self.admin)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def set_stock(self, product_id: str, on_hand: int) -> httpx.Response:
        return await self.client.put(
            f"/api/admin/inventory/{product_id}", json={"on_hand": on_hand}, headers=self.admin
        )


def assert_problem(
    response: httpx.Response, status: int, kind: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    assert "Traceback" not in response.text
    if kind is not None:
        assert body["type"].endswith("/" + kind), body
    return body


# --- stock and events ---------------------------------------------------------------


async def reserve(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    lines: list[tuple[str, int]],
    *,
    order_id: uuid.UUID | None = None,
    ttl: int = 600,
    priced: bool | None = None,
) -> httpx.Response:
    return await client.post(
        "/internal/catalog/reservations",
        json={
            "order_id": str(order_id or uuid.uuid4()),
            "lines": [{"product_id": p, "quantity": q} for p, q in lines],
            "ttl_seconds": ttl,
            **({} if priced is None else {"priced": priced}),
        },
        headers=headers,
    )


async def stock(client: httpx.AsyncClient, kit: Kit, product_id: str) -> tuple[int, int]:
    body = (await client.get(f"/api/admin/products/{product_id}", headers=kit.admin)).json()[
        "stock"
    ]
    return body["on_hand"], body["reserved"]


async def availability(client: httpx.AsyncClient, slug: str) -> str:
    value: str = (await client.get(f"/api/products/{slug}")).json()["availability"]
    return value


async def query(sql: str, **params: Any) -> list[Any]:
    engine = create_async_engine(DatabaseSettings().async_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(sql), params)).mappings())
    finally:
        await engine.dispose()


async def race_watched(
    variant_id: str, race: Callable[[], Awaitable[list[httpx.Response]]]
) -> tuple[list[httpx.Response], list[int]]:
    """The answers of ``race``, and the lowest of (available, reserved, on hand) read from the
    variant's stock row by another connection each time it looked while the race ran: a race
    that oversells or double-releases shows there as a negative number."""
    lowest: list[int] = []
    done = asyncio.Event()

    async def watch() -> None:
        engine = create_async_engine(DatabaseSettings().async_url)
        try:
            while not done.is_set():
                async with engine.connect() as connection:
                    row = (
                        await connection.execute(
                            text(
                                "SELECT on_hand, reserved FROM catalog.inventory"
                                " WHERE variant_id = :v"
                            ),
                            {"v": variant_id},
                        )
                    ).one()
                lowest.append(min(row.on_hand - row.reserved, row.reserved, row.on_hand))
                await asyncio.sleep(0.005)
        finally:
            await engine.dispose()

    watcher = asyncio.create_task(watch())
    try:
        answers = await race()
    finally:
        done.set()
        await watcher
    return answers, lowest
