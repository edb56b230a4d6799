"""The ``stack`` fixture: the whole shop as real processes behind Caddy, for flow tests.

It is the supervisor ``make run`` uses (:mod:`ember_devkit.devstack`), started once per test
session the first time a test asks for it, on the test run's Postgres server and Redis, with every
port shifted by 1000 (so it runs beside a ``make run``) and the test key pair, so tokens minted with
the ``tokens`` fixture verify everywhere. It has a database and a Redis database of its own (the
session's with ``_stack``, and the next number), migrated when it starts; no demo data is loaded.
The processes' output goes to ``stack.log`` in the stack's folder (``EMBER_STACK_LOG=-`` streams
it to stderr instead); a stack that does not come up fails with each laggard's last lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from ember_shared.settings import env_int

from ember_devkit.devstack import DevStack, StackError, StackOptions
from ember_devkit.testing.traces import SpanStore

if TYPE_CHECKING:
    from ember_devkit.testing.plugin import TestEnv

#: The environment as it was before any test ran: the stack lives for the whole session, so it
#: must not inherit a variable some test module set for itself at the moment it first started.
_ENVIRON_AT_START = dict(os.environ)

#: The test stack's ports are the usual ones plus this (``EMBER_TEST_STACK_OFFSET`` changes it,
#: for two test runs side by side on one machine).
STACK_PORT_OFFSET = 1000


class RunningStack:
    """What a flow test sees of the stack."""

    def __init__(
        self, stack: DevStack, log_path: Path | None, traces: SpanStore | None = None
    ) -> None:
        self._stack = stack
        self.log_path = log_path
        #: Spans the stack exported (only of requests sent with ``traces.traceparent()``).
        self.traces = traces or SpanStore()

    @property
    def url(self) -> str:
        """Caddy's base URL (no trailing slash): the shop as a browser sees it."""
        return self._stack.url

    def service_url(self, name: str) -> str:
        """A service's or stand-in's own base URL, bypassing Caddy (``"catalog"``, ``"stripe-standin"``)."""
        return self._stack.service_url(name)

    def replica_urls(self, name: str) -> list[str]:
        """Each process of a service (one per replica, the first is :meth:`service_url`),
        bypassing Caddy."""
        offset = self._stack.options.offset
        return [app.url(offset) for app in self._stack.apps if app.name == name]

    @property
    def env(self) -> dict[str, str]:
        """The environment every process of the stack got (secrets such as STRIPE_WEBHOOK_SECRET)."""
        return dict(self._stack.env)

    @property
    def services(self) -> list[str]:
        """Names of the services running (each has probes and an OpenAPI document)."""
        from ember_devkit.devstack.layout import SERVICES

        return list(dict.fromkeys(app.name for app in self._stack.apps if app.name in SERVICES))

    def processes(self, service: str) -> list[str]:
        """A service's (or ``notifier-worker``'s) processes: ``["catalog", "catalog-2"]`` with
        ``EMBER_REPLICAS=2``."""
        return self._stack.processes(service)

    def kill(self, process: str) -> None:
        """SIGKILL one process (``"catalog-2"``); the supervisor starts it again, as a crash."""
        self._stack.supervisor.kill(process)

    def restart(self, process: str, timeout: float = 120) -> None:
        """Stop one process gracefully and start it again, waiting until it is ready."""
        self._stack.supervisor.restart(process, timeout)

    def wait_ready(self, process: str, timeout: float = 60) -> None:
        """Wait until a (killed, restarting) process answers its probe again."""
        self._stack.supervisor.wait_ready(timeout, [process])

    @property
    def standins(self) -> list[str]:
        from ember_devkit.devstack.layout import SERVICES

        return [app.name for app in self._stack.apps if app.name not in SERVICES]

    def mailed_token(self, to: str, page: str, *, within: float = 60) -> str:
        """The token of the newest ``{page}?token=...`` link mailed to ``to``.

        Read from the Resend stand-in's mailbox, so the mail really went through identity's
        outbox, the event bus and the notifier; waits up to ``within`` seconds for it.
        """
        pattern = re.compile(re.escape(page) + r"\?token=([A-Za-z0-9_-]+)")
        inbox = f"{self.service_url('resend-standin')}/_standin/emails"
        deadline = time.monotonic() + within
        with httpx.Client(timeout=10) as client:
            while True:
                for mail in client.get(inbox, params={"to": to}).json()["data"]:  # newest first
                    found = pattern.search(str(mail.get("text") or mail.get("html") or ""))
                    if found:
                        return found.group(1)
                if time.monotonic() > deadline:
                    raise AssertionError(f"no mail with a {page} link reached {to}")
                time.sleep(0.2)

    @contextlib.contextmanager
    def configured(self, service: str, **changes: str) -> Iterator[None]:
        """The service's processes restarted with ``changes`` in their environment for the
        block, then restarted as they were: a setting one test needs (``CHECKOUT_TAX="true"``)
        without changing the stack every other test shares."""
        supervisor = self._stack.supervisor
        processes = self.processes(service)
        before = {name: supervisor.env(name) for name in processes}
        try:
            for name in processes:
                supervisor.set_env(name, before[name] | changes)
                supervisor.restart(name)
            yield
        finally:
            for name in processes:
                supervisor.set_env(name, before[name])
                supervisor.restart(name)

    def restarted(self) -> list[str]:
        """Processes that died at least once since the stack started (each was restarted)."""
        return self._stack.supervisor.exited()


