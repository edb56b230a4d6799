"""The app factory's promises, on a bare service: probes, problem details, request ids, OpenAPI."""

from __future__ import annotations

import uuid
from typing import Annotated

import pytest
from ember_devkit.testing.tokens import KeyPair, TokenFactory
from ember_shared.app import ServiceSpec, create_service_app
from ember_shared.auth import Principal, provide_principal, requires_admin, requires_signed_in
from ember_shared.problems import Problem
from litestar import Litestar, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.testing import AsyncTestClient


@get("/api/foundation/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


@post("/api/foundation/echo")
async def echo(data: dict[str, int]) -> dict[str, int]:
    return data


@post("/api/foundation/private-echo", guards=[requires_signed_in])
async def private_echo(data: dict[str, int]) -> dict[str, int]:
    return data


@post("/api/foundation/form")
async def form(
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> dict[str, str]:
    return data


@get("/api/foundation/teapot")
async def teapot() -> None:
    raise Problem(409, "teapot", "The pot is busy.", pot="brown")


@get("/api/foundation/boom")
async def boom() -> None:
    raise RuntimeError("secret internals")


@get(
    "/api/foundation/me", guards=[requires_signed_in], dependencies={"principal": provide_principal}
)
async def me(principal: Principal) -> dict[str, str]:
    return {"user_id": str(principal.user_id)}


@get("/api/foundation/admin", guards=[requires_admin])
async def admin_only() -> dict[str, str]:
    return {"ok": "admin"}


@post("/api/foundation/cookie-write", guards=[requires_signed_in])
async def cookie_write() -> dict[str, str]:
    return {"ok": "written"}


@pytest.fixture(scope="module")
def app(ember_env: object) -> Litestar:
    return create_service_app(
        ServiceSpec(
            name="foundationtest",
            title="Foundation test",
            description="A bare service for the factory's tests.",
            route_handlers=[
                hello,
                echo,
                private_echo,
                form,
                teapot,
                boom,
                me,
                admin_only,
                cookie_write,
            ],
        )
    )


@pytest.fixture
async def client(app: Litestar) -> AsyncTestClient[Litestar]:
    async with AsyncTestClient(app=app) as client:
        yield client


async def test_probes_answer(client: AsyncTestClient[Litestar]) -> None:
    live = await client.get("/api/health/foundationtest/live")
    assert live.status_code == 200
    ready = await client.get("/api/health/foundationtest/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "kind"),
    [
        ("GET", "/api/foundation/nope", None, 404, "not-found"),
        ("DELETE", "/api/foundation/hello", None, 405, "method-not-allowed"),
        ("POST", "/api/foundation/echo", b"{not json", 400, "bad-request"),
        ("POST", "/api/foundation/echo", b'{"a": "x"}', 400, "validation"),
        ("GET", "/api/foundation/teapot", None, 409, "teapot"),
    ],
)
async def test_errors_are_problem_details(
    client: AsyncTestClient[Litestar],
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    kind: str,
) -> None:
    response = await client.request(
        method, path, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"].endswith("/" + kind)
    assert problem["title"]
    assert problem["detail"]
    assert problem["instance"] == path


async def test_problem_extension_members_are_kept(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/foundation/teapot")
    assert response.json()["pot"] == "brown"


async def test_unhandled_error_hides_the_stack(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/foundation/boom", headers={"x-request-id": "req-123"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert response.json()["request_id"] == "req-123"


async def test_request_and_correlation_ids_are_echoed(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/foundation/hello", headers={"x-correlation-id": "corr-9"})
    assert response.headers["x-correlation-id"] == "corr-9"
    assert response.headers["x-request-id"]


async def test_openapi_documents_errors_as_problem_json(client: AsyncTestClient[Litestar]) -> None:
    document = (await client.get("/api/docs/foundationtest/openapi.json")).json()
    responses = document["paths"]["/api/foundation/echo"]["post"]["responses"]
    assert "application/problem+json" in responses["400"]["content"]
    assert "application/json" not in responses["400"]["content"]
    assert "ProblemDetails" in document["components"]["schemas"]


async def test_guards_verify_tokens_locally(
    client: AsyncTestClient[Litestar], tokens: TokenFactory
) -> None:
    customer, user_id = tokens.customer()
    admin, _ = tokens.admin()
    assert (await client.get("/api/foundation/me")).status_code == 401
    me = await client.get("/api/foundation/me", headers=tokens.bearer(customer))
    assert me.json() == {"user_id": str(user_id)}
    assert (
        await client.get("/api/foundation/admin", headers=tokens.bearer(customer))
    ).status_code == 403
    assert (
        await client.get("/api/foundation/admin", headers=tokens.bearer(admin))
    ).status_code == 200


@pytest.mark.parametrize("kind", ["other-key", "wrong-audience", "expired", "alg-none"])
async def test_bad_tokens_are_refused(
    client: AsyncTestClient[Litestar], tokens: TokenFactory, kind: str
) -> None:
    if kind == "other-key":
        token = tokens.mint(key_pem=KeyPair.generate().private_pem)
    elif kind == "wrong-audience":
        token = tokens.mint(aud="someone-else")
    elif kind == "expired":
        token = tokens.mint(expires_in=-60)
    else:
        import jwt

        token = jwt.encode(
            {"sub": str(uuid.uuid4()), "roles": ["admin"]}, key=None, algorithm="none"
        )
    response = await client.get("/api/foundation/admin", headers=tokens.bearer(token))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_cookie_writes_need_the_csrf_header(
    client: AsyncTestClient[Litestar], tokens: TokenFactory
) -> None:
    token, _ = tokens.customer()
    csrf = tokens.csrf(token)
    cookies = {"ember_access": token, "ember_csrf": csrf}
    refused = await client.post("/api/foundation/cookie-write", cookies=cookies)
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/csrf")
    allowed = await client.post(
        "/api/foundation/cookie-write", cookies=cookies, headers={"X-CSRF-Token": csrf}
    )
    assert allowed.status_code == 201
    bearer = await client.post("/api/foundation/cookie-write", headers=tokens.bearer(token))
    assert bearer.status_code == 201


async def test_a_csrf_pair_not_bound_to_the_session_is_refused(
    client: AsyncTestClient[Litestar], tokens: TokenFactory
) -> None:
    """An equal cookie and header pair someone planted (or another session's token) does not
    pass: the token must be the one of the access token's own session."""
    token, _ = tokens.customer()
    other, _ = tokens.customer()
    for planted in ("abc123", tokens.csrf(other)):
        forged = await client.post(
            "/api/foundation/cookie-write",
            cookies={"ember_access": token, "ember_csrf": planted},
            headers={"X-CSRF-Token": planted},
        )
        assert forged.status_code == 403, planted
        assert forged.json()["type"].endswith("/csrf")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_json_body_is_taken_only_as_json(
    client: AsyncTestClient[Litestar], content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/api/foundation/echo", content=b'{"a": 1}', headers=headers)
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/unsupported-media-type")
    # Who may call is answered first: an anonymous caller hears 401, not 415.
    anonymous = await client.post(
        "/api/foundation/private-echo", content=b'{"a": 1}', headers=headers
    )
    assert anonymous.status_code == 401, anonymous.text
    for json_type in ("application/json", "application/json; charset=utf-8", "application/x+json"):
        ok = await client.post(
            "/api/foundation/echo", content=b'{"a": 1}', headers={"content-type": json_type}
        )
        assert ok.status_code == 201, (json_type, ok.text)


async def test_a_route_that_reads_another_media_type_takes_only_that(
    client: AsyncTestClient[Litestar],
) -> None:
    ok = await client.post("/api/foundation/form", data={"a": "1"})
    assert ok.status_code == 201, ok.text
    assert ok.json() == {"a": "1"}
    refused = await client.post("/api/foundation/form", json={"a": "1"})
    assert refused.status_code == 415
    assert refused.json()["detail"] == "Send this request as application/x-www-form-urlencoded."


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
    ],
)
async def test_cross_site_changes_are_refused_whoever_sends_them(
    client: AsyncTestClient[Litestar], tokens: TokenFactory, headers: dict[str, str]
) -> None:
    token, _ = tokens.customer()
    for extra in ({}, tokens.bearer(token)):
        response = await client.post("/api/foundation/echo", json={"a": 1}, headers=headers | extra)
        assert response.status_code == 403, response.text
        assert response.json()["type"].endswith("/cross-site")
    # Reading is never refused; the shop's own pages (same origin) change things as before.
    assert (await client.get("/api/foundation/hello", headers=headers)).status_code == 200
    same_site = {"origin": "http://testserver.local", "sec-fetch-site": "same-origin"}
    ok = await client.post("/api/foundation/echo", json={"a": 1}, headers=same_site)
    assert ok.status_code == 201, ok.text
