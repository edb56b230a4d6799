"""Prometheus metrics: every service serves ``GET /metrics`` on its own port.

Caddy never routes ``/metrics`` (it answers 404 like ``/internal``): Prometheus scrapes each
service (each replica) directly on the backend network.

What every service exports, with a ``service`` label:

- ``ember_requests_total`` / ``ember_request_duration_seconds`` (Litestar's Prometheus
  middleware; ``path`` is the route template, ``status_code`` the answer);
- ``ember_outbox_backlog`` and ``ember_outbox_oldest_unpublished_seconds``;
- ``ember_consumer_lag`` and ``ember_consumer_pending`` per consumer group and stream;
- ``ember_dead_letters`` (letters of the service's consumer group);
- ``ember_webhooks_total`` (``provider``, ``outcome``), counted by :func:`record_webhook`.

The gauges are read when Prometheus scrapes (each source bounded by a timeout), so a scrape is
the truth of that moment and nothing polls in between. A service adds its own figures with
``ServiceSpec(metrics=[probe])``: ``async def probe(app: Litestar) -> None`` sets its gauges.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from litestar import Controller, Litestar, Request, get
from litestar.plugins.prometheus import PrometheusConfig
from litestar.response import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest
from sqlalchemy import func, select

from ember_shared.events.envelope import DEAD_LETTER_STREAM
from ember_shared.events.tables import event_tables

log = structlog.get_logger("ember.metrics")

MetricsProbe = Callable[[Litestar], Awaitable[None]]

METRICS_PATH = "/metrics"
#: A source that does not answer within this is skipped (its gauges keep their last value).
PROBE_TIMEOUT_S = 2.0
#: Dead-letter entries looked through per scrape at most.
DEAD_LETTER_SCAN = 10_000

OUTBOX_BACKLOG = Gauge(
    "ember_outbox_backlog", "Outbox rows not yet published to Redis.", ["service"]
)
OUTBOX_OLDEST = Gauge(
    "ember_outbox_oldest_unpublished_seconds",
    "Age of the oldest unpublished outbox row (0 when none).",
    ["service"],
)
CONSUMER_LAG = Gauge(
    "ember_consumer_lag",
    "Stream entries the consumer group has not read yet.",
    ["service", "group", "stream"],
)
CONSUMER_PENDING = Gauge(
    "ember_consumer_pending",
    "Entries delivered to the group and not yet acknowledged.",
    ["service", "group", "stream"],
)
DEAD_LETTERS = Gauge(
    "ember_dead_letters", "Dead letters waiting for staff (this service's group).", ["service"]
)
WEBHOOKS = Counter(
    "ember_webhooks",
    "Provider webhook deliveries by outcome.",
    ["service", "provider", "outcome"],
)
SCRAPE_ERRORS = Counter(
    "ember_metrics_probe_errors",
    "Metric sources that failed or timed out during a scrape.",
    ["service", "probe"],
)


def prometheus_config(service: str) -> PrometheusConfig:
    return PrometheusConfig(
        app_name=service,
        prefix="ember",
        # Route templates, not raw paths: one series per route, not per product slug.
        group_path=True,
        exclude=[METRICS_PATH, "/api/health/"],
        exclude_unhandled_paths=True,
    )


def record_webhook(service: str, provider: str, outcome: str) -> None:
    """Count one delivery. Only the outcome's first word is a label ("ignored: ..." carries
    ids): a label with free text would make a series per event."""
    kind = (outcome.split(":", 1)[0].split() or ["unknown"])[0].lower()[:30]
    WEBHOOKS.labels(service=service, provider=provider, outcome=kind).inc()


async def outbox_probe(app: Litestar) -> None:
    runtime = app.state.events
    if runtime.metadata is None:
        return
    service = app.state.settings.app.name
    outbox, _ = event_tables(runtime.metadata)
    query = select(func.count(), func.min(outbox.c.created_at)).where(
        outbox.c.published_at.is_(None)
    )
    async with app.state.db_engine.connect() as connection:
        backlog, oldest = (await connection.execute(query)).one()
    OUTBOX_BACKLOG.labels(service=service).set(backlog)
    age = (dt.datetime.now(dt.UTC) - oldest).total_seconds() if oldest is not None else 0.0
    OUTBOX_OLDEST.labels(service=service).set(max(age, 0.0))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def consumer_probe(app: Litestar) -> None:
    consumer = app.state.events.consumer
    if consumer is None:
        return
    service = app.state.settings.app.name
    redis = app.state.redis
    for stream in sorted(consumer.streams):
        try:
            groups: list[dict[Any, Any]] = await redis.xinfo_groups(stream)
        except Exception:  # the stream does not exist yet: nothing published, nothing owed
            groups = []
        mine = [g for g in groups if _text(g.get("name", b"")) == consumer.group]
        lag = pending = 0
        if mine:
            # Redis 7 knows the lag; None means it cannot tell (entries deleted under the group).
            lag = int(mine[0].get("lag") or 0)
            pending = int(mine[0].get("pending") or 0)
        CONSUMER_LAG.labels(service=service, group=consumer.group, stream=stream).set(lag)
        CONSUMER_PENDING.labels(service=service, group=consumer.group, stream=stream).set(pending)


async def dead_letter_probe(app: Litestar) -> None:
    consumer = app.state.events.consumer
    if consumer is None:
        return
    redis = app.state.redis
    count, scanned, start = 0, 0, "-"
    while scanned < DEAD_LETTER_SCAN:
        entries = await redis.xrange(DEAD_LETTER_STREAM, min=start, max="+", count=500)
        if not entries:
            break
        for entry_id, fields in entries:
            if _text(fields.get(b"service", b"")) == consumer.group:
                count += 1
            start = "(" + _text(entry_id)
        scanned += len(entries)
    DEAD_LETTERS.labels(service=app.state.settings.app.name).set(count)


SHARED_PROBES: tuple[MetricsProbe, ...] = (outbox_probe, consumer_probe, dead_letter_probe)


async def refresh(app: Litestar, probes: Sequence[MetricsProbe]) -> None:
    service = app.state.settings.app.name
    for probe in [*SHARED_PROBES, *probes]:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await probe(app)
        except Exception as exc:
            SCRAPE_ERRORS.labels(service=service, probe=probe.__name__).inc()
            log.warning("metrics_probe_failed", probe=probe.__name__, error=repr(exc))


def metrics_controller(probes: Sequence[MetricsProbe]) -> type[Controller]:
    class MetricsController(Controller):
        path = METRICS_PATH
        include_in_schema = False

        @get(cache=False, exclude_from_auth=True)
        async def scrape(self, request: Request[Any, Any, Any]) -> Response[bytes]:
            await refresh(request.app, probes)
            return Response(
                generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST, status_code=200
            )

    return MetricsController
