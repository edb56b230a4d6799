"""``service_client``: httpx's client on aiohttp's connections (issue 12). What every caller relies
on stays: the credential and correlation id sent, httpx's responses and errors (a caller maps
``httpx.HTTPError`` to a 503 problem), connection failures retried, timeouts, keep-alive, and the
``traceparent`` and client span of OpenTelemetry's httpx instrumentation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from ember_devkit.testing.apps import serve_in_loop
from ember_devkit.testing.ports import free_port
from ember_shared import tracing
from ember_shared.http import AiohttpPool, service_client
from ember_shared.logging import correlation_id_var
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import Cookie
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@post("/echo", sync_to_thread=False)
def echo(request: Request[Any, Any, Any], data: dict[str, Any]) -> dict[str, Any]:
    return {"headers": dict(request.headers), "data": data}


@get("/slow")
async def slow() -> str:
    await asyncio.sleep(5)
    return "late"


@get("/gone", sync_to_thread=False)
def gone() -> dict[str, str]:
    return {"gone": "yes"}


@get("/cookie", sync_to_thread=False)
def cookie(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    return Response(
        {"cookie": request.headers.get("cookie", "")},
        cookies=[Cookie(key="shopper", value="someone")],
    )


@pytest.fixture
async def server_url() -> AsyncIterator[str]:
    server, task = await serve_in_loop(Litestar([echo, slow, gone, cookie]), free_port())
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        await task


async def test_a_call_carries_the_credential_and_correlation_id(server_url: str) -> None:
    token = correlation_id_var.set("corr-client")
    try:
        async with service_client("catalog") as client:
            client.base_url = httpx.URL(server_url)
            response = await client.post("/echo", json={"a": 1})
            again = await client.post(
                "/echo", content=b'{"b": 2}', headers={"Content-Type": "application/json"}
            )
    finally:
        correlation_id_var.reset(token)
    assert isinstance(response, httpx.Response)
    assert response.status_code == 201
    body = response.json()
    assert body["data"] == {"a": 1}
    assert body["headers"]["x-correlation-id"] == "corr-client"
    assert "x-service-token" in body["headers"]
    assert body["headers"]["content-type"] == "application/json"
    assert again.json()["data"] == {"b": 2}
    assert response.headers["content-type"] == "application/json"


async def test_errors_are_httpx_errors(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with service_client("catalog", timeout=httpx.Timeout(0.3, connect=2.0)) as client:
        client.base_url = httpx.URL(server_url)
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/slow")
        # Nothing listens there: refused, tried once more, then an httpx.ConnectError.
        attempts: list[str] = []
        send = AiohttpPool._send

        async def counted(self: AiohttpPool, *args: Any, **kwargs: Any) -> Any:
            attempts.append(args[1])
            return await send(self, *args, **kwargs)

        monkeypatch.setattr(AiohttpPool, "_send", counted)
        client.base_url = httpx.URL(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(httpx.ConnectError):
            await client.get("/gone")
        assert len(attempts) == 2


async def test_the_connection_is_kept_for_the_next_call(server_url: str) -> None:
    async with service_client("catalog") as client:
        client.base_url = httpx.URL(server_url)
        for _ in range(3):
            assert (await client.get("/gone")).json() == {"gone": "yes"}
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool, AiohttpPool)
        assert pool.idle_connections() == 1


async def test_the_call_is_traced_as_httpx_calls_are(server_url: str) -> None:
    exporter = InMemorySpanExporter()
    tracing.setup_tracing("client-test", SimpleSpanProcessor(exporter))
    parent = extract({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
    async with service_client("catalog") as client:
        client.base_url = httpx.URL(server_url)
        with tracing.tracer().start_as_current_span("caller", context=parent):
            sampled = (await client.post("/echo", json={})).json()["headers"]
        unsampled_parent = extract({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-00"})
        with trace.use_span(trace.get_current_span(unsampled_parent)):
            unsampled = (await client.post("/echo", json={})).json()["headers"]
    assert sampled["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert sampled["traceparent"].endswith("-01")
    assert unsampled["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert unsampled["traceparent"].endswith("-00")
    calls = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert len(calls) == 1
    attributes = calls[0].attributes or {}
    assert attributes.get("http.request.method", attributes.get("http.method")) == "POST"
    url = str(attributes.get("url.full", attributes.get("http.url", "")))
    assert url == f"{server_url}/echo"
    status = attributes.get("http.response.status_code", attributes.get("http.status_code"))
    assert status == 201


async def test_no_cookie_is_kept_between_calls(server_url: str) -> None:
    """One client serves every shopper's requests: a cookie an answer sets must not go out
    again with the next call (httpx's own client kept it in its jar)."""
    async with service_client("catalog") as client:
        client.base_url = httpx.URL(server_url)
        first = await client.get("/cookie")
        assert first.cookies.get("shopper") == "someone"
        assert (await client.get("/cookie")).json() == {"cookie": ""}


async def test_a_new_base_url_is_used_at_once(server_url: str) -> None:
    async with service_client("catalog") as client:
        client.base_url = httpx.URL(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(httpx.ConnectError):
            await client.get("/gone")
        client.base_url = httpx.URL(server_url)
        assert (await client.get("/gone")).json() == {"gone": "yes"}
