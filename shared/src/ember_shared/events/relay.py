"""The outbox relay: moves committed outbox rows onto their Redis streams.

Each pass locks a batch of unpublished rows (``FOR UPDATE SKIP LOCKED``, so replicas share the
work and never send a row twice), appends each to its stream and marks it published, all in one
transaction. A row whose append fails keeps ``published_at`` empty, gets ``attempts`` + 1 and
``last_error``, and is sent again on a later pass; while Postgres or Redis is down the relay backs
off (capped) and carries on when they return.

Appending goes through a small Lua script that remembers each event id for
``EVENTS_PUBLISH_DEDUPE_TTL_S``: if Redis took a row but the commit that marks it published was
lost, the next pass does not append it a second time.

The relay wakes on ``NOTIFY ember_outbox_<schema>`` (sent by :class:`~ember_shared.events.Outbox`
on commit) and also polls: every ``EVENTS_RELAY_LISTENING_INTERVAL_MS`` while it listens, every
``EVENTS_RELAY_INTERVAL_MS`` while it cannot (and after a reconnect it passes at once, for what
was committed while it was deaf). Polling every 200 ms while listening cost each idle service
about five transactions a second.
While it backs off after a failed pass, commits do not wake it: during an outage every new
order would otherwise cut the wait short and the relay would hammer the dead server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from sqlalchemy import Integer, MetaData, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ember_shared.events.envelope import Envelope
from ember_shared.events.tables import event_tables
from ember_shared.events.wire import entry_fields
from ember_shared.pg_listen import NotifyListener
from ember_shared.settings import EventSettings
from ember_shared.tracing import span_from

log = structlog.get_logger("ember.events.relay")

#: Appends an entry unless this event id was appended recently. KEYS: stream, dedupe key.
#: ARGV: maxlen, ttl ms, then field/value pairs. Returns {1, id} when appended, {0, id} if not.
_PUBLISH_ONCE = """
local seen = redis.call('GET', KEYS[2])
if seen then return {0, seen} end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[2], id, 'PX', ARGV[2])
return {1, id}
"""

#: How often published rows older than the retention are deleted.
_PRUNE_EVERY_S = 600.0
_PRUNE_CHUNK = 1_000


def notify_channel(schema: str | None) -> str:
    """The Postgres NOTIFY channel the relay of ``schema`` listens on."""
    return f"ember_outbox_{schema or 'public'}"


def dedupe_key(stream: str, event_id: str) -> str:
    # The hash tag puts the key in the stream's cluster slot, as a script's keys must share one.
    return f"{{{stream}}}:published:{event_id}"


@dataclass
class RelayStats:
    published: int = 0
    #: Rows Redis had already taken (a retry after a lost commit); not appended again.
    deduplicated: int = 0
    failed_passes: int = 0
    last_error: str | None = None
    last_success_at: float | None = None


class OutboxRelay:
    """Publishes one service's outbox. ``relay_once()`` is one pass; ``run()`` loops forever."""

    def __init__(
        self,
        producer: str,
        events: EventSettings,
        engine: AsyncEngine,
        metadata: MetaData,
        redis: Redis,
    ) -> None:
        self.producer = producer
        self.events = events
        self.engine = engine
        self.table, _ = event_tables(metadata)
        self.channel = notify_channel(metadata.schema)
        self.redis = redis
        self.stats = RelayStats()
        self._publish = redis.register_script(_PUBLISH_ONCE)
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._listener = NotifyListener(
            engine,
            self.channel,
            self._wakeup.set,
            retry_s=max(events.relay_max_backoff_ms / 1000, 1.0),
        )
        self._pruned_at = 0.0
        self._stopping = False
        # Claimed and marked published in one statement (the lock and the mark were two round
        # trips): the rows stay locked until the commit, and a row whose append fails is put
        # back (published_at empty again) before it, so a row is published only if Redis took
        # it; a pass cut short rolls the mark back with the claim. Built once with a bound
        # batch size: the statement memoizes its cache key (every pass runs it, empty or not).
        claimed = (
            select(self.table.c.id)
            .where(self.table.c.published_at.is_(None))
            .order_by(self.table.c.created_at, self.table.c.id)
            .limit(bindparam("batch", type_=Integer))
            .with_for_update(skip_locked=True)
            .cte("claimed")
        )
        self._claim = (
            update(self.table)
            .where(self.table.c.id.in_(select(claimed.c.id)))
            .values(published_at=func.now(), attempts=self.table.c.attempts + 1)
            .returning(
                self.table.c.id,
                self.table.c.type,
                self.table.c.stream,
                self.table.c.envelope,
                self.table.c.created_at,
            )
        )

    async def relay_once(self) -> int:
        """Publish up to ``EVENTS_RELAY_BATCH`` rows, oldest first; return how many were sent.

        Raises the Redis error if a row could not be appended (after recording it on the row).
        """
        outbox = self.table
        failure: Exception | None = None
        async with self.engine.begin() as connection:
            # Claimed and marked at once (self._claim); oldest first, as they were written.
            rows = sorted(
                (await connection.execute(self._claim, {"batch": self.events.relay_batch})).all(),
                key=lambda row: (row.created_at, row.id),
            )
            if not rows:
                return 0
            results: list[Any]
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for row in rows:
                        await self._append(pipe, row.id, row.type, row.stream, row.envelope)
                    results = await pipe.execute(raise_on_error=False)
            except Exception as exc:  # recorded on the rows, raised below
                # Which appends Redis took is unknown; the dedupe keys make the retry safe.
                failure = exc
                results = [exc] * len(rows)
            sent = [
                row.id for row, result in zip(rows, results, strict=True) if not _failed(result)
            ]
            appended = sum(1 for r in results if not _failed(r) and int(r[0]) == 1)
            for row, result in zip(rows, results, strict=True):
                if _failed(result):
                    failure = failure or result
                    await connection.execute(
                        update(outbox)
                        .where(outbox.c.id == row.id)
                        .values(published_at=None, last_error=_describe(result)[:2000])
                    )
        self.stats.published += appended
        self.stats.deduplicated += len(sent) - appended
        if failure is not None:
            raise failure
        return len(sent)

    async def _append(
        self, pipe: Any, event_id: Any, event_type: str, stream: str, envelope: bytes
    ) -> None:
        correlation_id = traceparent = ""
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            decoded = msgspec.json.decode(envelope, type=Envelope)
            correlation_id, traceparent = decoded.correlation_id, decoded.traceparent
        fields = await entry_fields(
            envelope,
            event_id=str(event_id),
            event_type=event_type,
            correlation_id=correlation_id,
            producer=self.producer,
        )
        args: list[Any] = [self.events.stream_maxlen, self.events.publish_dedupe_ttl_s * 1000]
        for key, value in fields.items():
            args += [key, value]
        # The relay's step shows in the trace that wrote the event (none for untraced events).
        step = (
            span_from(
                traceparent,
                f"publish {event_type}",
                kind=SpanKind.PRODUCER,
                attributes={"messaging.system": "redis", "messaging.destination.name": stream},
            )
            if traceparent
            else contextlib.nullcontext()
        )
        with step:
            await self._publish(
                keys=[stream, dedupe_key(stream, str(event_id))], args=args, client=pipe
            )

    async def prune(self) -> int:
        """Delete published rows older than ``EVENTS_OUTBOX_RETENTION_HOURS``; return how many."""
        outbox = self.table
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(hours=self.events.outbox_retention_hours)
        total = 0
        while True:
            async with self.engine.begin() as connection:
                chunk = (
                    select(outbox.c.id)
                    .where(outbox.c.published_at.is_not(None), outbox.c.published_at < cutoff)
                    .limit(_PRUNE_CHUNK)
                    .scalar_subquery()
                )
                result = await connection.execute(delete(outbox).where(outbox.c.id.in_(chunk)))
            removed = int(result.rowcount or 0)
            total += removed
            if removed < _PRUNE_CHUNK:
                return total

    async def pending(self) -> int:
        """How many rows wait to be published (for probes and tests)."""
        outbox = self.table
        async with self.engine.connect() as connection:
            count = await connection.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            )
        return int(count or 0)

    async def run(self) -> None:
        """Relay until :meth:`request_stop` (or cancellation), backing off while Postgres or
        Redis is down."""
        interval = self.events.relay_interval_ms / 1000
        ceiling = max(self.events.relay_max_backoff_ms / 1000, interval)
        backoff = interval
        self._stopping = False
        self._stop_requested.clear()
        try:
            while not self._stopping:
                if self.events.relay_listen:
                    await self._listener.ensure()
                self._wakeup.clear()
                try:
                    sent = await self.relay_once()
                    await self._maybe_prune()
                except Exception as exc:  # the relay must outlive any outage
                    self.stats.failed_passes += 1
                    self.stats.last_error = _describe(exc)
                    log.warning(
                        "outbox_relay_failed",
                        error=_describe(exc),
                        retry_in_ms=int(backoff * 1000),
                    )
                    # Jitter keeps the replicas of a service from retrying in lockstep.
                    await self._pause(backoff * random.uniform(0.8, 1.2), wake_on_commit=False)
                    backoff = min(backoff * 2, ceiling)
                    continue
                if self.stats.failed_passes and backoff > interval:
                    log.info("outbox_relay_recovered")
                backoff = interval
                self.stats.last_success_at = time.monotonic()
                if sent < self.events.relay_batch:
                    await self._pause(self.poll_interval_s())
        finally:
            await self._listener.close()

    def poll_interval_s(self) -> float:
        """How long an idle relay waits for a NOTIFY before it looks anyway."""
        interval = self.events.relay_interval_ms / 1000
        if self._listener.listening:
            return max(interval, self.events.relay_listening_interval_ms / 1000)
        return interval

    def request_stop(self) -> None:
        """Finish the pass in hand (so no transaction is cut off) and return from :meth:`run`."""
        self._stopping = True
        self._stop_requested.set()
        self._wakeup.set()

    async def _pause(self, seconds: float, *, wake_on_commit: bool = True) -> None:
        """Sleep, unless a stop request (or, with ``wake_on_commit``, a NOTIFY) comes first."""
        if self._stopping:
            return
        wakeup = self._wakeup if wake_on_commit else self._stop_requested
        # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that lands while the
        # wakeup is being set, and stop() would then hang until cancelled again.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wakeup.wait()

    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < _PRUNE_EVERY_S:
            return
        self._pruned_at = now
        removed = await self.prune()
        if removed:
            log.info("outbox_pruned", rows=removed)


def _failed(result: Any) -> bool:
    return isinstance(result, BaseException)


def _describe(exc: Any) -> str:
    return f"{type(exc).__name__}: {exc}"
