"""Tracing is off unless an OTLP endpoint is set, and sampling keeps purchases whole."""

from __future__ import annotations

import pytest
from ember_shared import tracing
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, ParentBased
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags


def _context(sampled: bool) -> SpanContext:
    return SpanContext(
        trace_id=0x1234,
        span_id=0x99,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
    )


def test_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.endpoint() == ""
    if not tracing.tracing_on():  # another test of this process may have turned it on
        assert tracing.setup_tracing("nobody") is False
        assert tracing.litestar_middleware() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert tracing.endpoint() == "http://collector:4318"


def test_sample_ratio_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG", raising=False)
    assert tracing.sample_ratio() == 1.0
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    assert tracing.sample_ratio() == 0.1
    for bad in ("2", "-0.5", "ten"):
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", bad)
        with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER_ARG"):
            tracing.sample_ratio()


def test_a_trace_linked_to_a_kept_one_is_kept_and_polls_are_not() -> None:
    never = tracing.LinkedOrRatio(0.0)
    always = tracing.LinkedOrRatio(1.0)
    assert never.should_sample(None, 7, "webhook").decision == Decision.DROP
    kept = never.should_sample(None, 7, "webhook", links=[Link(_context(sampled=True))])
    assert kept.decision == Decision.RECORD_AND_SAMPLE
    dropped = never.should_sample(None, 7, "webhook", links=[Link(_context(sampled=False))])
    assert dropped.decision == Decision.DROP
    assert always.should_sample(None, 7, "GET /x", SpanKind.SERVER).decision != Decision.DROP
    # A query or Redis call with nothing around it is a background loop's poll.
    assert always.should_sample(None, 7, "SELECT", SpanKind.CLIENT).decision == Decision.DROP


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.5, 1.0])
def test_a_new_request_is_decided_as_the_whole_sampler_decides(ratio: float) -> None:
    """SampledRequests asks only the ratio for a request that carries no trace context; the
    sampler the provider uses (ParentBased around LinkedOrRatio) says the same of every id."""
    root = tracing.LinkedOrRatio(ratio)
    sampler = ParentBased(root=root)
    ids = RandomIdGenerator()
    trace_ids = [ids.generate_trace_id() for _ in range(2000)]
    # Ids around the bound, where a wrong comparison would show.
    bound = root.ratio.bound
    trace_ids += [max(bound - 1, 1), bound, bound + 1, bound | (1 << 100)]
    kept = 0
    for trace_id in trace_ids:
        whole = sampler.should_sample(Context(), trace_id, "/api/products", SpanKind.SERVER)
        assert root.keeps_new_request(trace_id) is (whole.decision is not Decision.DROP)
        kept += root.keeps_new_request(trace_id)
    assert abs(kept / len(trace_ids) - ratio) < 0.05
