"""The pytest plugin behind every Ember test (registered by the repo's root ``conftest.py``).

``ember_env`` (session, autouse) provides a real Postgres and a real Redis: the servers in
``DATABASE_URL`` / ``REDIS_URL`` when set, else embedded ones under ``.data/test``. It exports the
settings every app reads, recreates every service's schema from its migrations once per run and
empties the Redis database, before any app is built.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from sqlalchemy import create_engine, text

from ember_shared.embedded import EmbeddedPostgres, EmbeddedRedis
from ember_shared.migrations import SERVICES_WITH_SCHEMAS, upgrade
from ember_shared.settings import data_dir, service_settings
from ember_shared.testing.stack import stack  # noqa: F401 - the whole stack behind Caddy, for flow tests
from ember_shared.testing.tokens import KeyPair, TokenFactory


@dataclass(frozen=True)
class TestEnv:
    database_url: str
    redis_url: str
    private_key_pem: str
    public_key_pem: str
    service_token: str


def _sync_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _reset_schemas(database_url: str) -> None:
    engine = create_engine(_sync_url(database_url))
    with engine.begin() as connection:
        for schema in SERVICES_WITH_SCHEMAS:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def _with_test_database(url: str) -> str:
    """Tests never run on the database ``make run`` uses: they use ``<name>_test`` beside it."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    if name.endswith("_test"):
        return url
    test_name = f"{name}_test"
    engine = create_engine(_sync_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        if not connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": test_name}
        ).first():
            connection.execute(text(f'CREATE DATABASE "{test_name}"'))
    engine.dispose()
    return urlunsplit(parts._replace(path="/" + test_name))


@pytest.fixture(scope="session", autouse=True)
def ember_env() -> Iterator[TestEnv]:
    embedded_redis: EmbeddedRedis | None = None
    root = data_dir() / "test"
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url:
        database_url = EmbeddedPostgres(root / "pg").start()
    database_url = _with_test_database(database_url)
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        shutil.rmtree(root / "redis", ignore_errors=True)
        embedded_redis = EmbeddedRedis(root / "redis", persist=False)
        redis_url = embedded_redis.start()
    keys = KeyPair.generate()
    env = TestEnv(
        database_url=database_url,
        redis_url=redis_url,
        private_key_pem=keys.private_pem,
        public_key_pem=keys.public_pem,
        service_token=secrets.token_urlsafe(24),
    )
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "AUTH_PUBLIC_KEY_PEM": keys.public_pem,
            "IDENTITY_SIGNING_KEY_PEM": keys.private_pem,
            "INTERNAL_SERVICE_TOKEN": env.service_token,
            "EMBER_MODE": "local",
            "EMBER_DATA_DIR": str(root / "data"),
        }
    )
    service_settings.cache_clear()
    redis.Redis.from_url(redis_url).flushdb()
    _reset_schemas(database_url)
    for service in SERVICES_WITH_SCHEMAS:
        upgrade(service, database_url)
    try:
        yield env
    finally:
        if embedded_redis is not None:
            embedded_redis.stop()


@pytest.fixture(scope="session")
def tokens(ember_env: TestEnv) -> TokenFactory:
    return TokenFactory(KeyPair(ember_env.private_key_pem, ember_env.public_key_pem))


@pytest.fixture(scope="session")
def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    import uvloop

    policy: asyncio.AbstractEventLoopPolicy = uvloop.EventLoopPolicy()
    return policy


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Flow and browser tests need the stack: run them after the fast in-process tests.
    items.sort(
        key=lambda item: (
            1 if item.get_closest_marker("stack") or "tests/flows" in item.nodeid else 0
        )
    )
