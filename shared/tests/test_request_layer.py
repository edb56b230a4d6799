"""What every request costs in the app factory's own layers (issue 12), and what it still gives
operators (issue 13): request metrics by route and status, request and correlation ids on the
answer and in the logs, no-store by default, cross-site refusals."""

from __future__ import annotations

import json
from typing import Any

import litestar.handlers.base
import pytest
import structlog
from ember_shared.app import ServiceSpec, create_service_app
from litestar import Litestar, Response, get, post
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

log = structlog.get_logger("request-layer-test")


@get("/api/layer/items/{item:str}")
async def item(item: str) -> dict[str, str]:
    log.info("item_read", item=item)
    return {"item": item}


@get("/api/layer/public")
async def public() -> Response[dict[str, str]]:
    return Response({"ok": "yes"}, headers={"cache-control": "public, max-age=60"})


@get("/api/layer/broken")
async def broken() -> None:
    raise RuntimeError("broken")


@post("/api/layer/change")
async def change(data: dict[str, int]) -> dict[str, int]:
    return data


@pytest.fixture(scope="module")
def app(ember_env: object) -> Litestar:
    return create_service_app(
        ServiceSpec(
            name="layertest",
            title="Request layer test",
            description="A bare service for the request layer's tests.",
            route_handlers=[item, public, broken, change],
        )
    )


@pytest.fixture
async def client(app: Litestar) -> AsyncTestClient[Litestar]:
    async with AsyncTestClient(app=app) as client:
        yield client


def served(path: str, status: str, series: str = "ember_requests_total") -> float:
    value = REGISTRY.get_sample_value(
        series,
        {"method": "GET", "path": path, "status_code": status, "app_name": "layertest"},
    )
    return value or 0.0


async def test_request_metrics_by_route_and_status(client: AsyncTestClient[Litestar]) -> None:
    route = "/api/layer/items/{item}"
    before = served(route, "200")
    errors_before = served("/api/layer/broken", "500", "ember_requests_error_total")
    for name in ("a", "b", "c"):
        assert (await client.get(f"/api/layer/items/{name}")).status_code == 200
    assert (await client.get("/api/layer/broken")).status_code == 500
    assert served(route, "200") == before + 3
    assert served(route, "200", "ember_request_duration_seconds_count") >= 3
    assert served("/api/layer/broken", "500", "ember_requests_error_total") == errors_before + 1
    # The probes are not counted.
    assert (await client.get("/api/health/layertest/live")).status_code == 200
    assert served("/api/health/layertest/live", "200") == 0


async def test_no_series_lookup_per_request(
    client: AsyncTestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A route's series are looked up once (per method and status), not four times per request
    as Litestar's middleware did."""
    assert (await client.get("/api/layer/items/first")).status_code == 200
    lookups: list[Any] = []
    labels = MetricWrapperBase.labels

    def counted(self: MetricWrapperBase, *args: Any, **kwargs: Any) -> Any:
        lookups.append(args)
        return labels(self, *args, **kwargs)

    monkeypatch.setattr(MetricWrapperBase, "labels", counted)
    for name in ("x", "y", "z"):
        assert (await client.get(f"/api/layer/items/{name}")).status_code == 200
    assert lookups == []


async def test_no_route_handler_copied_for_a_route_without_guards(
    client: AsyncTestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cross-site check was an app-wide guard: Litestar copies the route handler for each
    guard of each request. It is now checked in the authentication layer."""
    copies: list[Any] = []
    copy = litestar.handlers.base.copy

    def counted(value: Any) -> Any:
        copies.append(value)
        return copy(value)

    monkeypatch.setattr(litestar.handlers.base, "copy", counted)
    assert (await client.get("/api/layer/items/a")).status_code == 200
    assert (await client.post("/api/layer/change", json={"a": 1})).status_code == 201
    assert copies == []


async def test_a_cross_site_refusal_is_answered_like_any_problem(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.post(
        "/api/layer/change",
        json={"a": 1},
        headers={"origin": "https://evil.example", "x-request-id": "req-cross"},
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/cross-site")
    assert response.json()["request_id"] == "req-cross"
    assert response.headers["x-request-id"] == "req-cross"
    assert response.headers["cache-control"] == "no-store"
    assert (
        REGISTRY.get_sample_value(
            "ember_requests_total",
            {
                "method": "POST",
                "path": "/api/layer/change",
                "status_code": "403",
                "app_name": "layertest",
            },
        )
        or 0
    ) >= 1


async def test_ids_and_cache_policy_on_every_answer(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get(
        "/api/layer/items/a", headers={"x-request-id": "req-1", "x-correlation-id": "corr-1"}
    )
    assert response.headers["x-request-id"] == "req-1"
    assert response.headers["x-correlation-id"] == "corr-1"
    assert response.headers["cache-control"] == "no-store"
    fresh = await client.get("/api/layer/items/a", headers={"x-request-id": "<script>"})
    assert fresh.headers["x-request-id"] not in ("", "<script>")
    assert fresh.headers["x-correlation-id"] == fresh.headers["x-request-id"]
    own = await client.get("/api/layer/public")
    assert own.headers.get_list("cache-control") == ["public, max-age=60"]


async def test_a_request_logs_with_its_ids(
    client: AsyncTestClient[Litestar], capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    await client.get(
        "/api/layer/items/logged", headers={"x-request-id": "req-log", "x-correlation-id": "c-log"}
    )
    lines = [
        json.loads(line) for line in capfd.readouterr().out.splitlines() if "item_read" in line
    ]
    assert [(line["request_id"], line["correlation_id"], line["item"]) for line in lines] == [
        ("req-log", "c-log", "logged")
    ]
    # Nothing of the request is left bound once it is answered.
    log.info("after_request")
    after = [json.loads(line) for line in capfd.readouterr().out.splitlines() if "after_" in line]
    assert after
    assert "request_id" not in after[0]
