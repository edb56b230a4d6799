"""The versioned envelope every domain event travels in."""

from __future__ import annotations

import builtins
import datetime as dt
from typing import Any, ClassVar, TypeVar

import msgspec


class EventData(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event's payload. ``TYPE`` is its versioned name, e.g. ``payment.succeeded.v1``.

    A breaking change to a payload is a new type (``.v2``) published beside the old one until
    every consumer has moved.
    """

    TYPE: ClassVar[str] = ""
    #: The one service that publishes this type (its ``Outbox`` producer): the AsyncAPI
    #: document names it, and an outbox of another service refuses the type.
    PRODUCER: ClassVar[str] = ""


DataT = TypeVar("DataT", bound=EventData)


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    occurred_at: dt.datetime
    producer: str
    correlation_id: str
    data: msgspec.Raw = msgspec.Raw(b"{}")
    #: W3C trace context of the span that wrote the event ("" when not traced): the relay and
    #: every consumer continue that trace.
    traceparent: str = ""

    def decode(self, data_type: builtins.type[DataT]) -> DataT:
        return msgspec.json.decode(self.data, type=data_type)


def stream_for(event_type: str) -> str:
    """Each event type has its own Redis stream, so a service reads only what it handles."""
    return f"ember.events.{event_type}"


DEAD_LETTER_STREAM = "ember.events.dead-letter"


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value)
