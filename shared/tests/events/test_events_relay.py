"""The outbox relay against real Postgres and Redis: nothing lost, nothing sent twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from ember_devkit.embedded import EmbeddedRedis
from ember_shared.db import make_engine
from ember_shared.events import Envelope, Outbox, stream_for
from ember_shared.events.runtime import EventRuntime
from ember_shared.events.tables import event_tables
from ember_shared.events.wire import payload_of
from ember_shared.logging import correlation_id_var
from ember_shared.settings import ServiceSettings
from events_testkit import Base, Ping, eventually, postgres_proxy, relay_passes
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

PING_STREAM = stream_for(Ping.TYPE)
OUTBOX, _ = event_tables(Base.metadata)


async def add_pings(engine: AsyncEngine, *ns: int, commit: bool = True) -> list[Envelope]:
    outbox = Outbox("evtest", Base.metadata)
    async with AsyncSession(engine) as session:
        envelopes = [await outbox.add(session, Ping(n=n)) for n in ns]
        if commit:
            await session.commit()
        else:
            await session.rollback()
    return envelopes


async def outbox_rows(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(OUTBOX).order_by(OUTBOX.c.created_at, OUTBOX.c.id))
        return [dict(row._mapping) for row in rows]


async def stream_envelopes(redis: Redis, stream: str = PING_STREAM) -> list[Envelope]:
    entries = await redis.xrange(stream)
    return [
        msgspec.json.decode(payload_of(fields[b"__data__"]), type=Envelope)
        for _id, fields in entries
    ]


async def test_a_rolled_back_event_is_never_published(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    runtime = EventRuntime(settings_for(), engine, Base.metadata, None)
    try:
        await add_pings(engine, 1, commit=False)
        assert await outbox_rows(engine) == []
        assert await runtime.relay_once() == 0
        assert await redis.xlen(PING_STREAM) == 0

        [kept] = await add_pings(engine, 2)
        assert await runtime.relay_once() == 1
        assert [e.id for e in await stream_envelopes(redis)] == [kept.id]
    finally:
        await runtime.stop()


async def test_a_published_entry_carries_the_envelope_and_row_is_marked(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    runtime = EventRuntime(settings_for(), engine, Base.metadata, None)
    token = correlation_id_var.set("corr-relay-1")
    try:
        # Separate transactions and one with two events: published in the order written.
        envelopes = await add_pings(engine, 1) + await add_pings(engine, 2, 3)
    finally:
        correlation_id_var.reset(token)
    try:
        assert await runtime.relay_once() == 3
        assert await runtime.relay_once() == 0
        published = await stream_envelopes(redis)
        # Oldest first, and each exactly as it was written.
        assert [e.id for e in published] == [e.id for e in envelopes]
        assert [e.decode(Ping).n for e in published] == [1, 2, 3]
        assert {e.correlation_id for e in published} == {"corr-relay-1"}
        assert {e.producer for e in published} == {"evtest"}
        entries = await redis.xrange(PING_STREAM)
        assert entries[0][1][b"type"] == Ping.TYPE.encode()
        assert entries[0][1][b"event_id"] == envelopes[0].id.encode()
        rows = await outbox_rows(engine)
        assert all(row["published_at"] is not None for row in rows)
        assert all(row["attempts"] == 1 for row in rows)
    finally:
        await runtime.stop()


async def test_b_redis_down_keeps_the_event_and_it_is_published_once_it_returns(
    engine: AsyncEngine, settings_for: Callable[..., ServiceSettings], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    url = server.start()
    runtime = EventRuntime(
        settings_for(redis_url=url, relay_listen=False), engine, Base.metadata, None
    )
    client = Redis.from_url(url)
    try:
        await runtime.start()
        [first] = await add_pings(engine, 1)
        await eventually(lambda: client.xlen(PING_STREAM))

        server.stop()
        [second] = await add_pings(engine, 2)

        async def failed_and_recorded() -> bool:
            row = (await outbox_rows(engine))[-1]
            return bool(row["attempts"] >= 2 and row["last_error"] and not row["published_at"])

        await eventually(failed_and_recorded)
        assert runtime.relay is not None
        assert runtime.relay.stats.failed_passes >= 2
        assert "Error" in (runtime.relay.stats.last_error or "")

        server.start()  # same port, empty (no persistence)

        async def published() -> bool:
            return (await outbox_rows(engine))[-1]["published_at"] is not None

        await eventually(published)
        await relay_passes(runtime.relay)  # none may send it again
        await client.aclose()
        client = Redis.from_url(url)  # the old connection died with the server
        assert [e.id for e in await stream_envelopes(client)] == [second.id]
        assert first.id != second.id
        assert await runtime.relay.pending() == 0
    finally:
        await runtime.stop()
        await client.aclose()
        server.stop()


async def test_b_relay_once_records_the_failure_on_the_row(
    engine: AsyncEngine, settings_for: Callable[..., ServiceSettings]
) -> None:
    runtime = EventRuntime(
        settings_for(redis_url="redis://127.0.0.1:1/0"), engine, Base.metadata, None
    )
    try:
        await add_pings(engine, 1)
        with pytest.raises(RedisConnectionError):
            await runtime.relay_once()
        [row] = await outbox_rows(engine)
        assert row["published_at"] is None
        assert row["attempts"] == 1
        assert "ConnectionError" in str(row["last_error"])
    finally:
        await runtime.stop()


async def test_the_relay_survives_a_postgres_outage(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    proxy, url_via = postgres_proxy(str(engine.url.render_as_string(hide_password=False)))
    port = await proxy.start()
    settings = settings_for(database_url=url_via(port))
    proxied = make_engine(settings)
    runtime = EventRuntime(settings, proxied, Base.metadata, None)
    try:
        await runtime.start()
        await add_pings(engine, 1)
        await eventually(lambda: redis.xlen(PING_STREAM))

        await proxy.go_down()
        [second] = await add_pings(engine, 2)  # written directly, not through the proxy
        assert runtime.relay is not None
        relay = runtime.relay
        failed_before = relay.stats.failed_passes

        # The first failed pass is the pooled connection the outage cut (a busy connection is
        # not pinged first); each one after it is a new connection the proxy refuses.
        async def failing() -> bool:
            return relay.stats.failed_passes >= failed_before + 3

        await eventually(failing)
        assert proxy.refused >= 2
        assert await redis.xlen(PING_STREAM) == 1

        proxy.come_back()

        async def both_published() -> bool:
            return await redis.xlen(PING_STREAM) == 2

        await eventually(both_published)
        assert (await stream_envelopes(redis))[-1].id == second.id
        await relay_passes(relay)
        assert await redis.xlen(PING_STREAM) == 2
    finally:
        await runtime.stop()
        await proxied.dispose()
        await proxy.close()


async def test_f_two_relays_at_once_publish_each_row_once(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    envelopes = await add_pings(engine, *range(300))
    settings = settings_for(relay_batch=20)
    one = EventRuntime(settings, engine, Base.metadata, None)
    two = EventRuntime(settings, engine, Base.metadata, None)

    async def drain(runtime: EventRuntime) -> int:
        total = 0
        while True:
            sent = await runtime.relay_once()
            total += sent
            if sent == 0:
                assert runtime.relay is not None
                if await runtime.relay.pending() == 0:
                    return total
                await asyncio.sleep(0.005)

    try:
        totals = await asyncio.gather(drain(one), drain(two), drain(one), drain(two))
        assert sum(totals) == 300
        published = await stream_envelopes(redis)
        assert len(published) == 300
        assert {e.id for e in published} == {e.id for e in envelopes}
        assert one.relay is not None
        assert two.relay is not None
        # Redis never had to drop a second copy: the row locks kept the relays apart.
        assert one.relay.stats.deduplicated == two.relay.stats.deduplicated == 0
        assert one.relay.stats.published + two.relay.stats.published == 300
    finally:
        await one.stop()
        await two.stop()


async def test_a_row_sent_but_not_marked_is_not_published_again(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    runtime = EventRuntime(settings_for(), engine, Base.metadata, None)
    try:
        [envelope] = await add_pings(engine, 1)
        assert await runtime.relay_once() == 1
        # As if the commit that marked it published had been lost after Redis took it.
        async with engine.begin() as connection:
            await connection.execute(update(OUTBOX).values(published_at=None))
        assert await runtime.relay_once() == 1
        assert runtime.relay is not None
        assert runtime.relay.stats.deduplicated == 1
        assert [e.id for e in await stream_envelopes(redis)] == [envelope.id]
        [row] = await outbox_rows(engine)
        assert row["published_at"] is not None
    finally:
        await runtime.stop()


async def test_the_relay_wakes_on_commit_without_waiting_for_its_poll(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    runtime = EventRuntime(settings_for(relay_interval_ms=30_000), engine, Base.metadata, None)
    try:
        await runtime.start()
        assert runtime.relay is not None
        relay = runtime.relay

        async def first_pass_done() -> bool:
            return relay.stats.last_success_at is not None

        await eventually(first_pass_done)  # the relay has passed once (empty); it now waits
        await add_pings(engine, 1)
        await eventually(lambda: redis.xlen(PING_STREAM), within=3)
    finally:
        await runtime.stop()


async def test_a_listening_relay_polls_seldom_and_polls_often_again_when_its_listen_dies(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    """Commits wake a listening relay, so its poll is only a safety net (polling every 200 ms
    cost each idle service five transactions a second); once Postgres drops the LISTEN
    connection, only polling finds new rows, so it polls at the short interval again, and a
    row committed meanwhile (its NOTIFY lost) is still published."""
    settings = settings_for(relay_interval_ms=20, relay_listening_interval_ms=60_000)
    runtime = EventRuntime(settings, engine, Base.metadata, None)
    try:
        await runtime.start()
        assert runtime.relay is not None
        relay = runtime.relay
        listener = relay._listener

        async def listening() -> bool:
            return listener.listening and relay.stats.last_success_at is not None

        await eventually(listening)
        assert relay.poll_interval_s() == 60.0
        assert listener._connection is not None
        pid = listener._connection.get_server_pid()

        async with engine.connect() as connection:
            await connection.execute(select(func.pg_terminate_backend(pid)))

        async def deaf() -> bool:
            return not listener.listening

        await eventually(deaf)
        assert relay.poll_interval_s() == 0.02
        await add_pings(engine, 1)
        await eventually(lambda: redis.xlen(PING_STREAM), within=5)
    finally:
        await runtime.stop()


async def test_published_rows_are_pruned_after_the_retention(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    runtime = EventRuntime(settings_for(outbox_retention_hours=1), engine, Base.metadata, None)
    try:
        old, recent = await add_pings(engine, 1, 2)
        await add_pings(engine, 3)
        assert runtime.relay is not None
        async with engine.begin() as connection:
            await connection.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id.in_([uuid.UUID(old.id), uuid.UUID(recent.id)]))
                .values(published_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30))
            )
            await connection.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id == uuid.UUID(old.id))
                .values(published_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
            )
        assert await runtime.relay.prune() == 1
        remaining = {str(row["id"]) for row in await outbox_rows(engine)}
        assert old.id not in remaining
        assert recent.id in remaining
        assert len(remaining) == 2  # the unpublished one is never pruned
    finally:
        await runtime.stop()
