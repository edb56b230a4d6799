"""The fault suite's own stack (``make chaos``): the whole shop behind Caddy on a Postgres and a
Redis server of its own (embedded, in the suite's folder), which the tests restart, and with
every service verifying tokens through identity's JWKS (no public key handed to them), as in
production.

Its ports are the usual ones plus ``EMBER_CHAOS_STACK_OFFSET`` (default 2000), so it runs beside
``make run`` and the flow tests' stack.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ember_devkit.devstack import DevStack, StackError, StackOptions
from ember_devkit.devstack.stack import stop_postgres
from ember_devkit.embedded import EmbeddedPostgres, EmbeddedRedis
from ember_devkit.testing.plugin import TestEnv
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TEST_KEY_ID
from ember_shared.settings import env_int

CHAOS_PORT_OFFSET = 2000


class ChaosStack(RunningStack):
    """The stack, and the Redis server it runs on (``stop_redis()`` / ``start_redis()``)."""

    def __init__(
        self,
        stack: DevStack,
        log_path: Path | None,
        redis: EmbeddedRedis,
        postgres: EmbeddedPostgres,
    ) -> None:
        super().__init__(stack, log_path)
        self.redis = redis
        self.postgres = postgres

    def restart_postgres(self) -> None:
        """pg_ctl restart (fast): every connection of every service is cut."""
        self.postgres.restart()

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def stop_redis(self) -> None:
        self.redis.stop()

    def start_redis(self) -> None:
        # Same port and folder: it reloads what it had (appendonly), as a restarted server does.
        self.redis.start()


@pytest.fixture(scope="session")
def chaos_stack(
    ember_env: TestEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChaosStack]:
    folder = tmp_path_factory.mktemp("chaos")
    redis = EmbeddedRedis(folder / "redis", persist=True)
    redis.start()
    postgres = EmbeddedPostgres(folder / "pg", database="ember")
    database_url = postgres.start(stop_at_exit=False)
    log_path = folder / "stack.log"
    sink = log_path.open("a", encoding="utf-8")
    options = StackOptions(
        offset=env_int("EMBER_CHAOS_STACK_OFFSET", CHAOS_PORT_OFFSET),
        data_dir=folder,
        database_url=database_url,
        redis_url=redis.url,
        migrate=True,
        seed=False,
        overrides={
            # Identity signs with the test key under the test key id; the others learn it from
            # identity's JWKS (AUTH_PUBLIC_KEY_PEM left empty), so a restart refetches it.
            "IDENTITY_SIGNING_KEY_PEM": ember_env.private_key_pem,
            "IDENTITY_SIGNING_KEY_ID": TEST_KEY_ID,
            "AUTH_PUBLIC_KEY_PEM": "",
            "INTERNAL_SERVICE_TOKEN": ember_env.service_token,
            "EMBER_MODE": "local",
            "LOG_FORMAT": "json",
            "EMBER_DATA_DIR": str(folder),
            "HIBP_API_URL": "offline",
            "AUTH_RATE_MAX_PER_IP": "100000",
            "LOGIN_RATE_MAX_PER_IP": "100000",
            "DATABASE_POOL_SIZE": "3",
            "DATABASE_MAX_OVERFLOW": "5",
            # A killed consumer's messages are claimed again soon, and poison goes to the
            # dead letters after a few tries: the suite's books settle in seconds.
            "EVENTS_RECLAIM_IDLE_MS": "2000",
            "EVENTS_MAX_DELIVERIES": "3",
            "EVENTS_RELAY_MAX_BACKOFF_MS": "2000",
        },
        standins_only=True,
        environ=dict(os.environ),
        read_dotenv=False,
        sink=sink,
        colours=False,
    )
    running = DevStack(options)
    try:
        running.start()
    except StackError as error:
        running.stop()
        redis.stop()
        stop_postgres(postgres)
        pytest.fail(f"the chaos stack did not come up (log: {log_path}):\n{error}", pytrace=False)
    try:
        yield ChaosStack(running, log_path, redis, postgres)
    finally:
        running.stop()
        redis.stop()
        stop_postgres(postgres)
        sink.close()
        print(f"chaos stack log: {log_path}", file=sys.stderr)
