"""Prometheus metrics: every service serves ``GET /metrics`` on its own port.

Caddy never routes ``/metrics`` (it answers 404 like ``/internal``): Prometheus scrapes each
service (each replica) directly on the backend network.

What every service exports, with a ``service`` label:

- ``ember_requests_total`` / ``ember_request_duration_seconds`` (``ember_requests_error_total``
  for 5xx answers, ``ember_requests_in_progress``): the names and labels of Litestar's
  Prometheus middleware (``method``, ``path`` the route template, ``status_code`` the answer,
  ``app_name`` the service), counted by :class:`RequestMetrics` for
  :mod:`ember_shared.request_layer`;
- ``ember_outbox_backlog`` and ``ember_outbox_oldest_unpublished_seconds``;
- ``ember_consumer_lag`` and ``ember_consumer_pending`` per consumer group and stream;
- ``ember_dead_letters`` (letters of the service's consumer group);
- ``ember_webhooks_total`` (``provider``, ``outcome``), counted by :func:`record_webhook`;
- ``ember_reconciliations_total`` (``result``), counted by :func:`record_reconciliation`.

The gauges are read when Prometheus scrapes (each source bounded by a timeout), so a scrape is
the truth of that moment and nothing polls in between. A service adds its own figures with
``ServiceSpec(metrics=[probe])``: ``async def probe(app: Litestar) -> None`` sets its gauges
(made with :func:`scrape_gauge`).

Several uvicorn workers (``EMBER_WORKERS``, ``WEB_CONCURRENCY``): a scrape reaches one of them,
so each worker's own counters would be a different, smaller figure at every scrape. With
``PROMETHEUS_MULTIPROC_DIR`` set (an empty directory per service process, shared by its workers:
the dev stack and the image's command make it) prometheus_client keeps every value in files
there and ``/metrics`` answers the sum of all workers' counters and histograms, each gauge's
value as the last worker that set it saw it (``livemostrecent``), and the requests in progress
summed over the live workers (Litestar's ``livesum``). A worker that stops says so
(:func:`mark_worker_dead`) so that its gauges leave; its counts stay in the totals. Without the
variable (one worker) everything stays in the process, as before. Process figures
(``process_*``, ``python_*``) are not exported in that mode: prometheus_client cannot sum them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import structlog
from litestar import Controller, Litestar, Request, get
from litestar.plugins.prometheus import PrometheusMiddleware
from litestar.response import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from ember_shared.system import consumer_status, dead_letter_count, outbox_status

log = structlog.get_logger("ember.metrics")

MetricsProbe = Callable[[Litestar], Awaitable[None]]

METRICS_PATH = "/metrics"
#: A source that does not answer within this is skipped (its gauges keep their last value).
PROBE_TIMEOUT_S = 2.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def scrape_gauge(name: str, documentation: str, labelnames: Sequence[str]) -> Gauge:
    """A gauge set by a scrape probe. With several workers only the scraped one sets it, so
    the value to export is the one set last, not every worker's (the default, with a ``pid``
    label) nor their sum."""
    return Gauge(name, documentation, labelnames, multiprocess_mode="livemostrecent")


def multiprocess_dir() -> str:
    return os.environ.get(MULTIPROC_ENV, "")


def mark_worker_dead() -> None:
    """On a worker's shutdown: its live gauges leave the aggregate (its counts stay)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def exposition() -> bytes:
    """What ``/metrics`` answers: every worker's figures when they share a directory."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


OUTBOX_BACKLOG = scrape_gauge(
    "ember_outbox_backlog", "Outbox rows not yet published to Redis.", ["service"]
)
OUTBOX_OLDEST = scrape_gauge(
    "ember_outbox_oldest_unpublished_seconds",
    "Age of the oldest unpublished outbox row (0 when none).",
    ["service"],
)
CONSUMER_LAG = scrape_gauge(
    "ember_consumer_lag",
    "Stream entries the consumer group has not read yet.",
    ["service", "group", "stream"],
)
CONSUMER_PENDING = scrape_gauge(
    "ember_consumer_pending",
    "Entries delivered to the group and not yet acknowledged.",
    ["service", "group", "stream"],
)
DEAD_LETTERS = scrape_gauge(
    "ember_dead_letters", "Dead letters waiting for staff (this service's group).", ["service"]
)
WEBHOOKS = Counter(
    "ember_webhooks",
    "Provider webhook deliveries by outcome.",
    ["service", "provider", "outcome"],
)
RECONCILIATIONS = Counter(
    "ember_reconciliations",
    "Checkouts the reconciler asked the payment provider about, by result.",
    ["service", "result"],
)
SCRAPE_ERRORS = Counter(
    "ember_metrics_probe_errors",
    "Metric sources that failed or timed out during a scrape.",
    ["service", "probe"],
)


#: The request metrics' labels, in the order Litestar's Prometheus middleware gives them.
REQUEST_LABELS = ("method", "path", "status_code", "app_name")
HTTP_SERVER_ERROR = 500


def _request_family(kind: type[Any], name: str, documentation: str, **kwargs: Any) -> Any:
    """One family of the request metrics, registered once per process under Litestar's name
    (kept in its middleware's registry, so that both may live in one process)."""
    families = PrometheusMiddleware._metrics
    if name not in families:
        families[name] = kind(
            name=name, documentation=documentation, labelnames=REQUEST_LABELS, **kwargs
        )
    return families[name]


class RouteSeries:
    """One route's series for one method: in progress, and per status the count, duration and
    errors (prometheus_client's ``labels()`` builds a key, takes a lock and looks it up on every
    call: here once per route, method and status in a process)."""

    __slots__ = ("_by_status", "_metrics", "_values", "in_progress")

    def __init__(self, metrics: RequestMetrics, method: str, path: str) -> None:
        self._metrics = metrics
        self._values = (method, path)
        # Litestar's middleware counts a request in progress under status 200, its default.
        self.in_progress: Gauge = metrics.in_progress.labels(method, path, 200, metrics.service)
        self._by_status: dict[int, tuple[Counter, Histogram, Counter | None]] = {}

    def answered(self, status: int, duration: float) -> None:
        series = self._by_status.get(status)
        if series is None:
            series = self._metrics.series(*self._values, status)
            self._by_status[status] = series
        count, seconds, errors = series
        if errors is not None:
            errors.inc()
        count.inc()
        seconds.observe(duration)


class RequestMetrics:
    """``ember_requests_total``, ``ember_request_duration_seconds``,
    ``ember_requests_in_progress`` and ``ember_requests_error_total`` of one service."""

    def __init__(self, service: str, prefix: str = "ember") -> None:
        self.service = service
        self.count = cast(
            "Counter", _request_family(Counter, f"{prefix}_requests_total", "Total requests")
        )
        self.duration = cast(
            "Histogram",
            _request_family(
                Histogram, f"{prefix}_request_duration_seconds", "Request duration, in seconds"
            ),
        )
        self.in_progress = cast(
            "Gauge",
            _request_family(
                Gauge,
                f"{prefix}_requests_in_progress",
                "Total requests currently in progress",
                multiprocess_mode="livesum",
            ),
        )
        self.errors = cast(
            "Counter",
            _request_family(Counter, f"{prefix}_requests_error_total", "Total errors in requests"),
        )
        self._routes: dict[tuple[str, str], RouteSeries] = {}

    def route(self, method: str, path: str) -> RouteSeries:
        """The series of ``path`` (a route template: a bounded set) for ``method``."""
        series = self._routes.get((method, path))
        if series is None:
            series = self._routes[(method, path)] = RouteSeries(self, method, path)
        return series

    def series(
        self, method: str, path: str, status: int
    ) -> tuple[Counter, Histogram, Counter | None]:
        values = (method, path, status, self.service)
        errors = self.errors.labels(*values) if status >= HTTP_SERVER_ERROR else None
        return self.count.labels(*values), self.duration.labels(*values), errors


def record_webhook(service: str, provider: str, outcome: str) -> None:
    """Count one delivery. Only the outcome's first word is a label ("ignored: ..." carries
    ids): a label with free text would make a series per event."""
    kind = (outcome.split(":", 1)[0].split() or ["unknown"])[0].lower()[:30]
    WEBHOOKS.labels(service=service, provider=provider, outcome=kind).inc()


def record_reconciliation(service: str, result: str) -> None:
    """``applied`` (the net caught a lost webhook), ``unchanged``, ``unknown`` (the provider
    does not know the session) or ``unavailable`` (the provider did not answer)."""
    RECONCILIATIONS.labels(service=service, result=result).inc()


async def outbox_probe(app: Litestar) -> None:
    status = await outbox_status(app)
    if status is None:
        return
    service = app.state.settings.app.name
    OUTBOX_BACKLOG.labels(service=service).set(status.backlog)
    OUTBOX_OLDEST.labels(service=service).set(status.oldest_unpublished_s)


async def consumer_probe(app: Litestar) -> None:
    service = app.state.settings.app.name
    for c in await consumer_status(app):
        CONSUMER_LAG.labels(service=service, group=c.group, stream=c.stream).set(c.lag)
        CONSUMER_PENDING.labels(service=service, group=c.group, stream=c.stream).set(c.pending)


async def dead_letter_probe(app: Litestar) -> None:
    count = await dead_letter_count(app)
    if count is not None:
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
            return Response(exposition(), media_type=CONTENT_TYPE_LATEST, status_code=200)

    return MetricsController