def _stack_redis_url(url: str) -> str:
    """The next Redis database after the in-process tests' one, emptied.

    In-process apps of earlier tests stay alive for the session and read the same event
    streams; while a synchronous test waits, their idle loop would sit on the stack's events.
    A database of its own keeps the stack's events, caches and limits to the stack.
    """
    parts = urlsplit(url)
    current = int(parts.path.lstrip("/") or 0)
    stack_url = urlunsplit(parts._replace(path=f"/{(current + 1) % 16}"))
    redis.Redis.from_url(stack_url).flushdb()
    return stack_url


@pytest.fixture(scope="session")
def stack(ember_env: TestEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    folder = tmp_path_factory.mktemp("stack")
    stream = os.environ.get("EMBER_STACK_LOG", "") == "-"
    log_path = None if stream else folder / "stack.log"
    sink = sys.__stderr__ if stream or log_path is None else log_path.open("a", encoding="utf-8")
    from ember_devkit.testing.plugin import STACK_DATABASE_SUFFIX, database_beside, drop_database

    # A database of its own, like its Redis database: in-process apps of earlier tests stay
    # alive for the session, and their outbox relays would otherwise publish the stack's
    # events (a sign-up's mail, a payment) onto their own Redis, where the stack never sees them.
    database_url = database_beside(ember_env.database_url, STACK_DATABASE_SUFFIX)
    traces = SpanStore()
    traces_url = traces.start()
    options = StackOptions(
        offset=env_int("EMBER_TEST_STACK_OFFSET", STACK_PORT_OFFSET),
        data_dir=folder,
        database_url=database_url,
        redis_url=_stack_redis_url(ember_env.redis_url),
        migrate=True,
        seed=False,
        overrides={
            # Traces go to the test's span store; only requests that ask (a sampled
            # traceparent) are traced, so the other tests pay next to nothing.
            "OTEL_EXPORTER_OTLP_ENDPOINT": traces_url,
            "OTEL_TRACES_SAMPLER_ARG": "0",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "IDENTITY_SIGNING_KEY_PEM": ember_env.private_key_pem,
            "AUTH_PUBLIC_KEY_PEM": ember_env.public_key_pem,
            "INTERNAL_SERVICE_TOKEN": ember_env.service_token,
            "EMBER_MODE": "local",
            "LOG_FORMAT": "json",
            "EMBER_DATA_DIR": str(folder),
            # Tests never call out: identity checks passwords against its shipped list only.
            "HIBP_API_URL": "offline",
            # Every flow test's shopper comes through Caddy from 127.0.0.1: the per-address
            # limits (tested in identity's own suite) would refuse the suite's later sign-ups.
            "AUTH_RATE_MAX_PER_IP": "100000",
            "LOGIN_RATE_MAX_PER_IP": "100000",
            # ... and so would checkout's stock-hold budgets per address (tested in checkout's).
            "CHECKOUT_MAX_OPEN_PER_CLIENT": "100",
            "CHECKOUT_MAX_OPEN_PER_EMAIL": "100",
            # Seven services share the test database with the in-process tests: small pools.
            "DATABASE_POOL_SIZE": os.environ.get("EMBER_STACK_POOL_SIZE", "3"),
            "DATABASE_MAX_OVERFLOW": os.environ.get("EMBER_STACK_MAX_OVERFLOW", "7"),
            # In-process apps of earlier tests still belong to the same consumer groups, and
            # their loop is idle while a synchronous test waits: reclaim what they strand soon.
            "EVENTS_RECLAIM_IDLE_MS": os.environ.get("EMBER_STACK_RECLAIM_IDLE_MS", "2000"),
            # A withheld webhook's payment is found within seconds, not minutes.
            "CHECKOUT_RECONCILE_INTERVAL_S": "1",
            "CHECKOUT_RECONCILE_AFTER_S": "3",
            # The stack tests' totals are without tax (checkout's own tests cover Stripe Tax).
            "CHECKOUT_TAX": "false",
        },
        standins_only=True,
        environ=_ENVIRON_AT_START,
        read_dotenv=False,
        sink=sink,
        colours=False,
    )
    running = DevStack(options)
    try:
        running.start()
    except StackError as error:
        pytest.fail(f"the test stack did not come up (log: {log_path}):\n{error}", pytrace=False)
    try:
        yield RunningStack(running, log_path, traces)
    finally:
        running.stop()
        traces.stop()
        if sink is not sys.__stderr__ and sink is not None:
            sink.close()
        with contextlib.suppress(Exception):  # a failure to tidy up must not fail the run
            drop_database(database_url)
