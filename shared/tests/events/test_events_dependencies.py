"""Event handlers that declare dependencies, resolved by name per call as routes' are; on real
Redis Streams and Postgres."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from ember_shared.events import Envelope, EventHandlers
from ember_shared.events.runtime import EventRuntime
from ember_shared.settings import ServiceSettings
from events_testkit import Base, Effect, Ping, eventually
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from test_events_consumer import OUTBOX, effects, publish


@dataclass
class Ledger:
    """Stands for what a service builds once (a cache, its settings): one per app."""

    label: str


@dataclass
class Stamp:
    """Made for each call from the call's session and another dependency."""

    ledger: Ledger
    backend_pid: int
    serial: int


async def test_a_handler_gets_what_it_declares_made_for_each_call(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    serials = itertools.count(1)
    handlers = EventHandlers("evtest", dependencies={"ledger": lambda: Ledger("handlers'")})
    seen: list[tuple[str, int, int, int]] = []

    async def provide_stamp(ledger: Ledger, session: AsyncSession) -> Stamp:
        pid = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
        return Stamp(ledger, pid, next(serials))

    @handlers.on(Ping)
    async def record(event: Envelope, data: Ping, session: AsyncSession, stamp: Stamp) -> None:
        pid = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
        seen.append((stamp.ledger.label, stamp.serial, data.n, stamp.backend_pid - pid))
        session.add(Effect(event_id=uuid.UUID(event.id), handler="evtest.record", n=data.n))

    @handlers.on(Ping)
    async def plain(event: Envelope, data: Ping, session: AsyncSession) -> None:
        session.add(Effect(event_id=uuid.UUID(event.id), handler="evtest.plain", n=data.n))

    runtime = EventRuntime(
        settings_for(),
        engine,
        Base.metadata,
        handlers,
        consumer_name="evtest-deps",
        # The app's provider wins over the handlers' one of the same name.
        dependencies={"ledger": lambda: Ledger("app's"), "stamp": provide_stamp},
    )
    await runtime.start()
    try:
        assert runtime.consumer is not None
        async with asyncio.timeout(5):
            await runtime.consumer.wait_started()
        await publish(redis, Ping(n=1))
        await publish(redis, Ping(n=2))
        await eventually(lambda: _count(engine, 4))
        # One stamp per call (serials 1 and 2), made in the call's own session (same
        # connection as the handler's: pid difference 0), from the app's ledger.
        assert sorted(s[2] for s in seen) == [1, 2]
        assert sorted(s[1] for s in seen) == [1, 2]
        assert {(s[0], s[3]) for s in seen} == {("app's", 0)}
        assert sorted((e.handler, e.n) for e in await effects(engine)) == [
            ("evtest.plain", 1),
            ("evtest.plain", 2),
            ("evtest.record", 1),
            ("evtest.record", 2),
        ]
    finally:
        await runtime.stop()


async def _count(engine: AsyncEngine, n: int) -> bool:
    return len(await effects(engine)) == n


async def test_a_dependency_nothing_provides_stops_the_consumer_from_starting(
    engine: AsyncEngine, settings_for: Callable[..., ServiceSettings]
) -> None:
    handlers = EventHandlers("evtest")

    @handlers.on(Ping)
    async def record(event: Envelope, data: Ping, session: AsyncSession, clock: object) -> None:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match=r"evtest.record needs 'clock'"):
        EventRuntime(settings_for(), engine, Base.metadata, handlers)
    with pytest.raises(ValueError, match="depend on each other"):
        EventRuntime(
            settings_for(),
            engine,
            Base.metadata,
            handlers,
            dependencies={"clock": lambda tick: tick, "tick": lambda clock: clock},
        )


async def test_handle_runs_the_consumer_path_without_redis_and_only_once(
    engine: AsyncEngine, settings_for: Callable[..., ServiceSettings]
) -> None:
    handlers = EventHandlers("evtest", dependencies={"label": lambda data: f"ping {data.n}"})

    @handlers.on(Ping)
    async def record(event: Envelope, data: Ping, session: AsyncSession, label: str) -> None:
        session.add(Effect(event_id=uuid.UUID(event.id), handler=label, n=data.n))

    runtime = EventRuntime(settings_for(), engine, Base.metadata, handlers)
    assert runtime.consumer is not None
    try:
        envelope = OUTBOX.envelope(Ping(n=5))
        assert await runtime.consumer.handle(envelope) == ["evtest.record"]
        assert await runtime.consumer.handle(envelope) == []  # handled before: skipped
        assert [(e.handler, e.n) for e in await effects(engine)] == [("ping 5", 5)]
    finally:
        await runtime.redis.aclose()
