"""``GET /internal/system``: how a service is doing, for the staff system page (and /metrics).

Every service answers it (service credential only; Caddy never routes ``/internal``): its name
and version, its outbox backlog and the age of the oldest unpublished row, each consumer group's
lag and pending count per stream, and the dead letters its group left.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from litestar import Controller, Litestar, Request, get
from sqlalchemy import func, select

from ember_shared.auth import requires_service
from ember_shared.events.envelope import DEAD_LETTER_STREAM
from ember_shared.events.tables import event_tables

#: Dead-letter entries looked through at most (the newest ones count first).
DEAD_LETTER_SCAN = 10_000


class OutboxStatus(msgspec.Struct, kw_only=True):
    backlog: int
    #: Seconds the oldest unpublished row has waited (0 when none waits).
    oldest_unpublished_s: float


class ConsumerStatus(msgspec.Struct, kw_only=True):
    group: str
    stream: str
    #: Entries the group has not read yet.
    lag: int
    #: Entries delivered to the group and not acknowledged yet.
    pending: int


class SystemStatus(msgspec.Struct, kw_only=True):
    service: str
    version: str
    #: None for a service with no outbox (no tables).
    outbox: OutboxStatus | None
    consumers: list[ConsumerStatus]
    #: Dead letters of this service's consumer group (None when it consumes nothing).
    dead_letters: int | None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def outbox_status(app: Litestar) -> OutboxStatus | None:
    runtime = app.state.events
    if runtime.metadata is None:
        return None
    outbox, _ = event_tables(runtime.metadata)
    query = select(func.count(), func.min(outbox.c.created_at)).where(
        outbox.c.published_at.is_(None)
    )
    async with app.state.db_engine.connect() as connection:
        backlog, oldest = (await connection.execute(query)).one()
    age = (dt.datetime.now(dt.UTC) - oldest).total_seconds() if oldest is not None else 0.0
    return OutboxStatus(backlog=int(backlog), oldest_unpublished_s=round(max(age, 0.0), 3))


async def consumer_status(app: Litestar) -> list[ConsumerStatus]:
    consumer = app.state.events.consumer
    if consumer is None:
        return []
    found: list[ConsumerStatus] = []
    for stream in sorted(consumer.streams):
        try:
            groups: list[dict[Any, Any]] = await app.state.redis.xinfo_groups(stream)
        except Exception:  # no stream yet: nothing published, nothing owed
            groups = []
        mine = [g for g in groups if _text(g.get("name", b"")) == consumer.group]
        # Redis 7 knows the lag; None means it cannot tell (entries trimmed under the group).
        lag = int(mine[0].get("lag") or 0) if mine else 0
        pending = int(mine[0].get("pending") or 0) if mine else 0
        found.append(ConsumerStatus(group=consumer.group, stream=stream, lag=lag, pending=pending))
    return found


async def dead_letter_count(app: Litestar) -> int | None:
    consumer = app.state.events.consumer
    if consumer is None:
        return None
    redis = app.state.redis
    count, scanned, start = 0, 0, "+"
    while scanned < DEAD_LETTER_SCAN:
        entries = await redis.xrevrange(DEAD_LETTER_STREAM, max=start, min="-", count=500)
        if not entries:
            break
        for entry_id, fields in entries:
            if _text(fields.get(b"service", b"")) == consumer.group:
                count += 1
            start = "(" + _text(entry_id)
        scanned += len(entries)
    return count


async def system_status(app: Litestar, version: str) -> SystemStatus:
    return SystemStatus(
        service=app.state.settings.app.name,
        version=version,
        outbox=await outbox_status(app),
        consumers=await consumer_status(app),
        dead_letters=await dead_letter_count(app),
    )


def system_controller(version: str) -> type[Controller]:
    class SystemController(Controller):
        path = "/internal/system"
        tags = ["internal"]
        guards = [requires_service]

        @get(
            summary="The service's state for the staff system page.",
            description="Outbox backlog, consumer lag and pending per group, dead letters.",
            cache=False,
        )
        async def status(self, request: Request[Any, Any, Any]) -> SystemStatus:
            return await system_status(request.app, version)

    return SystemController
