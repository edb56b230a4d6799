"""Consuming events: FastStream consumer groups on Redis Streams, handled exactly once.

For every event type a service handles there is one consumer group, named after the service,
on the type's stream. Each replica reads it as its own consumer (``<service>-<host>-<pid>``)
through two FastStream subscribers:

- a reader of new messages (``XREADGROUP ... >``, ``EVENTS_READ_BATCH`` at a time), which
  handles them one after the other, or up to ``concurrency`` at once where the stream's
  handlers allow it (``EventHandlers.on(..., concurrency=n)``: events that need no order among
  themselves, which would otherwise queue behind each other's transactions under load);
- a reclaimer (``XAUTOCLAIM``, every ``EVENTS_RECLAIM_INTERVAL_MS``) that takes over messages
  left pending longer than ``EVENTS_RECLAIM_IDLE_MS``: those of a replica that died, and those
  whose handler failed (a group reading ``>`` never sees them again otherwise).

Each message is handled in one database transaction that first inserts
``(event_id, handler)`` into the service's ``handled_events`` (``ON CONFLICT DO NOTHING``): if the
row was already there the handler is skipped, so a redelivered or duplicated event changes
nothing. The consumer opens that transaction itself: ``BEGIN`` and the handled rows go to
Postgres as one simple query (one round trip, not two), then the handler runs on an ORM session
that sends no ``BEGIN`` of its own, then ``COMMIT``. The message is acknowledged only after the
commit. When the handler raises, the transaction rolls back and the message stays pending for
the reclaimer; on its ``EVENTS_MAX_DELIVERIES``-th delivery it goes to the dead-letter stream
instead (:mod:`ember_shared.events.dead_letters`). Losing the database or Redis mid-handler does
not use up a delivery (the count is put back), so an outage does not dead-letter healthy events.

While a message is handled, its correlation id is bound to the structlog context and to
:data:`ember_shared.logging.correlation_id_var`, so logs and events the handler writes carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
import structlog
from faststream.middlewares import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.message import RedisStreamMessage
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import MetaData, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from ember_shared.db import abandon_transaction, after_commit_done, simple_query, sql_literal
from ember_shared.events.dead_letters import FailedDelivery, write_dead_letter
from ember_shared.events.envelope import Envelope, EventData, stream_for
from ember_shared.events.handlers import (
    Dependencies,
    EventHandlers,
    Provider,
    RegisteredHandler,
)
from ember_shared.events.tables import event_tables
from ember_shared.events.wire import REPLAY_FOR_FIELD
from ember_shared.logging import correlation_id_var
from ember_shared.settings import EventSettings
from ember_shared.tracing import span_from, tracer

log = structlog.get_logger("ember.events.consumer")
faststream_log = structlog.get_logger("faststream")

#: How long one XREADGROUP blocks waiting for new messages (stop cancels it at once; a
#: message wakes it at once): each return is a FastStream pass, one per stream and replica,
#: ~20 a second on an idle stack at 1 s.
READ_BLOCK_MS = 5_000
#: How often the consumer checks that every subscriber is still reading.
SUPERVISE_EVERY_S = 5.0
#: How long a probe waits for another transaction that holds an event's handled row.
PROBE_WAIT_MS = 500
_LOCK_NOT_AVAILABLE = "55P03"
#: SQLSTATEs worth retrying without counting a delivery: serialization failure, deadlock,
#: too many connections, shutting down, cannot connect now.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "53300", "57P01", "57P02", "57P03"})


def default_consumer_name(service: str) -> str:
    """Unique per replica: a group hands each message to one consumer, and reclaims by name."""
    return f"{service}-{socket.gethostname()}-{os.getpid()}"


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means the database or Redis was unreachable, not that the handler failed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            OperationalError
            | InterfaceError
            | PoolTimeoutError
            | RedisConnectionError
            | RedisTimeoutError
            | ConnectionError
            | TimeoutError,
        ):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str) and (
            sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith("08")
        ):
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def _sqlstate(exc: BaseException) -> str | None:
    current: BaseException | None = exc
    for _ in range(6):
        if current is None:
            return None
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str):
            return sqlstate
        current = getattr(current, "orig", None) or current.__cause__
    return None


class _Undecodable(Exception):
    pass


class _FastStreamLog:
    """FastStream's own log lines, through structlog; its per-message and task chatter
    (INFO and below) would only repeat ours."""

    def log(
        self,
        level: int,
        msg: Any,
        /,
        *,
        exc_info: Any = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if level < logging.WARNING:
            return
        context = {k: v for k, v in (extra or {}).items() if isinstance(v, str | int)}
        faststream_log.log(level, "faststream", message=str(msg), exc_info=exc_info, **context)


async def _whole_message(message: Any) -> Any:
    # What the handler is called with (the broker applies no types): the message itself. The
    # envelope is decoded by the consumer, so a bad payload reaches it (and the dead-letter
    # stream) instead of failing inside FastStream.
    return message


class EventConsumer:
    """Runs a service's :class:`EventHandlers` against Redis Streams through FastStream."""

    def __init__(
        self,
        handlers: EventHandlers,
        events: EventSettings,
        *,
        redis_url: str,
        engine: AsyncEngine,
        metadata: MetaData,
        redis: Redis,
        consumer_name: str | None = None,
        dependencies: Mapping[str, Provider] | None = None,
    ) -> None:
        if not handlers.handlers:
            raise ValueError("an EventConsumer needs at least one handler")
        # The app's own providers (ServiceSpec.event_dependencies) win over the handlers'.
        self.dependencies = Dependencies(
            {**handlers.dependencies, **(dependencies or {})}, handlers.handlers
        )
        self.group = handlers.service
        self.consumer = consumer_name or default_consumer_name(handlers.service)
        self.events = events
        self.redis_url = redis_url
        self.redis = redis
        self.engine = engine
        _, self.handled_table = event_tables(metadata)
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Sessions whose transaction the consumer opens and closes itself (BEGIN with the
        # handled rows, see _run_handlers): SQLAlchemy, in autocommit, sends no BEGIN of its own.
        self.manual_sessions = async_sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
        self._handled_insert = (
            f"INSERT INTO {engine.dialect.identifier_preparer.format_table(self.handled_table)}"
            " (event_id, handler, event_type) VALUES"
        )
        self.streams: dict[str, list[RegisteredHandler]] = defaultdict(list)
        for handler in handlers.handlers:
            self.streams[stream_for(handler.event_type)].append(handler)
        self.broker: RedisBroker | None = None
        self._background: list[asyncio.Task[None]] = []
        self._started = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.broker is not None and all(sub.running for sub in self.broker.subscribers)

    async def start(self) -> None:
        """Start reading. If Redis is down, keep trying in the background and return."""
        try:
            await self._start_broker()
        except Exception as exc:  # the service still serves; we retry
            log.warning("event_consumer_start_failed", group=self.group, error=repr(exc))
            self._background.append(asyncio.create_task(self._start_later()))
        self._background.append(asyncio.create_task(self._supervise()))

    async def wait_started(self) -> None:
        """Return once reading has started (use with ``asyncio.timeout``)."""
        await self._started.wait()

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        await self._stop_broker()

    async def ensure_groups(self) -> None:
        """Create each stream and consumer group unless they exist (FastStream's would start
        at ``$`` and miss what was published before the group existed)."""
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(
                    stream, self.group, id=self.events.group_start_id, mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _start_broker(self) -> None:
        await self.ensure_groups()
        broker = self._build_broker()
        try:
            await broker.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await broker.stop()
            raise
        self.broker = broker
        self._started.set()
        log.info(
            "event_consumer_started",
            group=self.group,
            consumer=self.consumer,
            streams=sorted(self.streams),
        )

    async def _stop_broker(self) -> None:
        broker, self.broker = self.broker, None
        if broker is not None:
            with contextlib.suppress(Exception):
                await broker.stop()

    async def _start_later(self) -> None:
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            try:
                await self._start_broker()
            except Exception as exc:
                log.warning("event_consumer_start_failed", group=self.group, error=repr(exc))
                delay = min(delay * 2, 10.0)
            else:
                return

    async def _supervise(self) -> None:
        """Restart reading when a subscriber stopped for good (FastStream stops one whose
        group vanished, e.g. after the stream was deleted)."""
        while True:
            await asyncio.sleep(SUPERVISE_EVERY_S)
            if self.broker is None or self.running:
                continue
            log.warning("event_consumer_restarting", group=self.group)
            await self._stop_broker()
            try:
                await self._start_broker()
            except Exception as exc:
                log.warning("event_consumer_start_failed", group=self.group, error=repr(exc))

    def _build_broker(self) -> RedisBroker:
        broker = RedisBroker(
            self.redis_url,
            graceful_timeout=self.events.shutdown_grace_ms / 1000,
            logger=_FastStreamLog(),
            socket_connect_timeout=5,
            socket_timeout=max(10.0, READ_BLOCK_MS / 1000 * 3),
            health_check_interval=30,
            client_name=self.consumer,
            # With types applied, FastDepends found the message through its Context annotation
            # by running a sync getter in a worker thread, for every message: a thread hop and
            # the GIL handed back and forth, ~3 % of a consuming service's CPU under load.
            apply_types=False,
        )
        for stream, handlers in self.streams.items():
            reader = broker.subscriber(
                stream=StreamSub(
                    stream,
                    group=self.group,
                    consumer=self.consumer,
                    max_records=self.events.read_batch,
                    polling_interval=READ_BLOCK_MS,
                ),
                max_workers=min(handler.concurrency for handler in handlers),
                ack_policy=AckPolicy.MANUAL,
                no_reply=True,
                decoder=_whole_message,
                title=f"{self.group}:{stream}",
            )
            reader(self._handler(stream, reclaimed=False))
            reclaimer = broker.subscriber(
                stream=StreamSub(
                    stream,
                    group=self.group,
                    consumer=self.consumer,
                    min_idle_time=self.events.reclaim_idle_ms,
                    polling_interval=self.events.reclaim_interval_ms,
                ),
                ack_policy=AckPolicy.MANUAL,
                no_reply=True,
                decoder=_whole_message,
                title=f"{self.group}:{stream}:reclaim",
            )
            reclaimer(self._handler(stream, reclaimed=True))
        return broker

    def _handler(
        self, stream: str, *, reclaimed: bool
    ) -> Callable[[RedisStreamMessage], Awaitable[None]]:
        async def handle(message: RedisStreamMessage) -> None:
            await self.process(message, stream, reclaimed=reclaimed)

        handle.__name__ = f"{self.group}_{stream}_{'reclaim' if reclaimed else 'read'}"
        return handle

    # -- one message ------------------------------------------------------------------------

    async def process(self, message: RedisStreamMessage, stream: str, *, reclaimed: bool) -> None:
        """Handle one delivered message: exactly once in effect, acknowledged after commit."""
        raw = message.raw_message
        fields: dict[bytes, bytes] = raw["data"]
        message_id: bytes = raw["message_ids"][0]
        replay_for = fields.get(REPLAY_FOR_FIELD.encode())
        try:
            if replay_for is not None and replay_for.decode(errors="replace") != self.group:
                # A dead letter replayed for another service's group.
                await message.ack()
                return
            attempts = await message.get_delivery_count() if reclaimed else 1
            handlers = self.streams[stream]
            try:
                envelope, payloads = self._decode(message.body, handlers)
            except _Undecodable as exc:
                log.error(  # noqa: TRY400 - a traceback would add nothing
                    "event_undecodable", stream=stream, message_id=message_id, error=str(exc)
                )
                await self._dead_letter(
                    message,
                    stream,
                    envelope=None,
                    handlers=handlers,
                    reason="undecodable",
                    error=str(exc),
                    attempts=attempts,
                )
                return
            with span_from(
                envelope.traceparent,
                f"{self.group} handle {envelope.type}",
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "redis",
                    "messaging.destination.name": stream,
                    "messaging.consumer.group.name": self.group,
                    "messaging.message.id": envelope.id,
                    "ember.delivery": attempts,
                },
            ):
                await self._handle(message, stream, envelope, payloads, attempts)
        except Exception as exc:  # left pending; the reclaimer retries it
            log.exception(
                "event_processing_failed", stream=stream, message_id=message_id, error=repr(exc)
            )

    def _decode(
        self, body: bytes, handlers: list[RegisteredHandler]
    ) -> tuple[Envelope, list[tuple[RegisteredHandler, EventData]]]:
        try:
            envelope = msgspec.json.decode(body, type=Envelope)
            uuid.UUID(envelope.id)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise _Undecodable(f"not an event envelope: {exc}") from exc
        payloads: list[tuple[RegisteredHandler, EventData]] = []
        for handler in handlers:
            if handler.event_type != envelope.type:
                continue
            try:
                payloads.append((handler, envelope.decode(handler.data_type)))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise _Undecodable(f"data does not fit {envelope.type}: {exc}") from exc
        if not payloads:
            raise _Undecodable(f"no handler for event type {envelope.type!r} on this stream")
        return envelope, payloads

    async def _handle(
        self,
        message: RedisStreamMessage,
        stream: str,
        envelope: Envelope,
        payloads: list[tuple[RegisteredHandler, EventData]],
        attempts: int,
    ) -> None:
        token = correlation_id_var.set(envelope.correlation_id)
        try:
            with structlog.contextvars.bound_contextvars(
                correlation_id=envelope.correlation_id,
                event_id=envelope.id,
                event_type=envelope.type,
                attempts=attempts,
            ):
                handlers = [handler for handler, _ in payloads]
                if attempts > self.events.max_deliveries:
                    state = await self._probe(envelope, handlers)
                    if state == "done":
                        await message.ack()
                        log.info("event_already_handled")
                        return
                    if state == "busy":
                        # Slow, not dead: another delivery of it is being handled right now.
                        log.warning("event_still_in_progress")
                        return
                    log.error("event_delivered_too_often", max=self.events.max_deliveries)
                    await self._dead_letter(
                        message,
                        stream,
                        envelope=envelope,
                        handlers=handlers,
                        reason="too_many_deliveries",
                        error=f"delivered {attempts} times without being handled",
                        attempts=attempts,
                    )
                    return
                try:
                    ran = await self._run_handlers(envelope, payloads)
                except Exception as exc:
                    await self._failed(
                        message,
                        stream,
                        envelope=envelope,
                        handlers=handlers,
                        attempts=attempts,
                        exc=exc,
                    )
                    return
                await message.ack()
                if ran:
                    log.info("event_handled", handlers=ran)
                else:
                    log.info("event_already_handled")
        finally:
            correlation_id_var.reset(token)

    async def _run_handlers(
        self, envelope: Envelope, payloads: list[tuple[RegisteredHandler, EventData]]
    ) -> list[str]:
        event_id = uuid.UUID(envelope.id)
        ran: list[str] = []
        async with self.manual_sessions() as session:
            connection = await session.connection()
            driver = (await connection.get_raw_connection()).driver_connection
            ended = False
            try:
                # BEGIN and the handled rows in one round trip (a simple query may hold
                # several statements); the rows are still the transaction's first write, so
                # another delivery of the event waits on them (and _probe reads it as busy).
                claimed = await self._begin_claiming(driver, event_id, envelope.type, payloads)
                apart = 0 < claimed < len(payloads)
                if apart:
                    # Some of its handlers ran before and some did not (one was added since):
                    # which ones, only a row each can tell (below, on the ORM's transaction).
                    await simple_query(driver, "ROLLBACK")
                elif claimed:
                    for handler, data in payloads:
                        with tracer().start_as_current_span(handler.name):
                            kwargs = await self.dependencies.resolve(
                                handler, envelope, data, session
                            )
                            await handler.fn(envelope, data, session, **kwargs)
                        ran.append(handler.name)
                    await session.flush()
                if not apart and await simple_query(driver, "COMMIT") != "COMMIT":
                    # Postgres answers COMMIT with ROLLBACK when a statement had failed
                    # (and a handler went on regardless): nothing was done, so not acked.
                    raise RuntimeError("the event's transaction was rolled back at commit")
                ended = True
            finally:
                if not ended:
                    await abandon_transaction(connection, driver)
            if apart:
                await session.close()
                return await self._run_handlers_apart(envelope, payloads)
            # SQLAlchemy saw no transaction of its own: its commit only fires the session's
            # after-commit hooks, now that Postgres has committed.
            await session.commit()
            await after_commit_done(session)
        return ran

    async def _begin_claiming(
        self,
        driver: Any,
        event_id: uuid.UUID,
        event_type: str,
        payloads: list[tuple[RegisteredHandler, EventData]],
    ) -> int:
        """``BEGIN`` and the handled rows of ``payloads``; how many rows were new."""
        rows = ", ".join(
            f"('{event_id}', {sql_literal(handler.name)}, {sql_literal(event_type)})"
            for handler, _ in payloads
        )
        status = await simple_query(
            driver, f"BEGIN; {self._handled_insert} {rows} ON CONFLICT DO NOTHING"
        )
        return int(status.rsplit(" ", 1)[1])

    async def _run_handlers_apart(
        self, envelope: Envelope, payloads: list[tuple[RegisteredHandler, EventData]]
    ) -> list[str]:
        table = self.handled_table
        event_id = uuid.UUID(envelope.id)
        ran: list[str] = []
        async with self.sessions() as session:
            async with session.begin():
                for handler, data in payloads:
                    inserted = await session.execute(
                        pg_insert(table)
                        .values(event_id=event_id, handler=handler.name, event_type=envelope.type)
                        .on_conflict_do_nothing()
                        .returning(table.c.event_id)
                    )
                    if inserted.first() is None:
                        continue
                    with tracer().start_as_current_span(handler.name):
                        kwargs = await self.dependencies.resolve(handler, envelope, data, session)
                        await handler.fn(envelope, data, session, **kwargs)
                    ran.append(handler.name)
            # Before the acknowledgement: what the commit set off is done when the event is.
            await after_commit_done(session)
        return ran

    async def handle(self, envelope: Envelope) -> list[str]:
        """Run this service's handlers of ``envelope`` as a delivery does (same transaction,
        same dedupe, same dependencies and after-commit hooks), without Redis: for tests that
        hand an event straight to a service. The names of the handlers that ran (none when
        it was handled before)."""
        handlers = [h for hs in self.streams.values() for h in hs]
        _, payloads = self._decode(msgspec.json.encode(envelope), handlers)
        return await self._run_handlers(envelope, payloads)

    async def _probe(self, envelope: Envelope, handlers: list[RegisteredHandler]) -> str:
        """Whether an event is ``done`` (handled), ``busy`` (a transaction handling it is open,
        so inserting its handled row would wait on that one) or ``free``. Changes nothing."""
        table = self.handled_table
        event_id = uuid.UUID(envelope.id)
        state = "done"
        async with self.engine.connect() as connection:
            transaction = await connection.begin()
            try:
                await connection.execute(text(f"SET LOCAL lock_timeout = '{PROBE_WAIT_MS}ms'"))
                for handler in handlers:
                    inserted = await connection.execute(
                        pg_insert(table)
                        .values(event_id=event_id, handler=handler.name, event_type=envelope.type)
                        .on_conflict_do_nothing()
                        .returning(table.c.event_id)
                    )
                    if inserted.first() is not None:
                        state = "free"
            except DBAPIError as exc:
                if _sqlstate(exc) != _LOCK_NOT_AVAILABLE:
                    raise
                state = "busy"
            finally:
                await transaction.rollback()
        return state

    async def _failed(
        self,
        message: RedisStreamMessage,
        stream: str,
        *,
        envelope: Envelope,
        handlers: list[RegisteredHandler],
        attempts: int,
        exc: Exception,
    ) -> None:
        if is_transient(exc):
            # The database or Redis is away: not the event's fault, so this delivery is not
            # counted and the message waits (pending) for the reclaimer.
            log.warning("event_handling_interrupted", error=repr(exc))
            with contextlib.suppress(Exception):
                await self._uncount_delivery(message, stream, attempts)
            return
        if attempts >= self.events.max_deliveries:
            log.exception("event_handler_failed", error=repr(exc), dead_letter=True)
            await self._dead_letter(
                message,
                stream,
                envelope=envelope,
                handlers=handlers,
                reason="handler_failed",
                error=repr(exc),
                attempts=attempts,
            )
            return
        log.exception(
            "event_handler_failed",
            error=repr(exc),
            retry_after_ms=self.events.reclaim_idle_ms,
        )

    async def _uncount_delivery(
        self, message: RedisStreamMessage, stream: str, attempts: int
    ) -> None:
        await self.redis.xclaim(
            stream,
            self.group,
            self.consumer,
            min_idle_time=0,
            message_ids=list(message.raw_message["message_ids"]),
            retrycount=max(attempts - 1, 0),
            justid=True,
        )

    async def _dead_letter(
        self,
        message: RedisStreamMessage,
        stream: str,
        *,
        envelope: Envelope | None,
        handlers: list[RegisteredHandler],
        reason: str,
        error: str,
        attempts: int,
    ) -> None:
        raw = message.raw_message
        dead_id = await write_dead_letter(
            self.redis,
            FailedDelivery(
                stream=stream,
                group=self.group,
                consumer=self.consumer,
                message_id=raw["message_ids"][0],
                fields=raw["data"],
                envelope=envelope,
            ),
            handler=",".join(h.name for h in handlers),
            reason=reason,
            error=error,
            attempts=attempts,
            maxlen=self.events.stream_maxlen,
        )
        log.error("event_dead_lettered", reason=reason, dead_letter_id=dead_id.decode())
