"""OpenTelemetry traces, set up once per process by the app factory (and the notifier worker).

Off, and free, unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set: then
requests (Litestar's OpenTelemetry middleware), httpx calls (service to service, providers),
SQLAlchemy and Redis are traced and exported over OTLP/HTTP. Sampling: ``OTEL_TRACES_SAMPLER_ARG``
is the share of new traces kept (default 1.0); a request that arrives with a sampled
``traceparent`` is always kept, and so is a trace started with a link to a sampled one.

Across events: :func:`current_traceparent` is stored in the envelope by ``Outbox.add`` (so in
the outbox row and the stream message); the relay and the consumer start their spans from it
(:func:`span_from`). A webhook starts a new trace linked to the checkout that caused it
(:func:`linked_root`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind

TRACER_NAME = "ember"

_state: dict[str, Any] = {"provider": None, "instrumented": False}


def endpoint() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", ""
    )


def sample_ratio() -> float:
    raw = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        ratio = float(raw) if raw else 1.0
    except ValueError as exc:
        raise ValueError(
            f"OTEL_TRACES_SAMPLER_ARG must be a number in [0, 1] (got {raw!r})"
        ) from exc
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG must be in [0, 1] (got {raw!r})")
    return ratio


class LinkedOrRatio(Sampler):
    """A new trace is kept when it links to a kept one (a webhook's trace and the checkout
    it pays), else by ratio: one purchase is whole or absent, not half sampled."""

    def __init__(self, ratio: float) -> None:
        self.ratio = TraceIdRatioBased(ratio)

    def should_sample(  # noqa: PLR0917 - the Sampler interface
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if any(link.context.trace_flags.sampled for link in links or ()):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        if kind == SpanKind.CLIENT:
            # A query or Redis call with no request, event or job around it is a poll of a
            # background loop (the relay, the consumers): not a trace anyone wants.
            return SamplingResult(Decision.DROP, None, trace_state)
        return self.ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"LinkedOrRatio({self.ratio.rate})"


def setup_tracing(service: str, processor: SpanProcessor | None = None) -> bool:
    """Install this process's tracer provider (once) and instrument httpx and Redis. True when
    tracing is on. ``processor`` (tests: an in-memory exporter) turns it on without OTLP."""
    provider = _state["provider"]
    if provider is None:
        if processor is None and not endpoint():
            return False
        provider = TracerProvider(
            resource=Resource.create({"service.name": service}),
            sampler=ParentBased(root=LinkedOrRatio(sample_ratio())),
        )
        if endpoint():
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _state["provider"] = provider
    if processor is not None:
        provider.add_span_processor(processor)
    if not _state["instrumented"]:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        HTTPXClientInstrumentor().instrument(tracer_provider=provider)
        RedisInstrumentor().instrument(tracer_provider=provider)
        _state["instrumented"] = True
    return True


def tracing_on() -> bool:
    return _state["provider"] is not None


def instrument_engine(engine: Any) -> None:
    """Trace an engine's statements (the sync engine under an ``AsyncEngine``)."""
    if not tracing_on():
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(
        engine=getattr(engine, "sync_engine", engine),
        tracer_provider=_state["provider"],
        # The instrumentation declares sqlalchemy < 2.1 and otherwise does nothing at all (it
        # only logs so); 2.1 keeps the engine events it hooks, and the flow test sees its spans.
        skip_dep_check=True,
    )


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the current span ("" when there is none)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent", "")


def context_of(traceparent: str) -> otel_context.Context:
    return extract({"traceparent": traceparent}) if traceparent else otel_context.Context()


@contextmanager
def span_from(
    traceparent: str, name: str, *, kind: SpanKind, attributes: dict[str, Any] | None = None
) -> Iterator[trace.Span]:
    """A span continuing the trace an event was written in (a new trace when it had none)."""
    with tracer().start_as_current_span(
        name, context=context_of(traceparent), kind=kind, attributes=attributes
    ) as span:
        yield span


@contextmanager
def linked_root(
    traceparent: str, name: str, *, attributes: dict[str, Any] | None = None
) -> Iterator[trace.Span]:
    """A new trace linked to ``traceparent``'s span: a webhook is its own cause, but it pays
    for the checkout that trace shows."""
    links = []
    if traceparent:
        span_context = trace.get_current_span(context_of(traceparent)).get_span_context()
        if span_context.is_valid:
            links.append(Link(span_context))
    with tracer().start_as_current_span(
        name,
        context=otel_context.Context(),
        kind=SpanKind.INTERNAL,
        links=links,
        attributes=attributes,
    ) as span:
        yield span


def litestar_middleware() -> Any:
    """Litestar's OpenTelemetry middleware, when tracing is on (else ``None``)."""
    if not tracing_on():
        return None
    from litestar.plugins.opentelemetry import OpenTelemetryConfig

    return OpenTelemetryConfig(
        tracer_provider=_state["provider"],
        exclude=["/metrics", "/api/health/"],
        # The ASGI send/receive spans say nothing the request's own span does not, and cost
        # every request (sampled or not) two more spans: the cached listing lost a third of its
        # rate to them (bench/tracing.py).
        exclude_spans=["receive", "send"],
    ).middleware
