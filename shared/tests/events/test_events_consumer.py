"""Consumers on real Redis Streams and Postgres: once in effect, reclaimed, dead-lettered."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
import msgspec
import pytest
import structlog
from ember_shared.db import make_engine
from ember_shared.events import (
    DEAD_LETTER_STREAM,
    Envelope,
    EventHandlers,
    Outbox,
    list_dead_letters,
    replay_dead_letter,
    stream_for,
)
from ember_shared.events import consumer as consumer_module
from ember_shared.events.consumer import EventConsumer
from ember_shared.events.runtime import EventRuntime
from ember_shared.events.tables import event_tables
from ember_shared.events.wire import entry_fields, payload_of
from ember_shared.logging import correlation_id_var, current_correlation_id
from ember_shared.settings import ServiceSettings
from events_testkit import Base, Effect, Ping, Pong, eventually, postgres_proxy
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

PING_STREAM = stream_for(Ping.TYPE)
PONG_STREAM = stream_for(Pong.TYPE)
_, HANDLED = event_tables(Base.metadata)
OUTBOX = Outbox("evtest", Base.metadata)


async def publish(redis: Redis, *pings: Ping, correlation_id: str = "corr-test") -> list[Envelope]:
    """Put pings on their stream the way the relay does (no outbox round trip)."""
    token = correlation_id_var.set(correlation_id)
    try:
        envelopes = [OUTBOX.envelope(ping) for ping in pings]
    finally:
        correlation_id_var.reset(token)
    for envelope in envelopes:
        await xadd_envelope(redis, envelope)
    return envelopes


async def xadd_envelope(redis: Redis, envelope: Envelope) -> bytes:
    fields = await entry_fields(
        msgspec.json.encode(envelope),
        event_id=envelope.id,
        event_type=envelope.type,
        correlation_id=envelope.correlation_id,
        producer=envelope.producer,
    )
    return bytes(await redis.xadd(stream_for(envelope.type), fields))  # type: ignore[arg-type]


async def effects(engine: AsyncEngine) -> list[Effect]:
    async with AsyncSession(engine) as session:
        return list((await session.scalars(select(Effect).order_by(Effect.id))).all())


async def handled_count(engine: AsyncEngine, event_id: str | None = None) -> int:
    query = select(func.count()).select_from(HANDLED)
    if event_id is not None:
        query = query.where(HANDLED.c.event_id == uuid.UUID(event_id))
    async with engine.connect() as connection:
        return int(await connection.scalar(query) or 0)


async def pending(redis: Redis, group: str = "evtest", stream: str = PING_STREAM) -> int:
    summary = await redis.xpending(stream, group)
    return int(summary["pending"])


async def nothing_pending(redis: Redis, group: str = "evtest") -> bool:
    return await pending(redis, group) == 0


def recording_handlers(
    service: str = "evtest",
    *,
    fail: Callable[[Ping], bool] = lambda _: False,
    calls: Counter[int] | None = None,
) -> EventHandlers:
    """Handlers that write one Effect per run (before failing, when ``fail`` says so)."""
    handlers = EventHandlers(service)

    @handlers.on(Ping)
    async def record(event: Envelope, data: Ping, session: AsyncSession) -> None:
        if calls is not None:
            calls[data.n] += 1
        session.add(
            Effect(
                event_id=uuid.UUID(event.id),
                handler=f"{service}.record",
                n=data.n,
                correlation_id=current_correlation_id(),
                log_correlation_id=str(
                    structlog.contextvars.get_contextvars().get("correlation_id", "")
                ),
            )
        )
        await session.flush()
        if fail(data):
            raise ValueError(f"cannot take ping {data.n}")

    return handlers


async def started(
    settings: ServiceSettings,
    engine: AsyncEngine,
    handlers: EventHandlers | None,
    name: str,
) -> EventRuntime:
    runtime = EventRuntime(settings, engine, Base.metadata, handlers, consumer_name=name)
    await runtime.start()
    if runtime.consumer is not None:
        async with asyncio.timeout(5):
            await runtime.consumer.wait_started()
    return runtime


async def test_a_published_event_is_handled_once_in_its_transaction(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    runtime = await started(settings_for(), engine, recording_handlers(), "evtest-a")
    try:
        async with AsyncSession(engine) as session:
            token = correlation_id_var.set("corr-end-to-end")
            try:
                envelope = await OUTBOX.add(session, Ping(n=7))
            finally:
                correlation_id_var.reset(token)
            await session.commit()

        await eventually(lambda: effects(engine))
        [effect] = await effects(engine)
        assert (str(effect.event_id), effect.n) == (envelope.id, 7)
        # The handler saw the event's correlation id, in the contextvar and in the log context.
        assert effect.correlation_id == effect.log_correlation_id == "corr-end-to-end"
        assert await handled_count(engine, envelope.id) == 1
        await eventually(lambda: nothing_pending(redis))
        assert await redis.xlen(DEAD_LETTER_STREAM) == 0
    finally:
        await runtime.stop()


async def test_a_handler_that_writes_events_passes_the_correlation_id_on(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    handlers = EventHandlers("evtest")

    @handlers.on(Ping)
    async def answer(event: Envelope, data: Ping, session: AsyncSession) -> None:
        await OUTBOX.add(session, Pong(n=data.n))

    runtime = await started(settings_for(), engine, handlers, "evtest-a")
    try:
        [ping] = await publish(redis, Ping(n=1), correlation_id="corr-chain")
        await eventually(lambda: redis.xlen(PONG_STREAM))
        [(_, fields)] = await redis.xrange(PONG_STREAM)
        pong = msgspec.json.decode(payload_of(fields[b"__data__"]), type=Envelope)
        assert pong.correlation_id == "corr-chain"
        assert pong.decode(Pong).n == 1
        assert pong.id != ping.id
        assert correlation_id_var.get() != "corr-chain"  # nothing leaks out of the handler
    finally:
        await runtime.stop()


async def test_a_failed_handler_rolls_back_and_its_event_is_retried(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    calls: Counter[int] = Counter()
    runtime = await started(
        settings_for(),
        engine,
        recording_handlers(fail=lambda ping: calls[ping.n] == 1, calls=calls),
        "evtest-a",
    )
    try:
        [envelope] = await publish(redis, Ping(n=1))
        await eventually(lambda: effects(engine))
        assert calls[1] == 2
        # The first run's Effect was rolled back with its failure.
        assert [e.n for e in await effects(engine)] == [1]
        assert await handled_count(engine, envelope.id) == 1
        await eventually(lambda: nothing_pending(redis))
    finally:
        await runtime.stop()


async def test_c_a_consumer_killed_mid_batch_is_taken_over_exactly_once(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    settings = settings_for()
    stuck = asyncio.Event()
    never = asyncio.Event()
    hung = EventHandlers("evtest")

    @hung.on(Ping, name="evtest.record")
    async def hang(event: Envelope, data: Ping, session: AsyncSession) -> None:
        session.add(Effect(event_id=uuid.UUID(event.id), handler="hung", n=data.n))
        await session.flush()
        stuck.set()
        await never.wait()  # dies here, holding the whole batch unacknowledged

    envelopes = await publish(redis, *(Ping(n=n) for n in range(5)))
    first = await started(settings, engine, hung, "evtest-dies")
    await asyncio.wait_for(stuck.wait(), 5)
    assert await pending(redis) == 5
    await first.stop()  # cancels the handler mid-transaction: nothing is acknowledged
    details = await redis.xpending_range(PING_STREAM, "evtest", "-", "+", 10)
    assert {d["consumer"] for d in details} == {b"evtest-dies"}
    assert len(details) == 5
    assert await effects(engine) == []

    calls: Counter[int] = Counter()
    second = await started(settings, engine, recording_handlers(calls=calls), "evtest-lives")
    try:

        async def all_done() -> bool:
            return len(await effects(engine)) == 5 and await pending(redis) == 0

        await eventually(all_done)
        assert sorted(e.n for e in await effects(engine)) == [0, 1, 2, 3, 4]
        assert {e.handler for e in await effects(engine)} == {"evtest.record"}
        assert calls == Counter(dict.fromkeys(range(5), 1))
        for envelope in envelopes:
            assert await handled_count(engine, envelope.id) == 1
    finally:
        await second.stop()


async def test_c_a_failing_replica_and_a_healthy_one_share_the_work_exactly_once(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    settings = settings_for(max_deliveries=50, reclaim_idle_ms=150)
    broken = await started(
        settings, engine, recording_handlers(fail=lambda _: True), "evtest-broken"
    )
    envelopes = await publish(redis, *(Ping(n=n) for n in range(10)))
    healthy = await started(settings, engine, recording_handlers(), "evtest-healthy")
    try:

        async def all_done() -> bool:
            return len(await effects(engine)) == 10 and await pending(redis) == 0

        await eventually(all_done, within=20)
        assert sorted(e.n for e in await effects(engine)) == list(range(10))
        for envelope in envelopes:
            assert await handled_count(engine, envelope.id) == 1
        assert await redis.xlen(DEAD_LETTER_STREAM) == 0
    finally:
        await healthy.stop()
        await broken.stop()


async def test_d_the_same_event_delivered_twice_changes_nothing_the_second_time(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    calls: Counter[int] = Counter()
    runtime = await started(settings_for(), engine, recording_handlers(calls=calls), "evtest-a")
    try:
        [envelope] = await publish(redis, Ping(n=1))
        await eventually(lambda: effects(engine))
        # The same event again (a re-sent outbox row, a replay): a second stream entry.
        await xadd_envelope(redis, envelope)
        await xadd_envelope(redis, envelope)

        async def all_acknowledged() -> bool:
            info = await redis.xinfo_groups(PING_STREAM)
            group = next(g for g in info if g["name"] == b"evtest")
            [(last_id, _)] = await redis.xrevrange(PING_STREAM, count=1)
            return group["pending"] == 0 and group["last-delivered-id"] == last_id

        await eventually(all_acknowledged)
        assert [e.n for e in await effects(engine)] == [1]
        assert calls[1] == 1
        assert await handled_count(engine, envelope.id) == 1
    finally:
        await runtime.stop()


async def test_e_a_poisoned_event_is_dead_lettered_after_max_deliveries_and_can_be_replayed(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    fixed = False
    calls: Counter[int] = Counter()
    runtime = await started(
        settings_for(max_deliveries=3),
        engine,
        recording_handlers(fail=lambda ping: ping.note == "poison" and not fixed, calls=calls),
        "evtest-a",
    )
    try:
        poison, good = await publish(redis, Ping(n=1, note="poison"), Ping(n=2))
        await eventually(lambda: redis.xlen(DEAD_LETTER_STREAM))
        assert calls[1] == 3
        assert [e.n for e in await effects(engine)] == [2]
        await eventually(lambda: nothing_pending(redis))

        page = await list_dead_letters(redis, service="evtest")
        [letter] = page.items
        assert letter.reason == "handler_failed"
        assert letter.attempts == 3
        assert letter.service == "evtest"
        assert letter.stream == PING_STREAM
        assert letter.event_id == poison.id
        assert letter.event_type == Ping.TYPE
        assert letter.correlation_id == "corr-test"
        assert letter.handler == "evtest.record"
        assert letter.consumer == "evtest-a"
        assert "ValueError" in letter.error
        assert "cannot take ping 1" in letter.error
        assert msgspec.json.decode(letter.payload, type=Envelope).id == poison.id
        assert page.next_before is None

        fixed = True
        new_id = await replay_dead_letter(redis, letter.id)
        assert new_id is not None
        await eventually(lambda: _has_effect(engine, 1))
        assert await replay_dead_letter(redis, letter.id) is None  # gone: cannot run twice
        assert (await list_dead_letters(redis)).items == []
        assert await handled_count(engine, poison.id) == 1
        assert await handled_count(engine, good.id) == 1
        assert sorted(e.n for e in await effects(engine)) == [1, 2]
        await eventually(lambda: nothing_pending(redis))
    finally:
        await runtime.stop()


async def _has_effect(engine: AsyncEngine, n: int) -> bool:
    return any(e.n == n for e in await effects(engine))


async def test_e_undecodable_messages_go_straight_to_dead_letters(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    runtime = await started(settings_for(), engine, recording_handlers(), "evtest-a")
    try:
        await redis.xadd(PING_STREAM, {"__data__": b"this is not json"})
        await redis.xadd(PING_STREAM, {"junk": b"x"})
        wrong_data = OUTBOX.envelope(Ping(n=1))
        wrong_data = msgspec.structs.replace(wrong_data, data=msgspec.Raw(b'{"n": "many"}'))
        await xadd_envelope(redis, wrong_data)
        [good] = await publish(redis, Ping(n=2))

        async def three_dead() -> bool:
            return await redis.xlen(DEAD_LETTER_STREAM) == 3

        await eventually(three_dead)
        letters = (await list_dead_letters(redis, service="evtest")).items
        assert {letter.reason for letter in letters} == {"undecodable"}
        assert {letter.attempts for letter in letters} == {1}
        by_error = sorted(letter.error for letter in letters)
        assert any("data does not fit" in error for error in by_error)
        assert sum("not an event envelope" in error for error in by_error) == 2
        junk = next(letter for letter in letters if "junk" in letter.payload)
        assert msgspec.json.decode(junk.payload) == {"junk": "x"}
        await eventually(lambda: _has_effect(engine, 2))
        assert await handled_count(engine, good.id) == 1
        await eventually(lambda: nothing_pending(redis))
    finally:
        await runtime.stop()


async def test_e_a_replay_is_for_the_group_that_gave_up_only(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    settings = settings_for(max_deliveries=1)
    fussy = await started(
        settings, engine, recording_handlers(fail=lambda p: p.note == "poison"), "evtest-a"
    )
    other = await started(settings, engine, recording_handlers("evtest-other"), "evtest-other-a")
    try:
        [poison] = await publish(redis, Ping(n=1, note="poison"))
        await eventually(lambda: redis.xlen(DEAD_LETTER_STREAM))
        await eventually(lambda: _has_effect(engine, 1))  # the other service took it
        assert (await list_dead_letters(redis, service="evtest-other")).items == []
        [letter] = (await list_dead_letters(redis, service="evtest")).items

        # Forget that "evtest-other" handled it: if the replay reached that group, it would
        # handle it again and the Effect would come back.
        async with engine.begin() as connection:
            await connection.execute(HANDLED.delete())
            await connection.execute(Effect.__table__.delete())
        new_id = await replay_dead_letter(redis, letter.id)
        assert new_id is not None

        async def other_group_passed_it() -> bool:
            groups = {g["name"]: g for g in await redis.xinfo_groups(PING_STREAM)}
            group = groups[b"evtest-other"]
            return group["last-delivered-id"] == new_id.encode() and group["pending"] == 0

        await eventually(other_group_passed_it)
        # "evtest" failed it again (still poison) and dead-lettered it again; "evtest-other"
        # acknowledged it without running anything.
        await eventually(lambda: redis.xlen(DEAD_LETTER_STREAM))
        assert await effects(engine) == []
        assert await handled_count(engine, poison.id) == 0
    finally:
        await other.stop()
        await fussy.stop()


async def test_a_slow_handler_is_not_dead_lettered_while_it_works(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    calls: Counter[int] = Counter()
    handlers = EventHandlers("evtest")

    @handlers.on(Ping, name="evtest.record")
    async def slow(event: Envelope, data: Ping, session: AsyncSession) -> None:
        calls[data.n] += 1
        session.add(Effect(event_id=uuid.UUID(event.id), handler="evtest.record", n=data.n))
        await session.flush()
        await asyncio.sleep(0.8)  # far longer than EVENTS_RECLAIM_IDLE_MS

    runtime = await started(
        settings_for(max_deliveries=1, reclaim_idle_ms=100), engine, handlers, "evtest-a"
    )
    try:
        [envelope] = await publish(redis, Ping(n=1))
        await eventually(lambda: _has_effect(engine, 1))
        await eventually(lambda: nothing_pending(redis))
        assert calls[1] == 1
        assert await handled_count(engine, envelope.id) == 1
        assert await redis.xlen(DEAD_LETTER_STREAM) == 0
    finally:
        await runtime.stop()


@pytest.mark.parametrize("already_handled", [False, True])
async def test_a_message_delivered_too_often_is_dead_lettered_unless_it_was_handled(
    engine: AsyncEngine,
    redis: Redis,
    settings_for: Callable[..., ServiceSettings],
    already_handled: bool,
) -> None:
    # As if replicas had died on it again and again (no handler ever got to raise).
    await redis.xgroup_create(PING_STREAM, "evtest", id="0", mkstream=True)
    [envelope] = await publish(redis, Ping(n=1))
    [(_, [(message_id, _fields)])] = await redis.xreadgroup(
        "evtest", "ghost", {PING_STREAM: ">"}, count=1
    )
    await redis.xclaim(PING_STREAM, "evtest", "ghost", 0, [message_id], retrycount=6, justid=True)
    if already_handled:
        async with engine.begin() as connection:
            await connection.execute(
                HANDLED.insert().values(
                    event_id=uuid.UUID(envelope.id), handler="evtest.record", event_type=Ping.TYPE
                )
            )
    calls: Counter[int] = Counter()
    runtime = await started(
        settings_for(max_deliveries=3), engine, recording_handlers(calls=calls), "evtest-a"
    )
    try:
        await eventually(lambda: nothing_pending(redis))
        assert calls[1] == 0
        letters = (await list_dead_letters(redis)).items
        if already_handled:
            assert letters == []
        else:
            [letter] = letters
            assert letter.reason == "too_many_deliveries"
            assert letter.attempts == 7  # six before, one more when claimed
            assert letter.event_id == envelope.id
            assert await handled_count(engine, envelope.id) == 0
    finally:
        await runtime.stop()


async def test_an_outage_of_the_database_does_not_use_up_deliveries(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    proxy, url_via = postgres_proxy(str(engine.url.render_as_string(hide_password=False)))
    port = await proxy.start()
    settings = settings_for(database_url=url_via(port), max_deliveries=2, reclaim_idle_ms=100)
    proxied = make_engine(settings)
    # The consumer alone (no relay), so every refused connection is one of its tries.
    consumer = EventConsumer(
        recording_handlers(),
        settings.events,
        redis_url=settings.redis.url,
        engine=proxied,
        metadata=Base.metadata,
        redis=redis,
        consumer_name="evtest-a",
    )
    await consumer.start()
    try:
        await proxy.go_down()
        [envelope] = await publish(redis, Ping(n=1))

        async def tried_several_times() -> bool:
            return proxy.refused >= 8

        await eventually(tried_several_times)
        # Well over EVENTS_MAX_DELIVERIES tries, none of them counted against it.
        [detail] = await redis.xpending_range(PING_STREAM, "evtest", "-", "+", 1)
        assert detail["times_delivered"] <= 2
        proxy.come_back()
        await eventually(lambda: _has_effect(engine, 1))
        assert await handled_count(engine, envelope.id) == 1
        assert await redis.xlen(DEAD_LETTER_STREAM) == 0
    finally:
        await consumer.stop()
        await proxied.dispose()
        await proxy.close()


async def test_a_service_that_starts_after_events_were_published_still_gets_them(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    # The stream exists (another service's group reads it) before "evtest" ever started.
    await redis.xgroup_create(PING_STREAM, "someone-else", id="$", mkstream=True)
    await publish(redis, Ping(n=1), Ping(n=2))
    runtime = await started(settings_for(), engine, recording_handlers(), "evtest-a")
    try:

        async def both() -> bool:
            return len(await effects(engine)) == 2

        await eventually(both)
    finally:
        await runtime.stop()


async def test_reading_resumes_after_the_stream_was_deleted(
    engine: AsyncEngine,
    redis: Redis,
    settings_for: Callable[..., ServiceSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer_module, "SUPERVISE_EVERY_S", 0.1)
    runtime = await started(settings_for(), engine, recording_handlers(), "evtest-a")
    try:
        await publish(redis, Ping(n=1))
        await eventually(lambda: _has_effect(engine, 1))
        await redis.delete(PING_STREAM)  # group gone: FastStream stops those subscribers
        assert runtime.consumer is not None
        consumer = runtime.consumer
        reading_before = consumer.broker

        async def stopped_or_restarted() -> bool:
            # The supervisor restarts it within SUPERVISE_EVERY_S: a poll can miss the stop
            # itself, never the new broker it reads with afterwards.
            return not consumer.running or consumer.broker is not reading_before

        await eventually(stopped_or_restarted)
        await eventually(lambda: _is_running(consumer))
        assert consumer.broker is not reading_before
        await publish(redis, Ping(n=2))
        await eventually(lambda: _has_effect(engine, 2))
    finally:
        await runtime.stop()


async def _is_running(consumer: EventConsumer) -> bool:
    return consumer.running


async def test_consumers_start_later_when_redis_is_down_at_startup(
    engine: AsyncEngine, settings_for: Callable[..., ServiceSettings], tmp_path: object
) -> None:
    from pathlib import Path

    from ember_devkit.embedded import EmbeddedRedis, free_port

    port = free_port()
    runtime = EventRuntime(
        settings_for(redis_url=f"redis://127.0.0.1:{port}/0"),
        engine,
        Base.metadata,
        recording_handlers(),
        consumer_name="evtest-late",
    )
    server = EmbeddedRedis(Path(str(tmp_path)) / "redis", port=port, persist=False)
    try:
        await runtime.start()  # returns although Redis is not there
        assert runtime.consumer is not None
        assert not runtime.consumer.running
        server.start()
        async with asyncio.timeout(10):
            await runtime.consumer.wait_started()
        client = Redis.from_url(server.url)
        try:
            await publish(client, Ping(n=3))
            await eventually(lambda: _has_effect(engine, 3))
        finally:
            await client.aclose()
    finally:
        await runtime.stop()
        server.stop()


def test_handler_names_must_be_unique_per_event_type() -> None:
    handlers = EventHandlers("evtest")

    @handlers.on(Ping)
    async def record(event: Envelope, data: Ping, session: AsyncSession) -> None: ...

    with pytest.raises(ValueError, match="already handles"):
        handlers.on(Ping)(record)
    handlers.on(Pong)(record)  # the same name on another type is another handled row
    assert handlers.event_types == [Ping.TYPE, Pong.TYPE]


def held_handlers(
    release: asyncio.Event, *, concurrency: int, calls: Counter[int]
) -> EventHandlers:
    """Pings whose handler holds ping 1 (its transaction open) until ``release`` is set."""
    handlers = EventHandlers("evtest")

    @handlers.on(Ping, name="evtest.record", concurrency=concurrency)
    async def record(event: Envelope, data: Ping, session: AsyncSession) -> None:
        calls[data.n] += 1
        session.add(Effect(event_id=uuid.UUID(event.id), handler="evtest.record", n=data.n))
        await session.flush()
        if data.n == 1:
            await release.wait()

    return handlers


@dataclass
class HeldPings:
    """A running consumer whose ping handler (concurrency 4) holds ping 1 until ``release``."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    calls: Counter[int] = field(default_factory=Counter)


