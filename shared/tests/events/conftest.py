"""Fixtures for the event backbone's tests: the evtest schema, settings, clean streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from ember_devkit.testing.plugin import TestEnv
from ember_shared.db import make_engine
from ember_shared.events import DEAD_LETTER_STREAM
from ember_shared.logging import configure_logging
from ember_shared.settings import ServiceSettings
from events_testkit import SCHEMA, Base, make_settings
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture(scope="session")
async def evtest_schema(ember_env: TestEnv) -> AsyncIterator[None]:
    # As a service does at start (structlog's development defaults render slow rich tracebacks).
    configure_logging(SCHEMA, "INFO", "json")
    engine = make_engine(make_settings(ember_env.database_url, ember_env.redis_url))
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
        await connection.execute(text(f'CREATE SCHEMA "{SCHEMA}"'))
        await connection.run_sync(Base.metadata.create_all)
    yield
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
    await engine.dispose()


@pytest.fixture(scope="session")
async def admin(ember_env: TestEnv) -> AsyncIterator[AsyncEngine]:
    """The tests' own connection, for looking at the server's state."""
    engine = make_engine(make_settings(ember_env.database_url, ember_env.redis_url))
    yield engine
    await engine.dispose()


@pytest.fixture
def settings_for(ember_env: TestEnv) -> Callable[..., ServiceSettings]:
    """``settings_for(**event_settings)``: evtest's settings on the test Postgres and Redis."""

    def build(**overrides: object) -> ServiceSettings:
        database_url = str(overrides.pop("database_url", ember_env.database_url))
        redis_url = str(overrides.pop("redis_url", ember_env.redis_url))
        return make_settings(database_url, redis_url, **overrides)

    return build


@pytest.fixture
async def engine(
    evtest_schema: None, settings_for: Callable[..., ServiceSettings], admin: AsyncEngine
) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(settings_for())
    async with engine.begin() as connection:
        # A transaction an earlier test left open would block this for ever: fail instead.
        await connection.execute(text("SET LOCAL lock_timeout = '10s'"))
        await connection.execute(
            text(
                f'TRUNCATE "{SCHEMA}".outbox_events, "{SCHEMA}".handled_events, "{SCHEMA}".effects'
            )
        )
    yield engine
    await engine.dispose()
    # Whatever a test started and stopped must not leave a transaction open behind it.
    async with admin.connect() as connection:
        stranded = (
            await connection.execute(
                text(
                    "SELECT pid, application_name, state, query FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND state LIKE 'idle in transaction%'"
                )
            )
        ).all()
    assert stranded == [], f"transactions left open: {stranded}"


@pytest.fixture
async def redis(ember_env: TestEnv) -> AsyncIterator[Redis]:
    client = Redis.from_url(ember_env.redis_url)
    doomed = [DEAD_LETTER_STREAM]
    for pattern in ("ember.events.evtest.*", "{ember.events.evtest.*"):
        doomed += [key async for key in client.scan_iter(match=pattern, count=500)]
    await client.delete(*doomed)
    yield client
    await client.aclose()
