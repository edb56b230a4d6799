"""Fixtures of the orders tests: the orders app in-process on the real test database and Redis,
the real 17track stand-in served by uvicorn on a free port, and a way to deliver events exactly
as the event runtime does (handler and handled-event record in one transaction)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from ember_devkit.testing.apps import serve
from ember_shared.events import Envelope
from litestar import Litestar
from orders.app import create_app
from orders.settings import OrdersSettings
from orders_testkit import (
    STANDIN_TOKEN,
    Checkout,
    deliver_with,
    run_app,
    tracking_settings,
)
from sqlalchemy import text
from standins.tracking import create_app as create_tracking_standin

BASE_URL = "http://orders.test"


@dataclass
class TrackingStandin:
    url: str
    app: Litestar

    @property
    def api_url(self) -> str:
        return f"{self.url}/track/v2"

    def registered(self, number: str) -> bool:
        return number.upper() in self.app.state.tracking.parcels

    def carrier_of(self, number: str) -> int:
        return int(self.app.state.tracking.parcels[number.upper()].carrier)

    async def advance(self, number: str, seconds: float) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{self.url}/standin/advance", json={"number": number, "seconds": seconds}
            )
            response.raise_for_status()


@pytest.fixture(scope="session")
def tracking_standin(ember_env: Any) -> Iterator[TrackingStandin]:
    """The real 17track stand-in, over real HTTP: scans a minute apart, our token required."""
    app = create_tracking_standin(stage_seconds=60, token=STANDIN_TOKEN)
    with serve(app) as url:
        yield TrackingStandin(url=url, app=app)


@pytest.fixture(scope="session")
async def orders_app(ember_env: Any, tracking_standin: TrackingStandin) -> AsyncIterator[Litestar]:
    app = create_app(OrdersSettings(tracking=tracking_settings(tracking_standin.api_url)))
    stop, task = await run_app(app)
    yield app
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.fixture
async def client(orders_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=orders_app), base_url=BASE_URL
    ) as http:
        yield http


Deliver = Callable[..., Awaitable[bool]]


@pytest.fixture
def deliver(orders_app: Litestar) -> Deliver:
    """``await deliver(data, event_id=..., occurred_at=...)``: handle one event as the runtime
    does (see ``orders_testkit.deliver_with``). True when the handler ran."""
    return deliver_with(orders_app)


class Db:
    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.app.state.db_engine.begin() as connection:
            return list((await connection.execute(text(sql), params)).all())

    async def value(self, sql: str, **params: Any) -> Any:
        rows = await self.rows(sql, **params)
        return rows[0][0] if rows else None

    async def order(self, order_id: uuid.UUID) -> Any:
        rows = await self.rows("SELECT * FROM orders.orders WHERE id = :id", id=order_id)
        return rows[0] if rows else None

    async def emitted(self, event_type: str, order_id: uuid.UUID) -> list[dict[str, Any]]:
        """The payloads of ``event_type`` events about ``order_id`` in the orders outbox."""
        rows = await self.rows(
            "SELECT envelope FROM orders.outbox_events WHERE type = :t ORDER BY created_at",
            t=event_type,
        )
        found = []
        for (raw,) in rows:
            event = msgspec.json.decode(raw, type=Envelope)
            data = msgspec.json.decode(event.data)
            if data.get("order_id") == str(order_id):
                found.append(data)
        return found


@pytest.fixture
def db(orders_app: Litestar) -> Db:
    """SQL against the orders schema (autocommitted), to look behind the API."""
    return Db(orders_app)


@pytest.fixture
def place(deliver: Deliver) -> Callable[..., Awaitable[Checkout]]:
    """``await place(checkout, paid=True)``: the checkout's events, as checkout would send them."""

    async def run(
        checkout: Checkout | None = None, *, paid: bool = True, **kwargs: Any
    ) -> Checkout:
        checkout = checkout or Checkout()
        await deliver(checkout.started(), **kwargs)
        if paid:
            await deliver(checkout.succeeded(), **kwargs)
        return checkout

    return run