@pytest.fixture
async def held_pings(
    engine: AsyncEngine, settings_for: Callable[..., ServiceSettings]
) -> AsyncIterator[HeldPings]:
    held = HeldPings()
    runtime = await started(
        settings_for(reclaim_idle_ms=60_000),
        engine,
        held_handlers(held.release, concurrency=4, calls=held.calls),
        "evtest-a",
    )
    try:
        yield held
    finally:
        held.release.set()
        await runtime.stop()


async def test_an_event_does_not_queue_behind_a_slow_one_when_its_handler_allows(
    engine: AsyncEngine, redis: Redis, held_pings: HeldPings
) -> None:
    """With ``concurrency`` the reader hands the next event on while one is still in its
    transaction: a confirmation does not wait for the order before it (one after the other,
    ping 2 would wait for ping 1's release)."""
    await publish(redis, Ping(n=1), Ping(n=2), Ping(n=3))
    await eventually(lambda: _has_effect(engine, 2))
    await eventually(lambda: _has_effect(engine, 3))
    assert not await _has_effect(engine, 1)  # still held, not yet committed
    held_pings.release.set()
    await eventually(lambda: _has_effect(engine, 1))
    await eventually(lambda: nothing_pending(redis))
    assert sorted(e.n for e in await effects(engine)) == [1, 2, 3]
    assert held_pings.calls == Counter({1: 1, 2: 1, 3: 1})


