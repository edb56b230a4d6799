"""OpenTelemetry traces, set up once per process by the app factory (and the notifier worker).

Off, and free, unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set: then
requests (a server span for each request sampled: :class:`SampledRequests`), httpx calls
(service to service, providers), SQLAlchemy and Redis (under a recording span only) are traced
and exported over OTLP/HTTP by the SDK's batch processor and exporter, which encodes with
:mod:`ember_shared.otlp` (the same bytes for a quarter of the CPU). Sampling:
``OTEL_TRACES_SAMPLER_ARG`` is the share of new traces kept (default 1.0); a request that arrives
with a sampled ``traceparent`` is always kept, and so is a trace started with a link to a
sampled one.

Across events: :func:`current_traceparent` is stored in the envelope by ``Outbox.add`` (so in
the outbox row and the stream message); the relay and the consumer start their spans from it
(:func:`span_from`). A webhook starts a new trace linked to the checkout that caused it
(:func:`linked_root`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.propagate import extract, get_global_textmap, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

_logger = logging.getLogger(__name__)

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

    def should_sample(
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

    def keeps_new_request(self, trace_id: int) -> bool:
        """What :meth:`should_sample` answers for a request's span with no parent and no links
        (the ratio on its trace id), without building a decision: most requests ask only this."""
        return trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self.ratio.bound

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

            from ember_shared.otlp import use_in_otlp_http_exporter

            # The SDK's encoder cost ~4x the CPU for the same bytes (ember_shared.otlp).
            use_in_otlp_http_exporter()
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
        _only_when_recording()
        _state["instrumented"] = True
    return True


def tracing_on() -> bool:
    return _state["provider"] is not None


def instrument_engine(engine: Any) -> None:
    """Trace an engine's statements (the sync engine under an ``AsyncEngine``)."""
    if not tracing_on():
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from sqlalchemy import event
    from wrapt import wrap_function_wrapper

    sync_engine = getattr(engine, "sync_engine", engine)
    instrumentor = SQLAlchemyInstrumentor()
    first = not instrumentor.is_instrumented_by_opentelemetry
    if first:
        engine_tracer = instrumentor.instrument(
            engine=sync_engine,
            tracer_provider=_state["provider"],
            # The instrumentation declares sqlalchemy < 2.1 and otherwise does nothing at all
            # (it only logs so); 2.1 keeps the engine events it hooks, and the flow test sees
            # its spans.
            skip_dep_check=True,
        )
        _state["engine_tracer"] = engine_tracer
    else:
        # The instrumentor instruments once per process, and only the engine it is given then:
        # a pool of a service's own (catalog's searches, checkout's budget claims) is a second
        # engine, traced alike by a tracer made as the instrumentor makes its own.
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

        known = _state.get("engine_tracer")
        if known is None:
            return
        engine_tracer = EngineTracer(known.tracer, sync_engine, known.connections_usage)  # type: ignore[no-untyped-call]
    if first and instrumentor.is_instrumented_by_opentelemetry:
        # Its "connect" span, made on every checkout from the pool.
        wrap_function_wrapper("sqlalchemy.engine.base", "Engine.connect", _when_recording)
    traced = getattr(engine_tracer, "_before_cur_exec", None)
    if traced is None:
        return
    # A statement outside a recorded span would only make a span that is dropped (its parent is
    # unsampled, or it is a background poll), after reading the connection's attributes.

    def before_cursor_execute(
        conn: Any, cursor: Any, statement: Any, params: Any, *context_executemany: Any
    ) -> tuple[Any, Any]:
        if not trace.get_current_span().is_recording():
            return statement, params
        result: tuple[Any, Any] = traced(conn, cursor, statement, params, *context_executemany)
        return result

    event.remove(sync_engine, "before_cursor_execute", traced)
    event.listen(sync_engine, "before_cursor_execute", before_cursor_execute, retval=True)


