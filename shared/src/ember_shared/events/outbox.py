"""Writing events: into the service's outbox table, inside the caller's transaction.

The row commits with the state change it describes, or not at all (invariant 9); the relay
publishes it to Redis afterwards. Nothing else in a service may put an event on a stream.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, TypeVar

import msgspec
from sqlalchemy import Delete, Insert, MetaData, Select, Update, bindparam, func, insert
from sqlalchemy.ext.asyncio import AsyncSession

from ember_shared.events.envelope import Envelope, EventData, encode, stream_for
from ember_shared.events.relay import notify_channel
from ember_shared.events.tables import event_tables
from ember_shared.ids import new_id
from ember_shared.logging import current_correlation_id
from ember_shared.tracing import current_traceparent

#: A statement an event can ride along (:meth:`Outbox.with_event`).
Writes = TypeVar("Writes", Insert, Update, Delete, Select[Any])


class Outbox:
    """A service's outbox: ``await outbox.add(session, PaymentSucceeded(...))``."""

    def __init__(self, producer: str, metadata: MetaData) -> None:
        self.producer = producer
        self.table, _ = event_tables(metadata)
        self.channel = notify_channel(metadata.schema)
        # The row and the wake-up of the relay in one statement: its RETURNING notifies once
        # per row written. Postgres delivers the notification only if (and when) the
        # transaction commits. Built once with bound parameters: the statement memoizes its
        # cache key, where ``insert().values(...)`` made per event had its values walked for
        # the key every time. Its parameters are named apart from any table's columns, so the
        # same insert can ride along another statement (:meth:`with_event`).
        self._add = (
            insert(self.table)
            .values(
                id=bindparam("outbox_id"),
                type=bindparam("outbox_type"),
                stream=bindparam("outbox_stream"),
                envelope=bindparam("outbox_envelope"),
            )
            .returning(func.pg_notify(bindparam("outbox_channel"), ""))
        )
        self._added = self._add.cte("outbox_added")

    def with_event(self, statement: Writes) -> Writes:
        """``statement`` writing one event besides (bind :meth:`event_params` with its own):
        the state change and its event in one round trip, not two. A data-modifying ``WITH``
        runs once and to completion whatever the statement reads, so the event is written
        (and the relay woken at commit) exactly when the statement runs. Build it once, at
        import, as any statement on a hot path."""
        return statement.add_cte(self._added)

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

    def event_params(
        self, data: EventData, *, event_id: uuid.UUID | None = None
    ) -> tuple[dict[str, Any], Envelope]:
        """The parameters that write ``data`` (with :meth:`add`'s statement or one made by
        :meth:`with_event`), and its envelope."""
        envelope = self.envelope(data, event_id=event_id)
        return {
            "outbox_id": uuid.UUID(envelope.id),
            "outbox_type": envelope.type,
            "outbox_stream": stream_for(envelope.type),
            "outbox_envelope": encode(envelope),
            "outbox_channel": self.channel,
        }, envelope

    async def add(
        self, session: AsyncSession, data: EventData, *, event_id: uuid.UUID | None = None
    ) -> Envelope:
        """Record ``data`` to be published once the caller's transaction commits."""
        params, envelope = self.event_params(data, event_id=event_id)
        await session.execute(self._add, params)
        return envelope