async def test_the_same_event_handled_at_once_twice_changes_nothing_the_second_time(
    engine: AsyncEngine, redis: Redis, held_pings: HeldPings
) -> None:
    """Two entries of one event reach two concurrent handlings: the second waits on the
    first's handled row and, once that commits, skips the handler."""
    [envelope] = await publish(redis, Ping(n=1))
    await xadd_envelope(redis, envelope)
    await publish(redis, Ping(n=2))
    # Ping 2 came after both entries of ping 1: it was read past them, and handled.
    await eventually(lambda: _has_effect(engine, 2))
    held_pings.release.set()
    await eventually(lambda: nothing_pending(redis))
    assert sorted(e.n for e in await effects(engine)) == [1, 2]
    assert held_pings.calls[1] == 1
    assert await handled_count(engine, envelope.id) == 1


def test_a_handler_s_concurrency_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        EventHandlers("evtest").on(Ping, concurrency=0)


async def test_a_delivered_message_reaches_its_handler_without_a_worker_thread(
    engine: AsyncEngine,
    redis: Redis,
    settings_for: Callable[..., ServiceSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # FastDepends found the message through its Context annotation by running a sync getter
    # in a worker thread, for every message read or reclaimed: a thread hop per event.
    hops: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Callable[..., object], *args: object, **kwargs: object) -> object:
        hops.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    runtime = await started(settings_for(), engine, recording_handlers(), "evtest-threads")
    try:
        [first, second] = await publish(redis, Ping(n=1), Ping(n=2))
        await eventually(lambda: nothing_pending(redis))
        assert await handled_count(engine, first.id) == await handled_count(engine, second.id) == 1
    finally:
        await runtime.stop()
    assert hops == []
