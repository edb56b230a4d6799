"""How an envelope is laid out in a Redis stream entry.

The entry keeps FastStream's own layout (field ``__data__`` in its binary message format, whose
headers carry the correlation and event ids), so FastStream subscribers parse it natively, plus
two plain fields, ``event_id`` and ``type``, for people reading a stream with ``redis-cli``. A
replayed dead letter also carries ``replay_for`` (the one consumer group it is meant for) and
``replay_of`` (the dead letter's id).
"""

from __future__ import annotations

from faststream.redis.message import DATA_KEY
from faststream.redis.parser import BinaryMessageFormatV1

DATA_FIELD = DATA_KEY
EVENT_ID_FIELD = "event_id"
TYPE_FIELD = "type"
REPLAY_FOR_FIELD = "replay_for"
REPLAY_OF_FIELD = "replay_of"


async def entry_fields(
    envelope: bytes, *, event_id: str, event_type: str, correlation_id: str, producer: str
) -> dict[str, bytes]:
    """The fields of the stream entry that carries ``envelope`` (its JSON bytes)."""
    data = await BinaryMessageFormatV1.encode(
        message=envelope,
        reply_to=None,
        headers={"message_id": event_id, "event_type": event_type, "producer": producer},
        correlation_id=correlation_id,
    )
    return {
        DATA_FIELD: data,
        EVENT_ID_FIELD: event_id.encode(),
        TYPE_FIELD: event_type.encode(),
    }


def payload_of(data: bytes) -> bytes:
    """The envelope bytes inside a ``__data__`` value (raw bytes pass through unchanged)."""
    body, _headers = BinaryMessageFormatV1.parse(data)
    return body
