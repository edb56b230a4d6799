"""``ember_shared.otlp.encode_spans`` writes the same OTLP bytes as OpenTelemetry's own encoder,
for spans of every kind: attributes of each type (arrays too), events, links to remote and
local spans, a trace state, error statuses with and without a message, dropped counts, remote
parents, several instrumentation scopes, spans of plain values (written without a message); and
the OTLP/HTTP exporter sends it."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ember_shared import otlp
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, StatusCode
from opentelemetry.trace.span import TraceFlags, TraceState

REMOTE = SpanContext(
    0x4BF92F3577B34DA6A3CE929D0E0E4736,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "abc"), ("other", "x-1")]),
)


def finished_spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "catalog", "service.version": "1.2.0"}),
        span_limits=SpanLimits(max_span_attributes=12, max_events=2, max_links=2),
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    ember = provider.get_tracer("ember")
    redis = provider.get_tracer(
        "opentelemetry.instrumentation.redis",
        "0.1b0",
        schema_url="https://opentelemetry.io/schemas/1.11.0",
    )
    remote_parent = trace.set_span_in_context(NonRecordingSpan(REMOTE))
    with ember.start_as_current_span(
        "GET /api/products",
        context=remote_parent,
        kind=SpanKind.SERVER,
        attributes={
            "http.route": "GET /api/products",
            "server.port": 8102,
            "ratio": 0.25,
            "cached": True,
            "tags": ("a", "b"),
            "sizes": [1, 2, 3],
            "weights": (0.5, 1.5),
            "flags": (True, False),
            "empty": "",
            "negative": -7,
            "huge": 2**70,  # past int64: left out by both, the rest of the span kept
        },
    ) as server:
        server.set_attribute("http.response.status_code", 200)
        server.add_event("cache.miss", {"key": "listing:1", "tries": 2})
        server.add_event("plain")
        server.add_event("third")  # past max_events: dropped, and counted
        with redis.start_as_current_span(
            "GET",
            kind=SpanKind.CLIENT,
            attributes={"db.system": "redis", "db.redis.args_length": 2},
        ):
            pass
        with ember.start_as_current_span(
            "linked",
            links=[
                Link(REMOTE, {"why": "paid"}),
                Link(server.get_span_context()),
                Link(REMOTE, {"again": 1}),  # past max_links
            ],
        ) as linked:
            linked.set_status(StatusCode.ERROR, "the provider said no")
        with ember.start_as_current_span("failed", kind=SpanKind.CONSUMER) as failed:
            failed.set_status(StatusCode.ERROR)
            for n in range(14):  # past max_span_attributes
                failed.set_attribute(f"a{n}", n)
        with ember.start_as_current_span("produced", kind=SpanKind.PRODUCER) as produced:
            produced.set_status(StatusCode.OK)
        # Plain values only, nothing dropped: the span written without a message.
        with ember.start_as_current_span(
            "plain",
            attributes={
                "text": "é",
                "empty": "",
                "yes": True,
                "no": False,
                "zero": 0,
                "negative": -7,
                "big": 2**62,
                "ratio": 1.5,
                "nil": 0.0,
                "lone": "\ud800",  # not UTF-8: left out by both, the rest kept
            },
        ) as plain:
            plain.set_status(StatusCode.ERROR, "it failed")
    with ember.start_as_current_span("root", context=trace.set_span_in_context(trace.INVALID_SPAN)):
        pass
    return list(memory.get_finished_spans())


def test_the_same_bytes_as_the_sdk_encoder() -> None:
    spans = finished_spans()
    assert len(spans) == 7
    ours = otlp.encode_spans(spans).SerializeToString(deterministic=True)
    sdk = sdk_encode(spans).SerializeToString(deterministic=True)
    assert ours == sdk
    decoded = ExportTraceServiceRequest.FromString(ours)
    # Two scopes under the one resource, each span once.
    assert len(decoded.resource_spans) == 1
    scopes = decoded.resource_spans[0].scope_spans
    assert [scope.scope.name for scope in scopes] == [
        "opentelemetry.instrumentation.redis",
        "ember",
    ]
    assert sum(len(scope.spans) for scope in scopes) == 7
    server = next(s for scope in scopes for s in scope.spans if s.name == "GET /api/products")
    assert server.trace_state == "vendor=abc,other=x-1"
    assert server.dropped_events_count == 1
    assert server.flags == 0x300  # its parent is remote
    assert "huge" not in {a.key for a in server.attributes}
    assert "negative" in {a.key for a in server.attributes}
    plain = next(s for scope in scopes for s in scope.spans if s.name == "plain")
    assert "lone" not in {a.key for a in plain.attributes}
    assert len(plain.attributes) == 9


def test_each_batch_alone_is_the_same() -> None:
    """Batches as the batch processor cuts them: any slice, in any order."""
    spans = finished_spans()
    for batch in (spans[:1], spans[2:5], spans[::-1], []):
        assert otlp.encode_spans(batch).SerializeToString(deterministic=True) == sdk_encode(
            batch
        ).SerializeToString(deterministic=True)


@pytest.fixture
def collector() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            bodies.append(body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_the_otlp_http_exporter_sends_our_encoding(collector: tuple[str, list[bytes]]) -> None:
    from opentelemetry.exporter.otlp.proto.http import trace_exporter

    endpoint, bodies = collector
    otlp.use_in_otlp_http_exporter()
    assert trace_exporter.encode_spans is otlp.encode_spans
    spans = finished_spans()
    exporter = OTLPSpanExporter(endpoint=endpoint)
    try:
        assert exporter.export(spans).name == "SUCCESS"
    finally:
        exporter.shutdown()
    assert bodies == [sdk_encode(spans).SerializeToString()]
