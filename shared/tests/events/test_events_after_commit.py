"""After-commit hooks (``ember_shared.db.after_commit``) on real Postgres: run once the
outermost transaction commits, never before, never twice, never after a rollback; in the
event consumer's transaction and in a request's (advanced-alchemy autocommit)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
from ember_shared.db import after_commit, after_commit_done, sqlalchemy_plugin
from ember_shared.events import Envelope, EventHandlers
from ember_shared.events.runtime import EventRuntime
from ember_shared.problems import exception_handlers
from ember_shared.settings import ServiceSettings
from events_testkit import Base, Effect, Ping, eventually
from litestar import Litestar, post
from litestar.exceptions import HTTPException
from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from test_events_consumer import PING_STREAM, publish, xadd_envelope


async def committed_effects(engine: AsyncEngine, event_id: uuid.UUID) -> int:
    """Effects of ``event_id`` that another connection can see (committed ones only)."""
    async with engine.connect() as connection:
        query = select(func.count()).select_from(Effect).where(Effect.event_id == event_id)
        return int(await connection.scalar(query) or 0)


def effect(event_id: uuid.UUID, n: int = 1) -> Effect:
    return Effect(event_id=event_id, handler="after-commit-test", n=n)


async def test_a_hook_runs_once_after_the_commit_and_sees_it(engine: AsyncEngine) -> None:
    event_id = uuid.uuid4()
    seen: list[int] = []

    async def hook() -> None:
        seen.append(await committed_effects(engine, event_id))

    async with AsyncSession(engine) as session:
        session.add(effect(event_id))
        await session.flush()
        after_commit(session, hook)
        await asyncio.sleep(0)
        assert seen == []  # not before the commit
        await session.commit()
        await after_commit_done(session)
        assert seen == [1]  # after it: the row is visible to everyone

        # The next transaction of the same session does not run it again.
        session.add(effect(event_id, 2))
        await session.commit()
        await after_commit_done(session)
    assert seen == [1]


async def test_a_rolled_back_transaction_drops_its_hooks(engine: AsyncEngine) -> None:
    ran: list[str] = []

    async def hook() -> None:
        ran.append("first")

    async with AsyncSession(engine) as session:
        session.add(effect(uuid.uuid4()))
        await session.flush()
        after_commit(session, hook)
        await session.rollback()
        await after_commit_done(session)
        # A later commit of the same session must not pick the dropped hook up.
        session.add(effect(uuid.uuid4()))
        await session.commit()
        await after_commit_done(session)
    assert ran == []


async def test_savepoints_neither_run_nor_keep_hooks_that_are_not_theirs(
    engine: AsyncEngine,
) -> None:
    ran: list[str] = []

    def hook(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            ran.append(name)

        return run

    async with AsyncSession(engine) as session, session.begin():
        after_commit(session, hook("outer"))
        async with session.begin_nested():
            after_commit(session, hook("released"))
        assert ran == []  # releasing a savepoint is not the commit
        savepoint = await session.begin_nested()
        after_commit(session, hook("rolled-back"))
        async with session.begin_nested():
            after_commit(session, hook("inner-of-rolled-back"))
        await savepoint.rollback()
    await after_commit_done(session)
    assert ran == ["outer", "released"]


async def test_a_failing_hook_is_logged_not_raised(engine: AsyncEngine) -> None:
    ran: list[str] = []

    async def broken() -> None:
        raise RuntimeError("redis is away")

    async def fine() -> None:
        ran.append("fine")

    async with AsyncSession(engine) as session:
        after_commit(session, broken)
        after_commit(session, fine)
        session.add(effect(uuid.uuid4()))
        await session.commit()
        await after_commit_done(session)  # does not raise: the commit stands
    assert ran == ["fine"]


async def all_read_and_acknowledged(redis: Redis) -> bool:
    # Redis 6.2 (the embedded server) has no "lag": compare the group's last delivered id.
    [group] = await redis.xinfo_groups(PING_STREAM)
    stream = await redis.xinfo_stream(PING_STREAM)
    return bool(group["last-delivered-id"] == stream["last-generated-id"] and group["pending"] == 0)


async def test_the_consumer_runs_a_handlers_hooks_after_its_commit_and_once(
    engine: AsyncEngine, redis: Redis, settings_for: Callable[..., ServiceSettings]
) -> None:
    seen: list[tuple[int, int]] = []
    calls: Counter[int] = Counter()
    handlers = EventHandlers("evtest")

    @handlers.on(Ping)
    async def record(event: Envelope, data: Ping, session: AsyncSession) -> None:
        calls[data.n] += 1
        event_id = uuid.UUID(event.id)
        session.add(effect(event_id, data.n))

        async def hook() -> None:
            seen.append((data.n, await committed_effects(engine, event_id)))

        after_commit(session, hook)
        if data.n == 2 and calls[2] == 1:
            raise ValueError("the first delivery of 2 fails")

    runtime = EventRuntime(settings_for(), engine, Base.metadata, handlers, consumer_name="ev-ac")
    await runtime.start()
    try:
        assert runtime.consumer is not None
        async with asyncio.timeout(5):
            await runtime.consumer.wait_started()
        [one, _] = await publish(redis, Ping(n=1), Ping(n=2))
        await eventually(lambda: all_read_and_acknowledged(redis))
        # Acknowledged means its hook has run, after the commit (it saw the row); the failed
        # first delivery of 2 rolled back, and its hook with it.
        assert calls == Counter({1: 1, 2: 2})
        assert sorted(seen) == [(1, 1), (2, 1)]
        # The same event again: the handler is skipped, and no hook runs.
        await xadd_envelope(redis, one)
        await eventually(lambda: all_read_and_acknowledged(redis))
        assert calls == Counter({1: 1, 2: 2})
        assert sorted(seen) == [(1, 1), (2, 1)]
    finally:
        await runtime.stop()


async def test_a_request_answers_after_its_hooks_and_a_refused_one_runs_none(
    engine: AsyncEngine, settings_for: Callable[..., ServiceSettings]
) -> None:
    ran: list[int] = []

    @post("/write/{fail:int}", status_code=201)
    async def write(db_session: AsyncSession, fail: int) -> dict[str, str]:
        event_id = uuid.uuid4()
        db_session.add(effect(event_id))
        await db_session.flush()

        async def hook() -> None:
            # Slow on purpose: an answer sent without waiting for the hook would beat it.
            await asyncio.sleep(0.1)
            ran.append(await committed_effects(engine, event_id))

        after_commit(db_session, hook)
        if fail:
            raise HTTPException(status_code=409, detail="This write is refused.")
        return {"id": str(event_id)}

    app = Litestar(route_handlers=[write], plugins=[sqlalchemy_plugin(settings_for(), engine)])
    async with (
        app.lifespan(),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://evtest.test"
        ) as client,
    ):
        refused = await client.post("/write/1")
        assert refused.status_code == 409
        response = await client.post("/write/0")
        assert response.status_code == 201
        # Done by the time the answer arrived, once, after the commit (it saw the row); the
        # refused request rolled back, so its hook (started earlier if at all) never ran.
        assert ran == [1]


async def test_a_request_whose_commit_fails_is_not_answered_as_done(
    engine: AsyncEngine, settings_for: Callable[..., ServiceSettings]
) -> None:
    """A commit can fail after the handler succeeded (a deferred constraint, a serialization
    failure, the connection lost): the answer must then say so, and nothing is kept."""
    ran: list[int] = []

    @post("/deferred", status_code=201)
    async def deferred(db_session: AsyncSession) -> dict[str, str]:
        event_id = uuid.uuid4()
        db_session.add(effect(event_id))
        # Checked only at commit: both inserts pass, the commit is refused by Postgres.
        await db_session.execute(
            text(
                "CREATE TEMP TABLE twice (n int UNIQUE DEFERRABLE INITIALLY DEFERRED) "
                "ON COMMIT DROP"
            )
        )
        await db_session.execute(text("INSERT INTO twice VALUES (1), (1)"))

        async def hook() -> None:
            ran.append(1)

        after_commit(db_session, hook)
        return {"id": str(event_id)}

    app = Litestar(
        route_handlers=[deferred],
        plugins=[sqlalchemy_plugin(settings_for(), engine)],
        exception_handlers=exception_handlers(),
    )
    async with (
        app.lifespan(),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://evtest.test"
        ) as client,
    ):
        before = await effects_written(engine)
        response = await client.post("/deferred")
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"].endswith("/not-saved")
        assert await effects_written(engine) == before  # nothing kept
        assert ran == []  # no commit, no hook


async def effects_written(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(Effect)) or 0)
