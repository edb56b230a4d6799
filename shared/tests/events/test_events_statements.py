"""What the event runtime sends to Postgres per event (issue 12): every service pays it for
every event it publishes and handles, several times per order, so these are counted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from ember_devkit.testing.statements import statements_sent, verb
from ember_shared.events import Envelope, Outbox, stream_for
from ember_shared.events.runtime import EventRuntime
from ember_shared.events.tables import event_tables
from ember_shared.events.wire import payload_of
from ember_shared.settings import ServiceSettings
from events_testkit import Base, Ping
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

OUTBOX, _ = event_tables(Base.metadata)
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
        if getattr(clause, "is_dml", False) and clause.table is OUTBOX:
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
