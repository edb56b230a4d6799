"""Fixtures of the notifier's tests: real Postgres and Redis (the shared plugin), the Resend
stand-in and the notifier app each served by uvicorn on a free port (so the real ``resend`` SDK
and the stand-in's webhooks travel over real HTTP), and a worker to drive pass by pass.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from ember_devkit.testing.apps import serve
from ember_shared.db import make_engine
from ember_shared.events import stream_for
from ember_shared.settings import service_settings
from litestar import Litestar
from litestar.testing import AsyncTestClient
from notifier.app import create_app
from notifier.events import handlers
from notifier.settings import NotifierSettings
from notifier.worker import EmailWorker
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from standins.resend import ResendStandinSettings
from standins.resend import create_app as create_standin

# The suite runs with --import-mode=importlib, which puts no test folder on sys.path: the
# helper module beside this file is made importable by name here, before any test imports it.
sys.path.insert(0, str(Path(__file__).parent))

from notifier_testkit import Standin

BASE_URL = "http://notifier.test"


@pytest.fixture(scope="session")
def notifier_url(ember_env: Any) -> Iterator[str]:
    """The notifier app, served for real (the stand-in delivers its webhooks here)."""
    with serve(create_app()) as url:
        yield url


@pytest.fixture(scope="session")
def resend_standin(notifier_url: str) -> Iterator[Standin]:
    settings = ResendStandinSettings(
        webhook_url=f"{notifier_url}/api/webhooks/resend",
        state_file="",
        webhook_delay_seconds=0.02,
        retry_base_seconds=0.1,
        max_attempts=4,
    )
    with serve(create_standin(settings)) as url, httpx.Client(timeout=10) as client:
        yield Standin(url, client)


@pytest.fixture(scope="session")
def base_settings(resend_standin: Standin) -> NotifierSettings:
    return NotifierSettings(
        resend_api_key="re_test_notifier",
        resend_api_url=resend_standin.url,
        max_attempts=3,
        backoff_base_ms=40,
        backoff_cap_ms=200,
        poll_interval_ms=20,
        batch_size=20,
        concurrency=4,
        send_timeout_s=5,
        sending_lease_s=60,
    )


@pytest.fixture(scope="session")
async def engine(ember_env: Any) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(service_settings("notifier"))
    yield engine
    await engine.dispose()


async def consumer_caught_up(redis_url: str, within: float = 60.0) -> None:
    """Wait until the notifier's consumer group has read and acknowledged everything on its
    streams. Its group starts at the beginning of each stream, so in a whole-suite run it first
    works through every event the other services' tests published (queueing mail as it goes);
    none of that may land in the middle of a test here."""
    redis = Redis.from_url(redis_url)
    deadline = time.monotonic() + within
    try:
        for event_type in handlers.event_types:
            stream = stream_for(event_type)
            while True:
                try:
                    groups = {
                        g["name"].decode(): g
                        for g in await redis.xinfo_groups(stream)  # type: ignore[no-untyped-call]
                    }
                    last = (await redis.xinfo_stream(stream))["last-generated-id"]
                except ResponseError:  # the stream and group are being made right now
                    groups, last = {}, None
                group = groups.get("notifier")
                if (
                    group is not None
                    and not group["pending"]
                    # lag is None when Redis cannot tell (and absent before Redis 7); then compare ids.
                    and (group.get("lag") == 0 or group["last-delivered-id"] == last)
                ):
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"the notifier consumer lags on {stream}: {group}")
                await asyncio.sleep(0.1)
    finally:
        await redis.aclose()


@pytest.fixture
async def fresh(
    engine: AsyncEngine, resend_standin: Standin, notifier_url: str, ember_env: Any
) -> None:
    """An empty outbox and suppression list and an empty stand-in inbox (the worker takes every
    due mail in the database, so tests that send start from nothing). Events still being
    handled and webhooks still on their way from earlier tests are let through first, so none
    lands in this one."""
    await consumer_caught_up(ember_env.redis_url)
    resend_standin.settle()
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "TRUNCATE notifier.delivery_attempts, notifier.pending_emails, "
                "notifier.suppressions, notifier.webhook_events"
            )
        )
    resend_standin.clear()


@pytest.fixture
async def worker(
    base_settings: NotifierSettings, engine: AsyncEngine
) -> AsyncIterator[EmailWorker]:
    built = EmailWorker(base_settings, engine, name="test-worker")
    yield built
    await _close_sender(built)


@pytest.fixture
async def make_worker(
    base_settings: NotifierSettings, engine: AsyncEngine
) -> AsyncIterator[Callable[..., EmailWorker]]:
    built: list[EmailWorker] = []

    def build(**changes: Any) -> EmailWorker:
        built.append(EmailWorker(replace(base_settings, **changes), engine))
        return built[-1]

    yield build
    for each in built:
        await _close_sender(each)


async def _close_sender(worker: EmailWorker) -> None:
    """The sender's pooled connections to Resend (aiohttp's, which warn when left open)."""
    closing = getattr(worker.sender, "aclose", None)
    if closing is not None:
        await closing()


@pytest.fixture
async def client(ember_env: Any) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(), base_url=BASE_URL) as test_client:
        yield test_client
