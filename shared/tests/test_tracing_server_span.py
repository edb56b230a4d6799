"""The sampled request's server span (``tracing.SampledRequests.traced``, started and attached
by hand): current while the app runs, ended and detached after, and an exception that leaves
the app is recorded on it as ``start_as_current_span`` records one."""

from __future__ import annotations

import os
from typing import Any

import pytest
from ember_shared import tracing
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import SpanKind, StatusCode


def provider_to(exported: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(
        sampler=ParentBased(root=tracing.LinkedOrRatio(1.0)),
        id_generator=tracing.PlannedTraceIds(),
    )
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return provider


def scope(trace_id: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/api/things",
        "query_string": b"",
        "headers": [(b"traceparent", f"00-{trace_id}-{os.urandom(8).hex()}-01".encode())],
    }


async def test_the_span_is_current_in_the_app_and_ended_after() -> None:
    exported = InMemorySpanExporter()
    seen: list[trace.Span] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(trace.get_current_span())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        pass

    trace_id = os.urandom(16).hex()
    await tracing.SampledRequests(app, provider_to(exported))(scope(trace_id), None, send)
    [span] = exported.get_finished_spans()
    assert span.kind == SpanKind.SERVER
    assert span.context is not None
    assert f"{span.context.trace_id:032x}" == trace_id
    assert seen[0].get_span_context() == span.context
    assert (span.attributes or {})["http.response.status_code"] == 204
    assert not trace.get_current_span().get_span_context().is_valid


async def test_an_exception_leaving_the_app_is_recorded_on_the_span() -> None:
    exported = InMemorySpanExporter()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def send(message: Any) -> None:
        pass

    with pytest.raises(RuntimeError, match="boom"):
        await tracing.SampledRequests(app, provider_to(exported))(
            scope(os.urandom(16).hex()), None, send
        )
    [span] = exported.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "RuntimeError: boom"
    assert [event.name for event in span.events] == ["exception"]
    assert not trace.get_current_span().get_span_context().is_valid
