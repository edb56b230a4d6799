"""A real Redis server stopped and started under a service: clients reconnect by themselves, and
the relay's backoff holds while Redis is away."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ember_devkit.embedded import EmbeddedRedis
from ember_shared.app import ServiceSpec, create_service_app
from ember_shared.events.runtime import EventRuntime
from ember_shared.settings import ServiceSettings
from events_testkit import Base, eventually
from litestar import Request, get
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine
from test_events_relay import add_pings, outbox_rows

_SCRIPT = "return redis.call('INCR', KEYS[1])"


@get("/api/evtest/touch")
async def touch(request: Request[Any, Any, Any]) -> dict[str, int]:
    """The three ways services talk to Redis: a command, a pipeline and a Lua script."""
    redis = request.app.state.redis
    await redis.get("evtest:touch")
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get("evtest:touch")
        pipe.exists("evtest:other")
        await pipe.execute()
    count = await redis.register_script(_SCRIPT)(keys=["evtest:touch"])
    return {"count": int(count)}


async def test_pooled_connections_survive_a_redis_restart(
    engine: AsyncEngine, settings_for: Callable[..., ServiceSettings], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    url = server.start()
    settings = settings_for(redis_url=url, relay_listen=False)
    app = create_service_app(
        ServiceSpec(
            name="evtest",
            title="evtest",
            description="Redis restart",
            route_handlers=[touch],
        ),
        settings,
    )
    # The relay's client, built as a service builds it (the app runs on its own loop).
    runtime = EventRuntime(settings, engine, Base.metadata, None)
    try:
        async with AsyncTestClient(app=app) as client:
            # Fill the pools with connections that the restart will kill.
            warm = await asyncio.gather(*(client.get("/api/evtest/touch") for _ in range(24)))
            assert {r.status_code for r in warm} == {200}
            await add_pings(engine, 1)
            assert await runtime.relay_once() == 1

            server.stop()
            ready = await client.get("/api/health/evtest/ready")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert ready.json()["checks"]["redis"].startswith("down")
            server.start()  # same port, empty

            burst = await asyncio.gather(*(client.get("/api/evtest/touch") for _ in range(72)))
            assert [r.status_code for r in burst] == [200] * 72
            assert max(r.json()["count"] for r in burst) == 72
            # The relay's own client, pooled before the restart, publishes on its first try.
            await add_pings(engine, 2)
            assert await runtime.relay_once() == 1
    finally:
        await runtime.stop()
        server.stop()


async def test_commits_do_not_cut_the_relay_backoff_short_while_redis_is_down(
    engine: AsyncEngine, settings_for: Callable[..., ServiceSettings], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    url = server.start()
    runtime = EventRuntime(
        settings_for(redis_url=url, relay_interval_ms=20, relay_max_backoff_ms=1000),
        engine,
        Base.metadata,
        None,
    )
    try:
        await runtime.start()
        assert runtime.relay is not None
        relay = runtime.relay

        async def listening() -> bool:
            return relay._listener.listening

        await eventually(listening, within=10)  # commits now wake it (NOTIFY)
        await add_pings(engine, 0)
        await eventually(lambda: _none_pending(runtime))
        server.stop()
        # Orders keep committing during the outage, each one a NOTIFY to the relay.
        for n in range(1, 31):
            await add_pings(engine, n)
            await asyncio.sleep(0.1)
        failed = runtime.relay.stats.failed_passes
        # Backoff 20 ms doubling to 1 s: about 8 passes in these 3 s (a wake-up per commit: 30).
        assert 3 <= failed <= 12, failed
        server.start()
        await eventually(lambda: _none_pending(runtime), within=10)
        assert all(row["published_at"] is not None for row in await outbox_rows(engine))
    finally:
        await runtime.stop()
        server.stop()


async def _none_pending(runtime: EventRuntime) -> bool:
    assert runtime.relay is not None
    return await runtime.relay.pending() == 0
