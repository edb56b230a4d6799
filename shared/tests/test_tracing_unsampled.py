"""Sampling is decided before a request is traced (``tracing.SampledRequests``): an unsampled
request makes no span, here or below it (Redis, SQL, HTTP calls), yet the services it calls get
a ``traceparent`` that says unsampled (flags 00, or 02 for a new random trace id), so they leave the whole trace out too; a
sampled one is traced as before, and a new trace is kept in the share the sampler says.

The app is a real Litestar app with the shared middleware, reading real Redis and calling a
real HTTP server that records the headers it gets.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from ember_devkit.testing.plugin import TestEnv
from ember_shared import tracing
from litestar import Litestar, get
from litestar.middleware import DefineMiddleware
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

CALLER_SPAN = "00f067aa0ba902b7"


class Downstream:
    """A real HTTP server that keeps the ``traceparent`` of every request it answers."""

    def __init__(self) -> None:
        seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.headers.get("traceparent", ""))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.seen = seen
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """This process's tracing, on and exporting to memory (once: the provider is global), and
    off again after this module: the apps later tests build in this process must not trace
    (a checkout's Stripe metadata would carry a traceparent)."""
    exported = InMemorySpanExporter()
    assert tracing.setup_tracing("tracing-test", processor=SimpleSpanProcessor(exported))
    yield exported
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    tracing._state["provider"] = None
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()


@pytest.fixture(scope="module")
def engine(ember_env: TestEnv, exporter: InMemorySpanExporter) -> AsyncEngine:
    """One engine for the module, as a service has: the SQLAlchemy instrumentation traces the
    first engine it is given in a process. No pool: each test has its own event loop."""
    made = create_async_engine(
        ember_env.database_url.replace("postgresql://", "postgresql+asyncpg://"),
        poolclass=NullPool,
    )
    tracing.instrument_engine(made)
    return made


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    server = Downstream()
    yield server
    server.server.shutdown()
    server.server.server_close()


def build_app(
    env: TestEnv, engine: AsyncEngine, downstream: Downstream, middleware: DefineMiddleware
) -> Litestar:
    redis = Redis.from_url(env.redis_url)

    @get("/api/things")
    async def things() -> dict[str, str]:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
        await redis.set("tracing-test:thing", b"1")
        value = await redis.get("tracing-test:thing")
        async with httpx.AsyncClient() as client:
            answer = await client.get(downstream.url)
        return {"value": (value or b"").decode(), "downstream": str(answer.status_code)}

    @get("/api/health/test/live")
    async def live() -> dict[str, str]:
        async with httpx.AsyncClient() as client:
            await client.get(downstream.url)
        return {"status": "ok"}

    async def close(_: Litestar) -> None:
        await redis.aclose()

    return Litestar([things, live], middleware=[middleware], on_shutdown=[close])


@pytest.fixture
async def client(
    ember_env: TestEnv, engine: AsyncEngine, downstream: Downstream
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    middleware = tracing.litestar_middleware()
    assert middleware is not None
    async with AsyncTestClient(build_app(ember_env, engine, downstream, middleware)) as c:
        yield c


def spans_of(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.context is not None and f"{s.context.trace_id:032x}" == trace_id
    ]


async def test_an_unsampled_request_makes_no_span_and_passes_on_flags_00(
    client: AsyncTestClient[Litestar], downstream: Downstream, exporter: InMemorySpanExporter
) -> None:
    trace_id = os.urandom(16).hex()
    answer = await client.get(
        "/api/things", headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN}-00"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"value": "1", "downstream": "204"}
    assert spans_of(exporter, trace_id) == []
    [sent] = downstream.seen
    version, sent_trace, sent_span, flags = sent.split("-")
    # The same trace, continued from this service's own (unrecorded) span, still unsampled.
    assert (version, sent_trace, flags) == ("00", trace_id, "00")
    assert sent_span not in (CALLER_SPAN, "0" * 16)


async def test_a_sampled_request_is_traced_whole_as_before(
    client: AsyncTestClient[Litestar], downstream: Downstream, exporter: InMemorySpanExporter
) -> None:
    trace_id = os.urandom(16).hex()
    answer = await client.get(
        "/api/things", headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"}
    )
    assert answer.status_code == 200
    spans = spans_of(exporter, trace_id)
    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    assert server.parent is not None
    assert f"{server.parent.span_id:016x}" == CALLER_SPAN
    assert server.name == "GET /api/things"
    clients = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert sorted(s.name for s in clients) == ["GET", "GET", "SELECT", "SET", "connect"]
    assert server.context is not None
    assert all(s.parent is not None and s.parent.span_id == server.context.span_id for s in clients)
    [http_call] = [s for s in clients if s.attributes and "db.system" not in s.attributes]
    assert http_call.context is not None
    [sent] = downstream.seen
    assert sent == f"00-{trace_id}-{http_call.context.span_id:016x}-01"


async def test_probes_are_not_traced_and_carry_no_trace(
    client: AsyncTestClient[Litestar], downstream: Downstream, exporter: InMemorySpanExporter
) -> None:
    trace_id = os.urandom(16).hex()
    answer = await client.get(
        "/api/health/test/live", headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"}
    )
    assert answer.status_code == 200
    assert spans_of(exporter, trace_id) == []
    assert downstream.seen == [""]


async def test_new_traces_are_kept_in_the_sampled_share_and_whole(
    ember_env: TestEnv, engine: AsyncEngine, downstream: Downstream
) -> None:
    """Half the new traces kept: each request kept is recorded under the trace id its sampling
    was decided on (a second, independent draw would keep only a quarter), and the service it
    calls is told so; every other one is unsampled below too."""
    exported = InMemorySpanExporter()
    provider = TracerProvider(
        sampler=ParentBased(root=tracing.LinkedOrRatio(0.5)),
    )
    provider.add_span_processor(SimpleSpanProcessor(exported))
    middleware = DefineMiddleware(tracing.SampledRequests, provider=provider)
    requests = 200
    async with AsyncTestClient(build_app(ember_env, engine, downstream, middleware)) as c:
        for _ in range(requests):
            assert (await c.get("/api/things")).status_code == 200
    servers = {
        f"{s.context.trace_id:032x}": s
        for s in exported.get_finished_spans()
        if s.kind == SpanKind.SERVER and s.context is not None
    }
    assert len(downstream.seen) == requests
    # The last field is the flags: 01 sampled; 02 says the trace id is random (not sampled).
    kept = [sent for sent in downstream.seen if int(sent.split("-")[3], 16) & 1]
    assert {sent.split("-")[3] for sent in downstream.seen} == {"03", "02"}
    assert 0.38 * requests <= len(kept) <= 0.62 * requests
    assert {sent.split("-")[1] for sent in kept} == set(servers)
    # Each server span says what OpenTelemetry's HTTP conventions ask, once.
    attributes = next(iter(servers.values())).attributes or {}
    assert attributes["http.route"] == "GET /api/things"
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == "/api/things"
    assert attributes["http.response.status_code"] == 200


async def test_a_second_engine_of_the_process_is_traced_too(
    ember_env: TestEnv, engine: AsyncEngine, exporter: InMemorySpanExporter
) -> None:
    """A pool of a service's own (catalog's searches, checkout's budget claims) is a second
    engine: its statements are traced under a recorded span as the first engine's are, and make
    no span outside one (the instrumentation traced only the first engine a process gave it)."""
    second = create_async_engine(
        ember_env.database_url.replace("postgresql://", "postgresql+asyncpg://"),
        poolclass=NullPool,
    )
    tracing.instrument_engine(second)
    try:
        with tracing.tracer().start_as_current_span("a request") as request:
            async with second.connect() as connection:
                assert (await connection.execute(text("SELECT 2 AS second"))).scalar() == 2
        async with second.connect() as connection:
            assert (await connection.execute(text("SELECT 3 AS unrecorded"))).scalar() == 3
    finally:
        await second.dispose()
    trace_id = f"{request.get_span_context().trace_id:032x}"
    statements = [
        str((s.attributes or {}).get("db.statement", ""))
        for s in exporter.get_finished_spans()
        if s.kind == SpanKind.CLIENT and "db.system" in (s.attributes or {})
    ]
    assert [s.name for s in spans_of(exporter, trace_id) if s.name == "SELECT"] == ["SELECT"]
    assert any("SELECT 2 AS second" in statement for statement in statements), statements
    assert not any("unrecorded" in statement for statement in statements), statements
