"""Events as their producer would send them, for the tests of a consumer: the envelope its
outbox writes, appended to the stream as its relay does."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
from ember_shared.events import Envelope, EventData, stream_for
from ember_shared.events.wire import entry_fields
from ember_shared.ids import new_id
from redis.asyncio import Redis


def envelope(
    data: EventData,
    event_id: str | uuid.UUID | None = None,
    *,
    occurred_at: dt.datetime | None = None,
) -> Envelope:
    """``data`` in a new envelope (a new event id unless given, a new correlation id)."""
    return Envelope(
        id=str(event_id or new_id()),
        type=data.TYPE,
        occurred_at=occurred_at or dt.datetime.now(dt.UTC),
        producer=data.PRODUCER,
        correlation_id=str(new_id()),
        data=msgspec.Raw(msgspec.json.encode(data)),
    )


async def publish(redis: Redis, event: Envelope) -> None:
    """Append ``event`` to its type's stream, as the producer's outbox relay does."""
    fields = await entry_fields(
        msgspec.json.encode(event),
        event_id=event.id,
        event_type=event.type,
        correlation_id=event.correlation_id,
        producer=event.producer,
    )
    await redis.xadd(stream_for(event.type), fields)  # type: ignore[arg-type]
