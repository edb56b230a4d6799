"""Starts and stops a service's outbox relay and event consumers with the app.

First cut: the relay. The consumer side (FastStream consumer groups, reclaim, dead letters)
is built in :mod:`ember_shared.events.consumer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import structlog
from redis.asyncio import Redis
from sqlalchemy import MetaData, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ember_shared.events.handlers import EventHandlers
from ember_shared.events.tables import event_tables
from ember_shared.settings import ServiceSettings

log = structlog.get_logger("ember.events")


class EventRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        engine: AsyncEngine,
        metadata: MetaData | None,
        handlers: EventHandlers | None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metadata = metadata
        self.handlers = handlers
        self._tasks: list[asyncio.Task[None]] = []
        self._redis = Redis.from_url(settings.redis.url)

    async def start(self) -> None:
        if self.metadata is not None:
            self._tasks.append(asyncio.create_task(self._relay_forever(), name="outbox-relay"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._redis.aclose()

    async def relay_once(self) -> int:
        assert self.metadata is not None
        outbox, _ = event_tables(self.metadata)
        async with self.engine.begin() as connection:
            rows = (
                await connection.execute(
                    select(outbox.c.id, outbox.c.stream, outbox.c.envelope)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.created_at)
                    .limit(self.settings.events.relay_batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                await self._redis.xadd(
                    row.stream,
                    {"envelope": row.envelope},
                    maxlen=self.settings.events.stream_maxlen,
                    approximate=True,
                )
                await connection.execute(
                    update(outbox).where(outbox.c.id == row.id).values(published_at=dt.datetime.now(dt.UTC))
                )
        return len(rows)

    async def _relay_forever(self) -> None:
        delay = self.settings.events.relay_interval_ms / 1000
        while True:
            try:
                sent = await self.relay_once()
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any outage
                log.warning("outbox_relay_failed", error=str(exc))
                sent = 0
            if sent == 0:
                await asyncio.sleep(delay)
