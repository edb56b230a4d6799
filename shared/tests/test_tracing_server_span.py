"""The sampled request's server span (``tracing.SampledRequests.traced``, started and attached
by hand): current while the app runs, ended and detached after, and an exception that leaves
the app is recorded on it as ``start_as_current_span`` records one."""

from __future__ import annotations

import os
from typing import Any

import pytest
from ember_shared import tracing
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import SpanKind, StatusCode


def provider_to(exported: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(
        sampler=ParentBased(root=tracing.LinkedOrRatio(1.0)),
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


def sdk_made(exported: InMemorySpanExporter, request: dict[str, Any], app_work: Any) -> Any:
    """The span the SDK's own tracer makes for the same request and the same work."""
    provider = provider_to(exported)
    parent = extract({"traceparent": request["headers"][0][1].decode()})
    name = tracing.span_name(request)
    span = provider.get_tracer(tracing.TRACER_NAME).start_span(
        name,
        context=parent,
        kind=SpanKind.SERVER,
        attributes=tracing.server_attributes(request, name),
    )
    with trace.use_span(span, end_on_exit=True):
        app_work(span)
        span.set_attribute("http.response.status_code", 503)
        span.set_status(StatusCode.ERROR)
    [made] = exported.get_finished_spans()
    return made


def work(span: trace.Span) -> None:
    span.set_attribute("ember.cache.outcome", "hit")
    span.set_attribute("ember.page", 2)
    span.set_attribute("ember.cache.outcome", "miss")  # set again: last, as the SDK keeps it
    span.set_attribute("ember.sizes", [1, 2, 3])  # not a plain value: the SDK's validation
    span.set_attribute("ember.nothing", None)  # type: ignore[arg-type]  # as the SDK has it
    span.set_attribute("ember.ratio", 0.5)
    span.add_event("looked", {"ember.key": "k"})


@pytest.mark.parametrize("length_limit", [None, "4"])
async def test_the_request_span_is_the_one_the_sdk_tracer_makes(
    monkeypatch: pytest.MonkeyPatch, length_limit: str | None
) -> None:
    """Name, kind, parent, attributes (their order, values the SDK validates, a length limit),
    events, status and counts: as the SDK's tracer makes them (tracing.RequestSpan)."""
    if length_limit:
        monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", length_limit)
    request = scope(os.urandom(16).hex())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        work(trace.get_current_span())
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        pass

    ours_exported = InMemorySpanExporter()
    await tracing.SampledRequests(app, provider_to(ours_exported))(dict(request), None, send)
    [ours] = ours_exported.get_finished_spans()
    theirs = sdk_made(InMemorySpanExporter(), request, work)
    assert ours.name == theirs.name
    assert ours.kind == theirs.kind == SpanKind.SERVER
    assert ours.parent == theirs.parent
    assert ours.parent is not None
    assert ours.parent.is_remote
    assert ours.context is not None
    assert theirs.context is not None
    assert ours.context.trace_id == theirs.context.trace_id
    assert ours.context.trace_flags == theirs.context.trace_flags
    assert list((ours.attributes or {}).items()) == list((theirs.attributes or {}).items())
    if length_limit:
        assert (ours.attributes or {})["http.route"] == "GET "
    assert (ours.attributes or {})["ember.sizes"] == (1, 2, 3)
    assert ours.dropped_attributes == theirs.dropped_attributes
    assert [(e.name, dict(e.attributes or {})) for e in ours.events] == [
        (e.name, dict(e.attributes or {})) for e in theirs.events
    ]
    assert ours.status.status_code == theirs.status.status_code == StatusCode.ERROR
    assert ours.resource == theirs.resource
    assert ours.instrumentation_scope == theirs.instrumentation_scope
    assert ours.start_time is not None
    assert ours.end_time is not None
    assert ours.start_time <= ours.end_time
