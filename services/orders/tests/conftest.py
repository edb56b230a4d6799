"""Fixtures of the orders tests: the orders app in-process on the real test database and Redis,
the real 17track stand-in served by uvicorn on a free port, and a way to deliver events exactly
as the event runtime does (handler and handled-event record in one transaction)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from litestar import Litestar
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ember_shared.events import Envelope, EventData
from ember_shared.events.tables import event_tables
from orders.app import create_app
from orders.events import handlers
from orders.models import Base
from orders.settings import OrdersSettings, TrackingSettings
from orders_testkit import Checkout, envelope
from standins.tracking import create_app as create_tracking_standin

BASE_URL = "http://orders.test"
STANDIN_TOKEN = "orders-test-17token"


def serve(app: Litestar, name: str) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


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
    server, thread, url = serve(app, "the tracking stand-in")
    try:
        yield TrackingStandin(url=url, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def tracking_settings(api_url: str, **overrides: Any) -> TrackingSettings:
    values: dict[str, Any] = {
        "api_url": api_url,
        "api_key": STANDIN_TOKEN,
        "sync_interval_s": 600,
        "poll_interval_s": 1,
        "batch_size": 40,
        "max_age_days": 90,
        "timeout_ms": 2000,
        "poller_enabled": False,
        "public_url": "",
        "uses_standin": False,
    }
    values.update(overrides)
    return TrackingSettings(**values)


async def run_app(app: Litestar) -> tuple[asyncio.Event, asyncio.Task[None]]:
    # Not AsyncTestClient: it runs the lifespan on a portal thread's loop, and the event
    # runtime's tasks there and the requests here would share one asyncpg pool across loops.
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run())
    await asyncio.wait_for(started.wait(), 30)
    return stop, task


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
    does: record (event id, handler) in handled_events and run the handler in one transaction;
    an event already handled is skipped. True when the handler ran."""
    _, handled = event_tables(Base.metadata)
    sessions = async_sessionmaker(
        orders_app.state.db_engine, expire_on_commit=False, class_=AsyncSession
    )

    async def run(data: EventData, **kwargs: Any) -> bool:
        event = envelope(data, **kwargs)
        ran = False
        async with sessions() as session, session.begin():
            for handler in handlers.handlers:
                if handler.event_type != event.type:
                    continue
                inserted = await session.execute(
                    pg_insert(handled)
                    .values(event_id=uuid.UUID(event.id), handler=handler.name, event_type=event.type)
                    .on_conflict_do_nothing()
                    .returning(handled.c.event_id)
                )
                if inserted.first() is None:
                    continue
                await handler.fn(event, event.decode(handler.data_type), session)
                ran = True
        return ran

    return run


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

    async def run(checkout: Checkout | None = None, *, paid: bool = True, **kwargs: Any) -> Checkout:
        checkout = checkout or Checkout()
        await deliver(checkout.started(), **kwargs)
        if paid:
            await deliver(checkout.succeeded(), **kwargs)
        return checkout

    return run
