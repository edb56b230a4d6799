"""The dead-letter stream's reading side (what the admin endpoints will serve) and the app wiring."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import msgspec
import pytest
from ember_shared.app import ServiceSpec, create_service_app
from ember_shared.events import (
    DEAD_LETTER_STREAM,
    Envelope,
    EventHandlers,
    Outbox,
    discard_dead_letter,
    get_dead_letter,
    list_dead_letters,
    replay_dead_letter,
    stream_for,
)
from ember_shared.events.dead_letters import FailedDelivery, count_dead_letters, write_dead_letter
from ember_shared.events.runtime import EventRuntime
from ember_shared.problems import Problem
from ember_shared.settings import ServiceSettings
from events_testkit import Base, Effect, Ping, eventually
from litestar import Litestar, post
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

PING_STREAM = stream_for(Ping.TYPE)
OUTBOX = Outbox("evtest", Base.metadata)


async def pending_message(redis: Redis, group: str, n: int) -> tuple[bytes, dict[bytes, bytes]]:
    """A message delivered to ``group`` and not acknowledged, as a consumer holds it."""
    envelope = OUTBOX.envelope(Ping(n=n))
    fields = {b"__data__": msgspec.json.encode(envelope), b"event_id": envelope.id.encode()}
    await redis.xadd(PING_STREAM, fields)  # type: ignore[arg-type]
    [(_, [(message_id, delivered)])] = await redis.xreadgroup(
        group, f"{group}-1", {PING_STREAM: ">"}, count=1
    )
    return message_id, delivered


async def dead(redis: Redis, group: str, n: int, reason: str = "handler_failed") -> str:
    message_id, fields = await pending_message(redis, group, n)
    envelope = msgspec.json.decode(fields[b"__data__"], type=Envelope)
    dead_id = await write_dead_letter(
        redis,
        FailedDelivery(
            stream=PING_STREAM,
            group=group,
            consumer=f"{group}-1",
            message_id=message_id,
            fields=fields,
            envelope=envelope,
        ),
        handler=f"{group}.record",
        reason=reason,
        error=f"ValueError('ping {n}')",
        attempts=5,
        maxlen=1000,
    )
    return dead_id.decode()


@pytest.fixture
async def groups(redis: Redis) -> None:
    for group in ("alpha", "beta"):
        await redis.xgroup_create(PING_STREAM, group, id="0", mkstream=True)


async def test_writing_a_dead_letter_acknowledges_the_message(redis: Redis, groups: None) -> None:
    dead_id = await dead(redis, "alpha", 1)
    assert (await redis.xpending(PING_STREAM, "alpha"))["pending"] == 0
    letter = await get_dead_letter(redis, dead_id)
    assert letter is not None
    assert (letter.service, letter.stream, letter.reason, letter.attempts) == (
        "alpha",
        PING_STREAM,
        "handler_failed",
        5,
    )
    assert msgspec.json.decode(letter.payload, type=Envelope).decode(Ping).n == 1
    assert await get_dead_letter(redis, "0-1") is None


async def test_listing_is_newest_first_filtered_by_service_and_paged(
    redis: Redis, groups: None
) -> None:
    ids = [await dead(redis, "alpha" if n % 2 else "beta", n) for n in range(7)]
    assert await count_dead_letters(redis) == 7

    everything = await list_dead_letters(redis)
    assert [letter.id for letter in everything.items] == list(reversed(ids))
    assert everything.next_before is None

    first = await list_dead_letters(redis, service="alpha", limit=2)
    assert [letter.id for letter in first.items] == [ids[5], ids[3]]
    assert first.next_before == ids[3]
    second = await list_dead_letters(redis, service="alpha", limit=2, before=first.next_before)
    assert [letter.id for letter in second.items] == [ids[1]]
    assert second.next_before is None
    assert {
        letter.service for letter in (await list_dead_letters(redis, service="beta")).items
    } == {"beta"}
    assert (await list_dead_letters(redis, service="gamma")).items == []
    with pytest.raises(ValueError, match="limit"):
        await list_dead_letters(redis, limit=0)
    with pytest.raises(ValueError, match="before"):
        await list_dead_letters(redis, before="+")
    assert (await list_dead_letters(redis, before="0-0")).items == []
    assert [x.id for x in (await list_dead_letters(redis, before=ids[1])).items] == [ids[0]]


async def test_discarding_removes_one_letter(redis: Redis, groups: None) -> None:
    keep, drop = await dead(redis, "alpha", 1), await dead(redis, "alpha", 2)
    assert await discard_dead_letter(redis, drop) is True
    assert await discard_dead_letter(redis, drop) is False
    assert [letter.id for letter in (await list_dead_letters(redis)).items] == [keep]
    assert await replay_dead_letter(redis, drop) is None


async def test_a_replay_goes_back_to_its_stream_marked_for_its_group(
    redis: Redis, groups: None
) -> None:
    dead_id = await dead(redis, "beta", 4)
    new_id = await replay_dead_letter(redis, dead_id)
    assert new_id is not None
    [(_, fields)] = await redis.xrange(PING_STREAM, min=new_id, max=new_id)
    assert fields[b"replay_for"] == b"beta"
    assert fields[b"replay_of"] == dead_id.encode()
    assert msgspec.json.decode(fields[b"__data__"], type=Envelope).decode(Ping).n == 4
    assert await redis.xlen(DEAD_LETTER_STREAM) == 0


# -- the runtime inside a service app ------------------------------------------------------


@post("/api/evtest/pings", status_code=201)
async def create_ping(db_session: AsyncSession, data: dict[str, int]) -> dict[str, str]:
    envelope = await OUTBOX.add(db_session, Ping(n=data["n"]))
    if data["n"] < 0:
        # The request fails after writing the event: its transaction, event included, rolls back.
        raise Problem(422, "negative", "Pings count up.")
    return {"event_id": envelope.id}


async def test_a_service_app_publishes_from_requests_and_handles_its_events(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    handlers = EventHandlers("evtest")

    @handlers.on(Ping)
    async def record(event: Envelope, data: Ping, session: AsyncSession) -> None:
        session.add(Effect(event_id=uuid.UUID(event.id), handler="evtest.record", n=data.n))

    app: Litestar = create_service_app(
        ServiceSpec(
            name="evtest",
            title="Event test",
            description="A service for the event runtime's tests.",
            route_handlers=[create_ping],
            base=Base,
            events=handlers,
        ),
        settings_for(),
    )
    async with AsyncTestClient(app=app) as client:
        runtime = app.state.events
        assert isinstance(runtime, EventRuntime)
        refused = await client.post(
            "/api/evtest/pings", json={"n": -1}, headers={"X-Correlation-ID": "corr-app"}
        )
        assert refused.status_code == 422
        created = await client.post(
            "/api/evtest/pings", json={"n": 5}, headers={"X-Correlation-ID": "corr-app"}
        )
        assert created.status_code == 201
        event_id = created.json()["event_id"]

        async def handled() -> list[Effect]:
            async with AsyncSession(engine) as session:
                return list((await session.scalars(select(Effect))).all())

        [effect] = await eventually(handled)
        assert (str(effect.event_id), effect.n) == (event_id, 5)
        [(_, fields)] = await redis.xrange(PING_STREAM)
        assert fields[b"event_id"] == event_id.encode()  # the refused one never left
    assert runtime.consumer is not None
    assert not runtime.consumer.running  # stopped with the app