def _when_recording(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around an instrumented call: the instrumentation (its span) only under a recording span;
    else straight to the call it wraps."""
    if trace.get_current_span().is_recording():
        return wrapped(*args, **kwargs)
    # (The instrumentation's own wrapper is gone if it was uninstrumented.)
    return getattr(wrapped, "__wrapped__", wrapped)(*args, **kwargs)


def _only_when_recording() -> None:
    """The Redis and httpx instrumentations make a span for every call, recorded or not (an
    unsampled request's Redis read cost as much as a sampled one's). Wrapped once more, they
    run only under a recording span; otherwise the call goes straight to the client, and an
    HTTP call still carries the current ``traceparent`` (flags 00 in an unsampled request), so
    the service it calls leaves the whole trace unsampled too."""
    import httpx
    import redis.asyncio
    import redis.asyncio.client
    from wrapt import wrap_function_wrapper

    def http_call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if trace.get_current_span().is_recording():
            return wrapped(*args, **kwargs)
        request: httpx.Request = args[0] if args else kwargs["request"]
        inject(request.headers)
        return getattr(wrapped, "__wrapped__", wrapped)(*args, **kwargs)

    wrap_function_wrapper(redis.asyncio, "Redis.execute_command", _when_recording)
    wrap_function_wrapper(redis.asyncio.client, "Pipeline.execute", _when_recording)
    wrap_function_wrapper(
        redis.asyncio.client, "Pipeline.immediate_execute_command", _when_recording
    )
    wrap_function_wrapper(httpx, "AsyncHTTPTransport.handle_async_request", http_call)
    wrap_function_wrapper(httpx, "HTTPTransport.handle_request", http_call)


def note(name: str, value: str | bool | int | float) -> None:
    """An attribute of the current span, when it is recorded (else nothing is built)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(name, value)


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


#: Never traced: the probes and the scrapes (every few seconds, from machines, not shoppers).
UNTRACED_PATHS = ("/metrics", "/api/health/")
_TRACE_HEADERS = frozenset(name.encode() for name in get_global_textmap().fields)
#: A request's parent context when it carries none (contexts are immutable: one serves all).
_NO_PARENT = otel_context.Context()


class SampledRequests:
    """Sampling decided first, for every request: an unsampled one runs under a non-recording
    span of its trace (the caller's trace id, or a new one) with flags 00: every span under it
    is dropped without being built, and calls to other services carry a ``traceparent`` that
    says unsampled, so the whole trace is consistently absent. A sampled one gets its server
    span here (:class:`RequestSpan`), with the HTTP semantic-convention attributes set once:
    OpenTelemetry's ASGI middleware (under Litestar's plugin) sets every attribute in both the
    old and the new conventions and wraps ``send`` and ``receive`` in more spans, and cost a
    traced catalog more per sampled request than the rest of tracing together
    (bench/tracing.py)."""

    def __init__(self, app: Any, provider: TracerProvider) -> None:
        self.app = app
        self.tracer = provider.get_tracer(TRACER_NAME)
        self.sampler = provider.sampler
        self.ids = provider.id_generator
        self.limits = SpanLimits()
        # A request with no trace headers (nearly every one from a browser) is decided by the
        # root sampler's ratio alone when the sampler is the one setup_tracing installs:
        # ParentBased (its root is private to the SDK) around LinkedOrRatio.
        root = getattr(self.sampler, "_root", None) if type(self.sampler) is ParentBased else None
        self.new_requests = root if isinstance(root, LinkedOrRatio) else None
        self.random_ids = self.ids.is_trace_id_random()
        flags = TraceFlags.RANDOM_TRACE_ID if self.random_ids else TraceFlags.DEFAULT
        self.new_unsampled_flags = TraceFlags(flags)
        self.new_sampled_flags = TraceFlags(flags | TraceFlags.SAMPLED)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(UNTRACED_PATHS):
            await self.app(scope, receive, send)
            return
        if self.new_requests is not None:
            for name, _ in scope["headers"]:
                if name in _TRACE_HEADERS:
                    break
            else:
                # No trace context: decided by the ratio on a new trace id.
                trace_id = self.ids.generate_trace_id()
                if self.new_requests.keeps_new_request(trace_id):
                    # What the sampler answers for it again (RECORD_AND_SAMPLE, no trace state,
                    # no attributes of its own), so not asked again.
                    context = SpanContext(
                        trace_id, self.ids.generate_span_id(), False, self.new_sampled_flags
                    )
                    await self.traced(scope, receive, send, _NO_PARENT, None, context)
                    return
                # Most requests: unsampled (as in unsampled(), one coroutine fewer), with the
                # flags the SDK gives a span it did not sample, and no trace state to carry.
                span = UnsampledRequestSpan(trace_id, self.new_unsampled_flags, self.ids)
                attached = otel_context.attach(trace.set_span_in_context(span, _NO_PARENT))
                try:
                    await self.app(scope, receive, send)
                finally:
                    otel_context.detach(attached)
                return
        await self.decided(scope, receive, send)

    async def decided(self, scope: Any, receive: Any, send: Any) -> None:
        """A request that may carry a trace context, or under another sampler: asked in full,
        as the SDK's tracer would ask for the request's span."""
        if any(name in _TRACE_HEADERS for name, _ in scope["headers"]):
            from opentelemetry.instrumentation.asgi import asgi_getter

            parent_context = extract(scope, getter=asgi_getter)
        else:
            parent_context = _NO_PARENT
        parent = trace.get_current_span(parent_context).get_span_context()
        trace_id = parent.trace_id if parent.is_valid else self.ids.generate_trace_id()
        decided = self.sampler.should_sample(
            parent_context, trace_id, span_name(scope), SpanKind.SERVER
        )
        random_id = parent.trace_flags.random_trace_id if parent.is_valid else self.random_ids
        flags = TraceFlags.RANDOM_TRACE_ID if random_id else TraceFlags.DEFAULT
        if decided.decision is Decision.RECORD_AND_SAMPLE:
            flags |= TraceFlags.SAMPLED
        context = SpanContext(
            trace_id,
            self.ids.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=decided.trace_state,
        )
        if decided.decision is not Decision.DROP:
            await self.traced(
                scope,
                receive,
                send,
                parent_context,
                parent if parent.is_valid else None,
                context,
                decided.attributes,
            )
            return
        await self.unsampled(scope, receive, send, parent_context, NonRecordingSpan(context))

    async def unsampled(
        self,
        scope: Any,
        receive: Any,
        send: Any,
        parent_context: otel_context.Context,
        unsampled: NonRecordingSpan,
    ) -> None:
        """Under a non-recording span of its trace: nothing below is built, and calls out say
        unsampled."""
        attached = otel_context.attach(trace.set_span_in_context(unsampled, parent_context))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(attached)

    async def traced(
        self,
        scope: Any,
        receive: Any,
        send: Any,
        parent_context: otel_context.Context,
        parent: SpanContext | None,
        context: SpanContext,
        sampler_attributes: Any = None,
    ) -> None:
        """A recorded request: its span is made here as the SDK's tracer would make it after
        the sampler's yes (:class:`RequestSpan`), current while the app runs."""
        name = span_name(scope)
        span = RequestSpan(
            self.tracer, name, context, parent, server_attributes(scope, name), self.limits
        )
        if sampler_attributes:
            span.set_attributes(sampler_attributes)
        span.start_with(parent_context)
        token = otel_context.attach(trace.set_span_in_context(span))

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                span.set_attribute("http.response.status_code", status)
                if status >= HTTP_SERVER_ERROR:
                    span.set_status(StatusCode.ERROR)
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:
            # What start_as_current_span records of an exception that leaves its block.
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            otel_context.detach(token)
            span.end()


class UnsampledRequestSpan(NonRecordingSpan):
    """A new unsampled request's span: its trace id drawn (the sampling was decided on it), its
    span id and context made only when asked, by a call to another service (its
    ``traceparent``) or a span started under it; a cached answer never asks."""

    def __init__(self, trace_id: int, flags: TraceFlags, ids: IdGenerator) -> None:
        # Not NonRecordingSpan.__init__: its context is made by get_span_context.
        self._trace_id = trace_id
        self._flags = flags
        self._ids = ids
        self._made: SpanContext | None = None

    def get_span_context(self) -> SpanContext:
        if self._made is None:
            self._made = SpanContext(
                self._trace_id, self._ids.generate_span_id(), False, self._flags
            )
        return self._made

    def __repr__(self) -> str:
        return f"UnsampledRequestSpan({self.get_span_context()!r})"


def span_name(scope: Any) -> str:
    """Named as Litestar's plugin names it: "<method> <path>"."""
    method = scope.get("method", "")
    return f"{method} {scope['path']}" if method else scope["path"]


#: Attribute values kept as they are (the SDK's validation returns these unchanged when no
#: length limit is set); anything else goes through the SDK's ``BoundedAttributes``.
_PLAIN_VALUES = frozenset((str, bool, int, float))
_UNSET_STATUS = Status(StatusCode.UNSET)


class RequestSpan(Span):
    """A sampled request's server span: the SDK's ``Span`` (its status, events, exception
    records and export unchanged) made without what its constructor and ``Tracer.start_span``
    build for any span: the sampler asked a second time, every attribute validated through a
    locked ``BoundedAttributes`` (half of a span's start), empty event and link lists, the
    SDK's own span metrics (off unless ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``). Its
    attributes are a plain dict while every value is a ``str``, ``bool``, ``int`` or ``float``
    (what the SDK would keep unchanged) and the span limits leave room; the first other value,
    or a length limit, turns them into the SDK's ``BoundedAttributes`` with its validation,
    limits and warnings. ``shared/tests/test_tracing_server_span.py`` checks it against a span
    the SDK's tracer makes."""

    def __init__(
        self,
        tracer: Any,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, Any],
        limits: SpanLimits,
    ) -> None:
        # Not Span.__init__: the fields it sets, set directly.
        self._name = name
        self._context = context
        self._kind = SpanKind.SERVER
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer._instrumentation_scope
        self._parent = parent
        self._resource = tracer.resource
        self._status = _UNSET_STATUS
        self._sampler = tracer.sampler
        self._trace_config = None
        self._record_exception = True
        self._set_status_on_exception = True
        self._span_processor = tracer.span_processor
        self._limits = limits
        self._lock = threading.Lock()
        self._events: Any = ()
        self._links: Any = ()
        self._record_end_metrics = None
        self._start_time = None
        self._end_time = None
        # Room for plain attributes: none when values have a length limit (it cuts strings).
        self._room = (
            0
            if limits.max_span_attribute_length is not None
            else (sys.maxsize if limits.max_span_attributes is None else limits.max_span_attributes)
        )
        self._attributes: Any = {}
        if len(attributes) <= self._room and _PLAIN_VALUES.issuperset(
            map(type, attributes.values())
        ):
            self._attributes = attributes
        else:
            self.set_attributes(attributes)

    def start_with(self, parent_context: otel_context.Context | None) -> None:
        """Started now, and told to the span processors (as ``Tracer.start_span`` does)."""
        self._start_time = time_ns()
        self._span_processor.on_start(self, parent_context=parent_context)

    def _bounded(self) -> BoundedAttributes:
        if type(self._attributes) is dict:
            self._attributes = BoundedAttributes(
                self._limits.max_span_attributes,
                self._attributes,
                immutable=False,
                max_value_len=self._limits.max_span_attribute_length,
            )
        bounded: BoundedAttributes = self._attributes
        return bounded

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end_time is not None:
            _logger.warning("Setting attribute on ended span.")
            return
        attributes = self._attributes
        if (
            type(attributes) is dict
            and type(value) in _PLAIN_VALUES
            and type(key) is str
            and key
            and (key in attributes or len(attributes) < self._room)
        ):
            # Last in order, as BoundedAttributes keeps a key set again.
            attributes.pop(key, None)
            attributes[key] = value
            return
        with self._lock:
            self._bounded()[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        if type(self._events) is tuple:
            self._events = BoundedList(self._limits.max_events)
        super().add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: Any = None) -> None:
        if type(self._links) is tuple:
            self._links = BoundedList(self._limits.max_links)
        super().add_link(context, attributes)

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._start_time is None:
                raise RuntimeError("Calling end() on a not started span.")
            if self._end_time is not None:
                _logger.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
            if type(self._attributes) is not dict:
                self._attributes._immutable = True
        self._span_processor._on_ending(self)
        self._span_processor.on_end(self._readable_span())


HTTP_SERVER_ERROR = 500


def server_attributes(scope: Any, route: str) -> dict[str, Any]:
    """OpenTelemetry's HTTP server span attributes (the stable conventions) from the scope
    (a new dict: the request's span keeps it)."""
    attributes: dict[str, Any] = {
        "http.route": route,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
    }
    if method := scope.get("method"):
        attributes["http.request.method"] = method
    if query := scope.get("query_string"):
        attributes["url.query"] = query.decode("latin-1")
    if version := scope.get("http_version"):
        attributes["network.protocol.version"] = version
    if client := scope.get("client"):
        attributes["client.address"] = client[0]
    if server := scope.get("server"):
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    for name, value in scope["headers"]:
        if name == b"user-agent":
            attributes["user_agent.original"] = value.decode("latin-1")
            break
    return attributes


def litestar_middleware() -> Any:
    """Requests traced when sampled (:class:`SampledRequests`), when tracing is on (else
    ``None``)."""
    if not tracing_on():
        return None
    from litestar.middleware import DefineMiddleware

    return DefineMiddleware(SampledRequests, provider=_state["provider"])
