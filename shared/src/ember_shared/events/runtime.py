"""Starts and stops a service's outbox relay and event consumers with the app.

``create_service_app`` builds one in its lifespan and keeps it as ``app.state.events``::

    runtime = EventRuntime(settings, engine, Base.metadata, handlers)
    await runtime.start()   # relay task + FastStream consumer groups
    ...
    await runtime.stop()

A service with models gets a relay; a service with handlers also gets consumers. Neither needs
Redis to be up to start: the relay backs off and the consumers keep trying in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import structlog
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine

from ember_shared.events.consumer import EventConsumer
from ember_shared.events.handlers import EventHandlers, Provider
from ember_shared.events.relay import OutboxRelay
from ember_shared.redis_conn import redis_from_url
from ember_shared.settings import ServiceSettings

log = structlog.get_logger("ember.events")

#: How long stop() lets the relay finish the pass in hand (Redis calls time out after 5 s).
RELAY_STOP_GRACE_S = 10.0


class EventRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        engine: AsyncEngine,
        metadata: MetaData | None,
        handlers: EventHandlers | None,
        *,
        consumer_name: str | None = None,
        dependencies: Mapping[str, Provider] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metadata = metadata
        self.handlers = handlers
        # Short timeouts: a relay blocked on a dead Redis would hold its outbox row locks.
        self.redis = redis_from_url(settings.redis.url, socket_connect_timeout=2, socket_timeout=5)
        self.relay: OutboxRelay | None = None
        self.consumer: EventConsumer | None = None
        if metadata is not None:
            self.relay = OutboxRelay(
                settings.app.name, settings.events, engine, metadata, self.redis
            )
        if handlers is not None and handlers.handlers:
            if metadata is None:
                raise ValueError(
                    f"{settings.app.name} handles events but has no models: the consumer "
                    "records handled event ids in the service's own handled_events table"
                )
            self.consumer = EventConsumer(
                handlers,
                settings.events,
                redis_url=settings.redis.url,
                engine=engine,
                metadata=metadata,
                redis=self.redis,
                consumer_name=consumer_name,
                dependencies=dependencies,
            )
        self._relay_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.relay is not None:
            self._relay_task = asyncio.create_task(self.relay.run(), name="outbox-relay")
        if self.consumer is not None:
            await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        task, self._relay_task = self._relay_task, None
        if task is not None and self.relay is not None:
            # Cancelling mid-pass could strand an open transaction holding outbox row locks.
            self.relay.request_stop()
            done, _ = await asyncio.wait({task}, timeout=RELAY_STOP_GRACE_S)
            if not done:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.redis.aclose()

    async def relay_once(self) -> int:
        """Publish one batch of the outbox now; the number of rows sent."""
        if self.relay is None:
            raise RuntimeError(f"{self.settings.app.name} has no outbox (no models)")
        return await self.relay.relay_once()
