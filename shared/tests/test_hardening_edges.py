"""What every service answers at its edges, on a bare service (issue 10 findings 5 and 8):
malformed bodies are 400 problems, never 500s; personal answers are never stored by caches."""

from __future__ import annotations

import msgspec
import pytest
from ember_shared.app import ServiceSpec, create_service_app
from litestar import Litestar, Response, get, post
from litestar.testing import AsyncTestClient

PROBLEM = "application/problem+json"


class Item(msgspec.Struct):
    name: str
    tags: list[str] = []


@post("/api/edges/items")
async def add_item(data: Item) -> dict[str, str]:
    return {"name": data.name}


@post("/api/edges/raw")
async def raw(data: dict[str, object]) -> dict[str, int]:
    return {"keys": len(data)}


@get("/api/edges/me")
async def me() -> dict[str, str]:
    return {"email": "someone@example.com"}


@get("/api/edges/public")
async def public() -> Response[dict[str, str]]:
    return Response({"ok": "yes"}, headers={"Cache-Control": "public, max-age=60"})


@pytest.fixture(scope="module")
def app(ember_env: object) -> Litestar:
    return create_service_app(
        ServiceSpec(
            name="edgestest",
            title="Edges test",
            description="A bare service for the edge tests.",
            route_handlers=[add_item, raw, me, public],
        )
    )


@pytest.fixture
async def client(app: Litestar) -> AsyncTestClient[Litestar]:
    async with AsyncTestClient(app=app) as client:
        yield client


@pytest.mark.parametrize("path", ["/api/edges/items", "/api/edges/raw"])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"name": "' + b"\xff\xfe" + b'"}', id="invalid-utf8"),
        pytest.param(b'{"name": "x", "tags": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deep"),
        pytest.param(b"{" * 50_000, id="deep-unclosed"),
        pytest.param(b'{"name": "x"} trailing', id="trailing"),
        pytest.param(b"\x00\x01\x02", id="binary"),
    ],
)
async def test_malformed_bodies_are_400_problems(
    client: AsyncTestClient[Litestar], path: str, body: bytes
) -> None:
    response = await client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text[:300]
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "Traceback" not in response.text


async def test_answers_are_not_stored_unless_a_route_says_so(
    client: AsyncTestClient[Litestar],
) -> None:
    personal = await client.get("/api/edges/me")
    assert personal.headers["cache-control"] == "no-store"
    problem = await client.post(
        "/api/edges/items", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert problem.headers["cache-control"] == "no-store"
    public_ = await client.get("/api/edges/public")
    assert public_.headers["cache-control"] == "public, max-age=60"


@pytest.mark.parametrize(
    "given", ["<script>alert(1)</script>", "a b c", "x" * 65, "id;DROP", '{"json": 1}']
)
async def test_a_client_correlation_id_is_taken_only_when_it_looks_like_an_id(
    client: AsyncTestClient[Litestar], given: str
) -> None:
    odd = await client.get("/api/edges/me", headers={"X-Correlation-Id": given})
    assert odd.headers["x-correlation-id"] != given
    assert odd.headers["x-correlation-id"] == odd.headers["x-request-id"]
    fine = "01a243ad-612c-7173-a13c-4303a4969a13"
    kept = await client.get("/api/edges/me", headers={"X-Correlation-Id": fine})
    assert kept.headers["x-correlation-id"] == fine
