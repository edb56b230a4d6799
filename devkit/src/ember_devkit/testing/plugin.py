"""The pytest plugin behind every Ember test (registered by the repo's root ``conftest.py``).

``ember_env`` (session, autouse) provides a real Postgres and a real Redis: the servers in
``DATABASE_URL`` / ``REDIS_URL`` when set, else embedded ones under ``.data/test``. It exports the
settings every app reads, recreates every service's schema from its migrations once per run and
empties the Redis database, before any app is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import os
import secrets
import shutil
import sys
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from ember_shared.migrations import SERVICES_WITH_SCHEMAS, upgrade
from ember_shared.settings import data_dir, service_settings, with_driver
from sqlalchemy import create_engine, text

from ember_devkit.embedded import EmbeddedPostgres, EmbeddedRedis
from ember_devkit.testing.stack import stack  # noqa: F401 - the whole stack behind Caddy, for flow tests
from ember_devkit.testing.tokens import KeyPair, TokenFactory


@dataclass(frozen=True)
class TestEnv:
    database_url: str
    redis_url: str
    private_key_pem: str
    public_key_pem: str
    service_token: str


#: The test stack's database is the session's with this suffix (see ``testing.stack``).
STACK_DATABASE_SUFFIX = "_stack"


def _reset_schemas(database_url: str) -> None:
    engine = create_engine(with_driver(database_url, "psycopg"))
    with engine.begin() as connection:
        for schema in SERVICES_WITH_SCHEMAS:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _session_database(url: str) -> str:
    """A database of this test session's own, ``<name>_test_<pid>``, beside the one named.

    Tests never run on the database ``make run`` uses, and two sessions on one server (two
    terminals, a helper's check beside CI) never drop each other's schemas. Databases left by
    sessions that died are dropped here; this session's is dropped at its end.
    """
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    prefix = name.removesuffix("_test") + "_test_"
    session_name = f"{prefix}{os.getpid()}"
    engine = create_engine(with_driver(url, "psycopg"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        existing = connection.execute(
            text("SELECT datname FROM pg_database WHERE starts_with(datname, :p)"), {"p": prefix}
        ).scalars()
        for stale in existing:
            # ``<prefix><pid>`` and the test stack's ``<prefix><pid>_stack``.
            suffix = stale.removeprefix(prefix).removesuffix(STACK_DATABASE_SUFFIX)
            if suffix.isdigit() and (int(suffix) == os.getpid() or not _pid_alive(int(suffix))):
                connection.execute(text(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{session_name}"'))
    engine.dispose()
    return urlunsplit(parts._replace(path="/" + session_name))


def database_beside(url: str, suffix: str) -> str:
    """A new, empty database on the server of ``url``, named after its database + ``suffix``."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") + suffix
    engine = create_engine(with_driver(url, "psycopg"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return urlunsplit(parts._replace(path="/" + name))


def drop_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    engine = create_engine(
        with_driver(urlunsplit(parts._replace(path="/postgres")), "psycopg"),
        isolation_level="AUTOCOMMIT",
    )
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def ember_env() -> Iterator[TestEnv]:
    embedded_redis: EmbeddedRedis | None = None
    root = data_dir() / "test"
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url:
        database_url = EmbeddedPostgres(root / "pg").start()
    database_url = _session_database(database_url)
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
        with contextlib.suppress(Exception):  # a failure to tidy up must not fail the run
            drop_database(database_url)


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


#: How long the session's last teardown (every session fixture: in-process apps, Chromium, the
#: stack, the event loop) may take before the run is ended for it.
TEARDOWN_WATCHDOG_S = float(os.environ.get("EMBER_TEARDOWN_WATCHDOG_S", "240"))


class _Outcome:
    failed = False
    #: What failed, kept to be printed if the run has to end before pytest's own summary.
    failures: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _Outcome.failed = True
        _Outcome.failures.append(f"FAILED {report.nodeid} ({report.when})\n{report.longreprtext}")


def _end_hung_session(config: pytest.Config) -> None:
    # pytest captures fds 1 and 2 during a teardown: give them back, or nothing would be seen.
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with contextlib.suppress(Exception):
            capture.suspend_global_capture(in_=True)
    out = sys.__stderr__ or sys.stderr
    out.write(
        f"\n!!! the session's teardown did not finish in {TEARDOWN_WATCHDOG_S:.0f}s;"
        " every thread's stack follows, then the run ends with its tests' outcome\n"
    )
    for failure in _Outcome.failures:
        out.write(failure[-6000:] + "\n")
    faulthandler.dump_traceback(file=out, all_threads=True)
    # The thread stacks end in the loop's poll; what it waits for is in its tasks.
    with contextlib.suppress(Exception):
        for loop in (o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)):
            if loop.is_running():
                for task in list(asyncio.all_tasks(loop)):
                    task.print_stack(file=out)
    out.flush()
    sys.stdout.flush()
    os._exit(1 if _Outcome.failed else 0)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """After the last test every session fixture is torn down. pytest-timeout's SIGALRM cannot
    interrupt a wait inside an idle uvloop (libuv retries the interrupted poll), so a teardown
    that never returns (a browser that does not close, a task that ignores its cancellation)
    would hang the run until CI kills it, with no word of why. A plain thread watches instead:
    it prints every stack, so the cause can be fixed, and ends the run with its real outcome."""
    if nextitem is not None or TEARDOWN_WATCHDOG_S <= 0:
        return (yield)
    watchdog = threading.Timer(TEARDOWN_WATCHDOG_S, _end_hung_session, args=(item.config,))
    watchdog.daemon = True
    watchdog.start()
    try:
        return (yield)
    finally:
        watchdog.cancel()
