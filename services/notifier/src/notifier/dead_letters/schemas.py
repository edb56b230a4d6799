"""The event dead-letter view's answers."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

#: A Redis stream entry id: ``<milliseconds>-<sequence>``.
ENTRY_ID_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}$"
ServiceName = Literal["identity", "catalog", "cart", "checkout", "orders", "notifier"]
Reason = Literal["handler_failed", "too_many_deliveries", "undecodable"]


class DeadLetterOut(msgspec.Struct, kw_only=True):
    id: Annotated[str, msgspec.Meta(description="The dead letter's id (its stream entry id).")]
    service: Annotated[str, msgspec.Meta(description="The consumer group that gave up.")]
    stream: str
    message_id: str
    event_id: str
    event_type: str
    producer: str
    correlation_id: str
    consumer: str
    handler: str
    reason: str
    error: str
    attempts: int
    failed_at: dt.datetime
    payload: Annotated[
        str,
        msgspec.Meta(
            description="The envelope as JSON; secrets in it (reset links, tokens) redacted."
        ),
    ]


class DeadLetterList(msgspec.Struct, kw_only=True):
    items: list[DeadLetterOut]
    #: Pass as ``before`` for the next (older) page; null on the last page.
    next_before: str | None
    #: Dead letters waiting, over every service.
    total: int


class Replayed(msgspec.Struct, kw_only=True):
    dead_letter_id: str
    service: str
    stream: str
    #: The new entry on the event's stream, which only ``service``'s consumer group handles.
    message_id: str
