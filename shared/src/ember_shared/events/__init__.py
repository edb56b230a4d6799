"""The event backbone: envelopes, the transactional outbox, the relay and idempotent consumers.

Publishing (in the transaction that makes the change; invariant 9)::

    from ember_shared.events import Outbox
    from ember_shared.events.contracts import PaymentSucceeded

    outbox = Outbox("checkout", Base.metadata)
    await outbox.add(session, PaymentSucceeded(...))   # committed with the request, or never

The row waits in ``<schema>.outbox_events``; the relay (started by ``create_service_app``)
appends it to the stream ``stream_for(type)`` = ``ember.events.<type>`` and marks it published.
A rolled-back transaction publishes nothing; an outage of Redis or Postgres delays, never loses.

Handling (each service is one consumer group per stream it reads)::

    from ember_shared.events import Envelope, EventHandlers

    handlers = EventHandlers("orders")

    @handlers.on(PaymentSucceeded)
    async def mark_paid(event: Envelope, data: PaymentSucceeded, session: AsyncSession) -> None:
        ...  # never commit: the consumer owns the transaction

    create_service_app(ServiceSpec(..., base=Base, events=handlers))

A handler may declare more parameters after ``session``: each is resolved by name, per call,
from ``EventHandlers(service, dependencies={name: provider})`` or the app's
``ServiceSpec(event_dependencies=...)`` (see :mod:`ember_shared.events.handlers`). Work that must
wait for the commit (a cache invalidation) goes through ``ember_shared.db.after_commit(session,
callback)``; the consumer awaits it before acknowledging. Tests hand an event to a running
service with ``app.state.events.consumer.handle(envelope)``: the same dedupe and transaction.

A handler runs in a transaction that also inserts ``(event.id, handler name)`` into
``<schema>.handled_events``; a redelivered event is skipped. The message is acknowledged after
the commit. A handler that raises is retried after ``EVENTS_RECLAIM_IDLE_MS`` (also how a dead
replica's messages are taken over); on the ``EVENTS_MAX_DELIVERIES``-th failure, or if the payload
cannot be decoded, the message goes to ``DEAD_LETTER_STREAM``. The handler sees the event's
correlation id in ``current_correlation_id()`` and in every log line, and events it adds to its
own outbox carry it on.

A handler slower than ``EVENTS_RECLAIM_IDLE_MS`` is not harmed: a second delivery waits on the
first one's handled row and then skips. A delivery that fails because Postgres or Redis is
unreachable does not count towards ``EVENTS_MAX_DELIVERIES``.

Dead letters (:mod:`ember_shared.events.dead_letters`, for the admin endpoints; ``redis`` is a
``redis.asyncio.Redis`` returning bytes, like ``app.state.redis``)::

    page = await list_dead_letters(redis, service="orders", limit=50, before=None)
    await replay_dead_letter(redis, page.items[0].id)   # back on its stream, for its group
    await discard_dead_letter(redis, letter_id)

Runtime (:class:`~ember_shared.events.runtime.EventRuntime`, ``app.state.events``;
``EventRuntime(settings, engine, metadata, handlers, consumer_name=None)``):
``start()`` / ``stop()``, ``relay_once()`` (one relay pass, for tests), ``.relay``
(:class:`~ember_shared.events.relay.OutboxRelay`: ``stats``, ``pending()``) and ``.consumer``
(:class:`~ember_shared.events.consumer.EventConsumer`: ``running``, ``wait_started()``).
Tests that put an event on a stream themselves build its fields with
:func:`ember_shared.events.wire.entry_fields`, exactly as the relay does.

Settings (``EventSettings``, env ``EVENTS_*``): ``RELAY_INTERVAL_MS``, ``RELAY_BATCH``,
``RELAY_MAX_BACKOFF_MS``, ``RELAY_LISTEN``, ``PUBLISH_DEDUPE_TTL_S``, ``OUTBOX_RETENTION_HOURS``,
``STREAM_MAXLEN``, ``READ_BATCH``, ``RECLAIM_IDLE_MS``, ``RECLAIM_INTERVAL_MS``,
``MAX_DELIVERIES``, ``GROUP_START_ID``, ``SHUTDOWN_GRACE_MS``.
"""

from ember_shared.events.dead_letters import (
    DeadLetter,
    DeadLetterPage,
    discard_dead_letter,
    get_dead_letter,
    list_dead_letters,
    replay_dead_letter,
)
from ember_shared.events.envelope import DEAD_LETTER_STREAM, Envelope, EventData, stream_for
from ember_shared.events.handlers import EventHandlers
from ember_shared.events.outbox import Outbox

__all__ = [
    "DEAD_LETTER_STREAM",
    "DeadLetter",
    "DeadLetterPage",
    "Envelope",
    "EventData",
    "EventHandlers",
    "Outbox",
    "discard_dead_letter",
    "get_dead_letter",
    "list_dead_letters",
    "replay_dead_letter",
    "stream_for",
]
