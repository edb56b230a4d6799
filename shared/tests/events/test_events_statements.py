"""What the event runtime sends to Postgres per event (issue 12): every service pays it for
every event it publishes and handles, several times per order, so these are counted."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import msgspec
import pytest
from ember_devkit.testing.statements import statements_sent, verb
from ember_shared.events import Envelope, EventHandlers, Outbox, stream_for
from ember_shared.events.runtime import EventRuntime
from ember_shared.events.tables import event_tables
from ember_shared.events.wire import payload_of
from ember_shared.settings import EventSettings, ServiceSettings
from events_testkit import Base, Effect, Ping
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import Update, event, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

OUTBOX, HANDLED = event_tables(Base.metadata)
PING_STREAM = stream_for(Ping.TYPE)


def on_the_outbox(statement: str, _parameters: Any, _connection: Any) -> str | None:
    return verb(statement) if "outbox_events" in statement else None


async def add_pings(engine: AsyncEngine, *ns: int) -> list[Envelope]:
    outbox = Outbox("evtest", Base.metadata)
    async with AsyncSession(engine) as session, session.begin():
        return [await outbox.add(session, Ping(n=n)) for n in ns]


async def rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        found = await connection.execute(select(OUTBOX).order_by(OUTBOX.c.created_at, OUTBOX.c.id))
        return [dict(row._mapping) for row in found]


async def on_stream(redis: Redis, stream: str = PING_STREAM) -> list[str]:
    return [
        msgspec.json.decode(payload_of(fields[b"__data__"]), type=Envelope).id
        for _id, fields in await redis.xrange(stream)
    ]


async def test_a_relay_pass_claims_and_marks_its_rows_in_one_statement(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    # The lock (SELECT ... FOR UPDATE SKIP LOCKED) and the mark (UPDATE) were two round trips.
    runtime = EventRuntime(settings_for(), engine, Base.metadata, None)
    try:
        envelopes = await add_pings(engine, 1) + await add_pings(engine, 2, 3)
        with statements_sent(engine, on_the_outbox) as sent:
            assert await runtime.relay_once() == 3
        assert sent == ["WITH"]
        # Oldest first, each once, each marked.
        assert await on_stream(redis) == [e.id for e in envelopes]
        assert [(r["attempts"], r["published_at"] is not None) for r in await rows(engine)] == [
            (1, True)
        ] * 3

        with statements_sent(engine, on_the_outbox) as sent:
            assert await runtime.relay_once() == 0
        assert sent == ["WITH"]
    finally:
        await runtime.stop()


async def test_a_row_redis_refuses_is_put_back_and_the_others_stay_published(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    runtime = EventRuntime(settings_for(), engine, Base.metadata, None)
    refused_stream = "ember.events.evtest.not_a_stream"
    try:
        first, refused, last = await add_pings(engine, 1, 2, 3)
        await redis.set(refused_stream, "a string, so XADD fails with WRONGTYPE")
        async with engine.begin() as connection:
            await connection.execute(
                update(OUTBOX).where(OUTBOX.c.id == refused.id).values(stream=refused_stream)
            )

        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await runtime.relay_once()

        assert await on_stream(redis) == [first.id, last.id]
        by_id = {str(r["id"]): r for r in await rows(engine)}
        assert by_id[refused.id]["published_at"] is None
        assert by_id[refused.id]["attempts"] == 1
        assert "WRONGTYPE" in str(by_id[refused.id]["last_error"])
        for kept in (first, last):
            assert by_id[kept.id]["published_at"] is not None
            assert (by_id[kept.id]["attempts"], by_id[kept.id]["last_error"]) == (1, None)

        # Once Redis takes it, it is published on the next pass, and only it.
        await redis.delete(refused_stream)
        assert await runtime.relay_once() == 1
        assert await on_stream(redis, refused_stream) == [refused.id]
        assert await on_stream(redis) == [first.id, last.id]
    finally:
        await redis.delete(refused_stream)
        await runtime.stop()


async def test_every_relay_pass_runs_the_one_claim_built_once(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    # Each service's relay passes on every commit's NOTIFY and every poll: building the claim
    # and walking it for its cache key each time cost more than running it.
    runtime = EventRuntime(settings_for(), engine, Base.metadata, None)
    claims: list[Any] = []

    def record(_conn: Any, clause: Any, *_: Any) -> None:
        # The claim is the relay's UPDATE (the pings' own rows are INSERTs on the outbox).
        if isinstance(clause, Update) and clause.table is OUTBOX:
            claims.append(clause)

    event.listen(engine.sync_engine, "before_execute", record)
    try:
        await add_pings(engine, 1)
        assert await runtime.relay_once() == 1
        await add_pings(engine, 2)
        assert await runtime.relay_once() == 1
        assert await runtime.relay_once() == 0
    finally:
        event.remove(engine.sync_engine, "before_execute", record)
        await runtime.stop()
    assert len(claims) == 3
    assert all(claim is claims[0] for claim in claims)


@contextmanager
def round_trips(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every round trip the engine's connections make, in order: SQLAlchemy's statements and
    the simple queries sent on asyncpg's connection itself (BEGIN, COMMIT, ROLLBACK)."""
    sent: list[str] = []
    execute = asyncpg.Connection.execute

    def statement(_conn: Any, _cursor: Any, text: str, *_: Any) -> None:
        sent.append(" ".join(text.split()))

    async def simple(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> str:
        if not args:  # with arguments it is a prepared statement
            sent.append(" ".join(query.split()))
        return await execute(self, query, *args, **kwargs)

    event.listen(engine.sync_engine, "before_cursor_execute", statement)
    asyncpg.Connection.execute = simple  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        asyncpg.Connection.execute = execute  # type: ignore[method-assign]
        event.remove(engine.sync_engine, "before_cursor_execute", statement)


def ping_handlers(fail: set[int] | None = None) -> EventHandlers:
    handlers = EventHandlers("evtest")

    @handlers.on(Ping)
    async def record(event: Envelope, data: Ping, session: AsyncSession) -> None:
        session.add(Effect(event_id=uuid.UUID(event.id), handler="trips", n=data.n))
        await session.flush()
        if data.n in (fail or set()):
            raise ValueError("this one fails")

    return handlers


async def test_a_handled_event_opens_its_transaction_and_claims_it_in_one_round_trip(
    engine: AsyncEngine, settings_for: Callable[..., ServiceSettings]
) -> None:
    # BEGIN, the handled row, the handler's statements, COMMIT were each a round trip: per
    # order five handled events pay them, in each consuming service and in Postgres.
    runtime = EventRuntime(settings_for(), engine, Base.metadata, ping_handlers())
    assert runtime.consumer is not None
    envelope = Outbox("evtest", Base.metadata).envelope(Ping(n=7))
    try:
        with round_trips(engine) as sent:
            assert await runtime.consumer.handle(envelope) == ["evtest.record"]
        assert [trip.split(" (")[0] for trip in sent] == [
            "BEGIN; INSERT INTO evtest.handled_events",
            "INSERT INTO evtest.effects",
            "COMMIT",
        ]
        assert f"('{envelope.id}', 'evtest.record', 'evtest.ping.v1')" in sent[0]

        # Handled before: the handler is skipped, two round trips in all.
        with round_trips(engine) as sent:
            assert await runtime.consumer.handle(envelope) == []
        assert [trip.split(" ")[0] for trip in sent] == ["BEGIN;", "COMMIT"]
        async with engine.connect() as connection:
            effects = await connection.scalar(
                select(func.count()).select_from(Effect).where(Effect.event_id == envelope.id)
            )
            handled = await connection.scalar(
                select(func.count()).select_from(HANDLED).where(HANDLED.c.event_id == envelope.id)
            )
        assert (effects, handled) == (1, 1)
    finally:
        await runtime.stop()


async def test_a_failed_handler_leaves_no_transaction_open_on_the_pooled_connection(
    settings_for: Callable[..., ServiceSettings], evtest_schema: None
) -> None:
    # The consumer opens the transaction itself, so the pool's reset (SQLAlchemy's rollback,
    # which knows of no transaction) would not end it: the consumer must.
    settings = settings_for()
    engine = create_async_engine(settings.db.async_url, pool_size=1, max_overflow=0)
    runtime = EventRuntime(settings, engine, Base.metadata, ping_handlers(fail={1}))
    assert runtime.consumer is not None
    outbox = Outbox("evtest", Base.metadata)
    failing, fine = outbox.envelope(Ping(n=1)), outbox.envelope(Ping(n=2))
    try:
        with pytest.raises(ValueError, match="this one fails"):
            await runtime.consumer.handle(failing)
        # The one connection again: idle, and the next event commits on it.
        async with engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            assert not driver.is_in_transaction()
        assert await runtime.consumer.handle(fine) == ["evtest.record"]
        async with engine.connect() as connection:
            handled = set(
                (
                    await connection.scalars(
                        select(HANDLED.c.event_id).where(
                            HANDLED.c.event_id.in_([failing.id, fine.id])
                        )
                    )
                ).all()
            )
        assert handled == {uuid.UUID(fine.id)}
    finally:
        await runtime.stop()
        await engine.dispose()


@pytest.mark.parametrize(
    ("environ", "every_ms"),
    [
        ({}, 5_000),  # the 30 s idle: one check every 5 s, not every second
        ({"EVENTS_RECLAIM_IDLE_MS": "2000"}, 1_000),  # the test stacks' 2 s: as before
        ({"EVENTS_RECLAIM_IDLE_MS": "12000"}, 2_000),
        ({"EVENTS_RECLAIM_IDLE_MS": "600000"}, 5_000),
        ({"EVENTS_RECLAIM_INTERVAL_MS": "250"}, 250),  # said outright, it wins
    ],
)
def test_the_reclaim_check_runs_a_sixth_as_often_as_messages_may_idle(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], every_ms: int
) -> None:
    # An XAUTOCLAIM per handled stream and replica every second was ~17 a second on an idle
    # stack, and went on under load, to find nothing before its 30 s were up.
    monkeypatch.delenv("EVENTS_RECLAIM_IDLE_MS", raising=False)
    monkeypatch.delenv("EVENTS_RECLAIM_INTERVAL_MS", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert EventSettings().reclaim_interval_ms == every_ms
