"""The event backbone: envelopes, the transactional outbox, the relay and idempotent consumers."""

from ember_shared.events.envelope import DEAD_LETTER_STREAM, Envelope, EventData, stream_for
from ember_shared.events.handlers import EventHandlers
from ember_shared.events.outbox import Outbox

__all__ = ["DEAD_LETTER_STREAM", "Envelope", "EventData", "EventHandlers", "Outbox", "stream_for"]
