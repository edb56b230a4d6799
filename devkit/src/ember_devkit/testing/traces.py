"""An in-memory span store for the test stack: a tiny OTLP/HTTP receiver in the test process.

The stack's processes export over real OTLP (``OTEL_EXPORTER_OTLP_ENDPOINT`` points here) and
sample nothing on their own (``OTEL_TRACES_SAMPLER_ARG=0``): only a request that arrives with a
sampled ``traceparent`` is traced, with everything it sets off. So the other flow tests pay
almost nothing, and a test that wants a trace sends :meth:`SpanStore.traceparent`.
"""

from __future__ import annotations

import gzip
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    #: (trace id, span id) of each link.
    links: tuple[tuple[str, str], ...] = field(default=())


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class SpanStore:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        #: Export bodies received and not read yet: they are decoded when the spans are asked
        #: for, not while received (the benchmark's sink shares a process, and the GIL, with
        #: its load generator, which decoding every batch as it came would slow).
        self._unread: list[bytes] = []
        self._lock = threading.Lock()
        #: One reader decodes at a time, so a snapshot has every body received before it.
        self._reading = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- receiving ------------------------------------------------------------------------

    def add(self, body: bytes) -> None:
        with self._lock:
            self._unread.append(body)

    def _read(self) -> None:
        with self._reading:
            with self._lock:
                bodies, self._unread = self._unread, []
            for body in bodies:
                self._decode(body)

    def _decode(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        received: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            attrs = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            service = str(attrs.get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=int(span.kind),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=tuple(
                                (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                            ),
                        )
                    )
        with self._lock:
            self.spans.extend(received)

    def start(self) -> str:
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                store.add(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- reading --------------------------------------------------------------------------

    @staticmethod
    def traceparent() -> tuple[str, str]:
        """A new sampled ``traceparent`` header value and its trace id."""
        trace_id = secrets.token_hex(16)
        return f"00-{trace_id}-{secrets.token_hex(8)}-01", trace_id

    def snapshot(self) -> list[ReceivedSpan]:
        self._read()
        with self._lock:
            return list(self.spans)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.snapshot() if s.trace_id == trace_id]

    def linked_to(self, trace_id: str) -> set[str]:
        """Traces with a span that links into ``trace_id``."""
        return {s.trace_id for s in self.snapshot() if any(t == trace_id for t, _ in s.links)}

    def wait_for(self, check: Any, what: str, within: float = 30.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)
