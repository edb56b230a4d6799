"""Writing events: into the service's outbox table, inside the caller's transaction.

The row commits with the state change it describes, or not at all (invariant 9); the relay
publishes it to Redis afterwards. Nothing else in a service may put an event on a stream.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
from sqlalchemy import MetaData, bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from ember_shared.events.envelope import Envelope, EventData, encode, stream_for
from ember_shared.events.relay import notify_channel
from ember_shared.events.tables import event_tables
from ember_shared.ids import new_id
from ember_shared.logging import current_correlation_id
from ember_shared.tracing import current_traceparent


class Outbox:
    """A service's outbox: ``await outbox.add(session, PaymentSucceeded(...))``."""

    def __init__(self, producer: str, metadata: MetaData) -> None:
        self.producer = producer
        self.table, _ = event_tables(metadata)
        self.channel = notify_channel(metadata.schema)
        # The row and the wake-up of the relay in one round trip: a data-modifying CTE runs
        # once, whatever the outer query reads. Postgres delivers the notification only if
        # (and when) the transaction commits. Built once with bound parameters: the statement
        # memoizes its cache key, where ``insert().values(...)`` made per event had its values
        # walked for the key every time.
        added = (
            insert(self.table)
            .values(
                id=bindparam("id"),
                type=bindparam("type"),
                stream=bindparam("stream"),
                envelope=bindparam("envelope"),
            )
            .returning(self.table.c.id)
            .cte("added")
        )
        self._add = select(func.pg_notify(bindparam("channel"), "")).select_from(added)

    def envelope(self, data: EventData, *, event_id: uuid.UUID | None = None) -> Envelope:
        if not data.TYPE:
            raise ValueError(f"{type(data).__name__} has no TYPE; every event needs one")
        if data.PRODUCER and self.producer != data.PRODUCER:
            # A second publisher of a type would be missing from the published contract.
            raise ValueError(f"{data.TYPE} is published by {data.PRODUCER}, not {self.producer}")
        return Envelope(
            id=str(event_id or new_id()),
            type=data.TYPE,
            occurred_at=dt.datetime.now(dt.UTC),
            producer=self.producer,
            correlation_id=current_correlation_id(),
            data=msgspec.Raw(encode(data)),
            traceparent=current_traceparent(),
        )

    async def add(
        self, session: AsyncSession, data: EventData, *, event_id: uuid.UUID | None = None
    ) -> Envelope:
        """Record ``data`` to be published once the caller's transaction commits."""
        envelope = self.envelope(data, event_id=event_id)
        await session.execute(
            self._add,
            {
                "id": uuid.UUID(envelope.id),
                "type": envelope.type,
                "stream": stream_for(envelope.type),
                "envelope": encode(envelope),
                "channel": self.channel,
            },
        )
        return envelope
