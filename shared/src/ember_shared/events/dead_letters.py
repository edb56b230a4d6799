"""The dead-letter stream: messages a consumer group gave up on, for staff to see and replay.

A consumer writes a dead letter (one entry on ``ember.events.dead-letter``) and acknowledges the
original message in one Redis transaction when:

- ``handler_failed``: its handler raised on the ``EVENTS_MAX_DELIVERIES``-th delivery;
- ``too_many_deliveries``: it was delivered more times than that without an answer (the process
  died while handling it, again and again);
- ``undecodable``: it is not an envelope, or its data does not fit the handler's type.

Reading and replaying (for the admin endpoints)::

    page = await list_dead_letters(redis, service="orders", limit=50)
    for letter in page.items: ...
    new_id = await replay_dead_letter(redis, page.items[0].id)

A replay appends the original message to its original stream again, marked for the one consumer
group that gave up on it (other groups acknowledge and skip it), and removes the dead letter, in
one step, so the same letter cannot be replayed twice. If it fails again it comes back as a new
dead letter. A group that had in fact handled the event skips it (``handled_events``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from redis.asyncio import Redis

from ember_shared.events.envelope import DEAD_LETTER_STREAM, Envelope
from ember_shared.events.wire import DATA_FIELD, REPLAY_FOR_FIELD, payload_of

#: Longest error text kept on a dead letter.
MAX_ERROR_CHARS = 4_000
#: Entries a listing looks through at most when it filters by service.
MAX_SCAN = 10_000

_ENTRY_ID = re.compile(r"\d{1,20}(-\d{1,20})?")

REASONS = ("handler_failed", "too_many_deliveries", "undecodable")


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One message a consumer group gave up on."""

    #: The dead letter's own id (its entry id on the dead-letter stream).
    id: str
    #: The consumer group (= the consuming service) that gave up.
    service: str
    #: The stream it came from, e.g. ``ember.events.payment.succeeded.v1``.
    stream: str
    #: Its entry id on that stream.
    message_id: str
    event_id: str
    event_type: str
    producer: str
    correlation_id: str
    #: The consumer (service-host-pid) that gave up on it.
    consumer: str
    #: The handlers that were to run, comma separated.
    handler: str
    reason: str
    error: str
    #: How many times it was delivered.
    attempts: Annotated[int, msgspec.Meta(ge=0)]
    failed_at: dt.datetime
    #: The envelope as JSON text (or the raw entry, for an undecodable one).
    payload: str


class DeadLetterPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[DeadLetter]
    #: Pass as ``before`` to get the next (older) page; ``None`` when there is none.
    next_before: str | None


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", errors="replace") if value is not None else ""


@dataclass(frozen=True)
class FailedDelivery:
    """The stream message a consumer gives up on, and where it was read."""

    stream: str
    group: str
    consumer: str
    message_id: bytes
    fields: dict[bytes, bytes]
    envelope: Envelope | None


