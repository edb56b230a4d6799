"""The pool pings a connection only after it sat idle: a dead idle connection is replaced before
use, and one in steady use costs no ping (SQLAlchemy's ``pool_pre_ping`` pinged on every
checkout: three statements each time).

The server really kills the connection (``pg_terminate_backend``), as a Postgres restart or an
idle timeout does."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from ember_devkit.testing.plugin import TestEnv
from ember_shared.db import make_engine, ping_after_idle
from ember_shared.settings import read_service_settings, with_driver
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

pytestmark = pytest.mark.anyio


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("select pg_backend_pid()"))).scalar_one())


async def terminate(database_url: str, pid: int) -> None:
    admin = await asyncpg.connect("postgresql://" + database_url.split("://", 1)[1])
    try:
        assert await admin.fetchval("select pg_terminate_backend($1)", pid)
        # Gone from the server's view: the pooled connection is now really dead.
        while await admin.fetchval("select count(*) from pg_stat_activity where pid = $1", pid):
            await admin.execute("select pg_sleep(0.01)")
    finally:
        await admin.close()


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every ping the pool sends, counted on the asyncpg adapter that sends it."""
    sent: list[int] = []
    real = AsyncAdapt_asyncpg_connection.ping

    def counted(self: AsyncAdapt_asyncpg_connection) -> None:
        sent.append(1)
        real(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counted)
    return sent


@pytest.fixture
async def one_connection(ember_env: TestEnv) -> AsyncIterator[list[AsyncEngine]]:
    made: list[AsyncEngine] = []
    yield made
    for engine in made:
        await engine.dispose()


def pool_of_one(made: list[AsyncEngine], database_url: str, idle_seconds: float) -> AsyncEngine:
    engine = create_async_engine(with_driver(database_url, "asyncpg"), pool_size=1, max_overflow=0)
    ping_after_idle(engine, idle_seconds)
    made.append(engine)
    return engine


async def test_a_dead_idle_connection_is_replaced_before_use(
    ember_env: TestEnv, one_connection: list[AsyncEngine], pings: list[int]
) -> None:
    # Every checkout counts as idle: the ping runs and finds the killed connection.
    engine = pool_of_one(one_connection, ember_env.database_url, idle_seconds=0.0)
    first = await backend_pid(engine)
    await terminate(ember_env.database_url, first)

    second = await backend_pid(engine)

    assert second != first
    assert pings == [1]


async def test_a_busy_connection_is_not_pinged_and_a_dead_one_costs_one_failure(
    ember_env: TestEnv, one_connection: list[AsyncEngine], pings: list[int]
) -> None:
    engine = pool_of_one(one_connection, ember_env.database_url, idle_seconds=3600.0)
    first = await backend_pid(engine)
    assert await backend_pid(engine) == first
    await terminate(ember_env.database_url, first)

    # Not idle long enough to be pinged: the dead connection fails its statement...
    with pytest.raises(DBAPIError) as failed:
        await backend_pid(engine)
    assert failed.value.connection_invalidated
    # ...which discards it, and the next use gets a live one.
    second = await backend_pid(engine)

    assert second != first
    assert pings == []


async def test_service_engines_ping_after_idle_instead_of_on_every_checkout(
    ember_env: TestEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", ember_env.database_url)
    engine = make_engine(read_service_settings("catalog"))
    try:
        assert engine.pool._pre_ping is False
        assert len(engine.sync_engine.pool.dispatch.checkout) == 1
        assert len(engine.sync_engine.pool.dispatch.checkin) == 1
    finally:
        await engine.dispose()


async def test_a_service_pool_keeps_the_connections_a_burst_opened(
    ember_env: TestEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The defaults, as a service gets them: 16 requests at once (the benchmark's buyers), twice.
    # A connection the pool does not keep is closed on return and a new backend opened for the
    # next burst, whose first statements cost Postgres several times a warm one's.
    monkeypatch.setenv("DATABASE_URL", ember_env.database_url)
    monkeypatch.delenv("DATABASE_POOL_SIZE", raising=False)
    monkeypatch.delenv("DATABASE_MAX_OVERFLOW", raising=False)
    engine = make_engine(read_service_settings("catalog"))
    together = asyncio.Barrier(16)

    async def held() -> int:
        async with engine.connect() as connection:
            pid = int((await connection.execute(text("select pg_backend_pid()"))).scalar_one())
            # Each returns its connection only once all 16 hold one.
            await together.wait()
            return pid

    try:
        first = set(await asyncio.gather(*(held() for _ in range(16))))
        second = set(await asyncio.gather(*(held() for _ in range(16))))
    finally:
        await engine.dispose()

    assert len(first) == 16
    assert second == first


async def test_a_transaction_begun_with_its_first_statement_commits_or_answers_503(
    ember_env: TestEnv, one_connection: list[AsyncEngine]
) -> None:
    """``transaction_begun_with`` sends BEGIN with its first statement in one round trip and
    commits at the end of its block. When Postgres drops the connection in the middle (a
    restart), the error is an outage: the request answers 503, not 500, nothing of the
    transaction is committed, and the pool hands out a live connection next."""
    from ember_shared.db import transaction_begun_with
    from ember_shared.problems import exception_handlers
    from litestar import Litestar, post
    from litestar.testing import AsyncTestClient
    from sqlalchemy.ext.asyncio import async_sessionmaker

    engine = pool_of_one(one_connection, ember_env.database_url, idle_seconds=0.0)
    sessions = async_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))
    table = f"begun_{uuid.uuid4().hex[:8]}"
    async with engine.connect() as connection:
        await connection.execute(text(f"CREATE TABLE {table} (n int)"))
        await connection.commit()

    @post("/write/{n:int}", status_code=201)
    async def write(n: int, cut: bool = False) -> dict[str, int]:
        async with transaction_begun_with(sessions, f"INSERT INTO {table} VALUES ({n})") as db:
            if cut:
                pid = (await db.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                await terminate(ember_env.database_url, int(pid))
        return {"n": n}

    app = Litestar([write], exception_handlers=exception_handlers())
    try:
        async with AsyncTestClient(app=app) as client:
            kept = await client.post("/write/1")
            cut = await client.post("/write/2", params={"cut": "true"})
            after = await client.post("/write/3")
        assert kept.status_code == 201, kept.text
        assert cut.status_code == 503, cut.text
        assert cut.headers["content-type"].startswith("application/problem+json")
        assert after.status_code == 201, after.text
        async with engine.connect() as connection:
            rows = (await connection.execute(text(f"SELECT n FROM {table} ORDER BY n"))).all()
        assert [n for (n,) in rows] == [1, 3]
    finally:
        async with engine.connect() as connection:
            await connection.execute(text(f"DROP TABLE {table}"))
            await connection.commit()