async def write_dead_letter(
    redis: Redis,
    delivery: FailedDelivery,
    *,
    handler: str,
    reason: str,
    error: str,
    attempts: int,
    maxlen: int,
) -> bytes:
    """Record a dead letter and acknowledge the original message, atomically."""
    stream, group, fields, envelope = (
        delivery.stream,
        delivery.group,
        delivery.fields,
        delivery.envelope,
    )
    payload = fields.get(DATA_FIELD.encode())
    if payload is None:
        # Not one of ours: keep every field so nothing is lost.
        payload = msgspec.json.encode({_text(k): _text(v) for k, v in fields.items()})
    entry: dict[str, bytes | str | int] = {
        "service": group,
        "stream": stream,
        "message_id": delivery.message_id,
        "event_id": envelope.id if envelope else _text(fields.get(b"event_id")),
        "event_type": envelope.type if envelope else _text(fields.get(b"type")),
        "producer": envelope.producer if envelope else "",
        "correlation_id": envelope.correlation_id if envelope else "",
        "consumer": delivery.consumer,
        "handler": handler,
        "reason": reason,
        "error": error[:MAX_ERROR_CHARS],
        "attempts": attempts,
        "failed_at": dt.datetime.now(dt.UTC).isoformat(),
        "payload": payload,
    }
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(DEAD_LETTER_STREAM, entry, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        pipe.xack(stream, group, delivery.message_id)
        dead_id, _acked = await pipe.execute()
    return bytes(dead_id)


def _parse(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    failed_at_text = _text(fields.get(b"failed_at"))
    try:
        failed_at = dt.datetime.fromisoformat(failed_at_text)
    except ValueError:
        # The entry id is the time Redis stored it, in milliseconds.
        millis = int(entry_id.split(b"-")[0])
        failed_at = dt.datetime.fromtimestamp(millis / 1000, dt.UTC)
    attempts_text = _text(fields.get(b"attempts"))
    return DeadLetter(
        id=entry_id.decode(),
        service=_text(fields.get(b"service")),
        stream=_text(fields.get(b"stream")),
        message_id=_text(fields.get(b"message_id")),
        event_id=_text(fields.get(b"event_id")),
        event_type=_text(fields.get(b"event_type")),
        producer=_text(fields.get(b"producer")),
        correlation_id=_text(fields.get(b"correlation_id")),
        consumer=_text(fields.get(b"consumer")),
        handler=_text(fields.get(b"handler")),
        reason=_text(fields.get(b"reason")),
        error=_text(fields.get(b"error")),
        attempts=int(attempts_text) if attempts_text.isdigit() else 0,
        failed_at=failed_at,
        payload=_text(payload_of(fields.get(b"payload") or b"")),
    )


async def list_dead_letters(
    redis: Redis,
    *,
    service: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> DeadLetterPage:
    """Dead letters, newest first, optionally only one service's; ``before`` pages on."""
    if not 1 <= limit <= 500:
        raise ValueError("limit must be between 1 and 500")
    if before is not None:
        if not _ENTRY_ID.fullmatch(before):
            raise ValueError("before must be a dead letter id (<millis>-<seq>)")
        if before in {"0-0", "0"}:
            return DeadLetterPage(items=[], next_before=None)  # nothing is older
    items: list[DeadLetter] = []
    upper = f"({before}" if before else "+"
    scanned = 0
    chunk = limit if service is None else max(limit, 200)
    while len(items) < limit and scanned < MAX_SCAN:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrevrange(  # type: ignore[assignment]
            DEAD_LETTER_STREAM, max=upper, min="-", count=chunk
        )
        if not entries:
            return DeadLetterPage(items=items, next_before=None)
        for entry_id, fields in entries:
            scanned += 1
            upper = f"({entry_id.decode()}"
            if service is None or _text(fields.get(b"service")) == service:
                items.append(_parse(entry_id, fields))
                if len(items) == limit:
                    return DeadLetterPage(items=items, next_before=entry_id.decode())
        if len(entries) < chunk:
            return DeadLetterPage(items=items, next_before=None)
    # Looked through MAX_SCAN entries: let the caller continue from where this stopped.
    return DeadLetterPage(items=items, next_before=upper[1:] if upper != "+" else None)


async def get_dead_letter(redis: Redis, dead_letter_id: str) -> DeadLetter | None:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
        DEAD_LETTER_STREAM, min=dead_letter_id, max=dead_letter_id, count=1
    )
    return _parse(*entries[0]) if entries else None


async def count_dead_letters(redis: Redis) -> int:
    return int(await redis.xlen(DEAD_LETTER_STREAM))


#: Appends the dead letter's message to its stream for its group and deletes the letter, or
#: returns false when the letter is gone (already replayed or discarded). KEYS: dead-letter
#: stream, original stream. ARGV: dead letter id, maxlen.
_REPLAY = """
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entries == 0 then return false end
local raw = entries[1][2]
local f = {}
for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
if f['stream'] ~= KEYS[2] then return redis.error_reply('dead letter names another stream') end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
  '__data__', f['payload'], 'event_id', f['event_id'] or '', 'type', f['event_type'] or '',
  'replay_for', f['service'], 'replay_of', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return id
"""


async def replay_dead_letter(
    redis: Redis, dead_letter_id: str, *, maxlen: int = 100_000
) -> str | None:
    """Put a dead letter back on its stream for its group; the new entry id, or ``None`` if
    there is no such dead letter (any more)."""
    letter = await get_dead_letter(redis, dead_letter_id)
    if letter is None:
        return None
    script = redis.register_script(_REPLAY)
    result: Any = await script(
        keys=[DEAD_LETTER_STREAM, letter.stream], args=[dead_letter_id, maxlen]
    )
    if not result:
        return None
    return result.decode() if isinstance(result, bytes) else str(result)


async def discard_dead_letter(redis: Redis, dead_letter_id: str) -> bool:
    """Delete a dead letter without replaying it; ``False`` if there was none."""
    return bool(await redis.xdel(DEAD_LETTER_STREAM, dead_letter_id))


__all__ = [
    "REASONS",
    "REPLAY_FOR_FIELD",
    "DeadLetter",
    "DeadLetterPage",
    "count_dead_letters",
    "discard_dead_letter",
    "get_dead_letter",
    "list_dead_letters",
    "replay_dead_letter",
    "write_dead_letter",
]
