"""The public OpenAPI document shows no internal route nor the service credential; the full one
is served on the service's own port to holders of that credential (issue 10 finding 13)."""

from __future__ import annotations

import msgspec
import pytest
from ember_shared.app import ServiceSpec, create_service_app
from ember_shared.auth import SERVICE_TOKEN_HEADER, requires_service
from litestar import Litestar, get, post
from litestar.config.app import AppConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.testing import AsyncTestClient

PROBLEM = "application/problem+json"


class Roast(msgspec.Struct):
    name: str


class ReservationSecret(msgspec.Struct):
    order_id: str
    hold_minutes: int


@get("/api/roasts")
async def roasts() -> list[Roast]:
    return [Roast("ember")]


@post(
    "/internal/roasts/reserve",
    guards=[requires_service],
    tags=["internal"],
    security=[{"ServiceToken": []}],
)
async def reserve(data: ReservationSecret) -> ReservationSecret:
    return data


def _document_service_token(config: AppConfig) -> None:
    assert config.openapi_config is not None
    components = config.openapi_config.components
    assert isinstance(components, Components)
    components.security_schemes = {
        **(components.security_schemes or {}),
        "ServiceToken": SecurityScheme(
            type="apiKey", name="X-Service-Token", security_scheme_in="header"
        ),
    }


@pytest.fixture(scope="module")
def app(ember_env: object) -> Litestar:
    return create_service_app(
        ServiceSpec(
            name="docstest",
            title="Docs test",
            description="A bare service with one public and one internal route.",
            route_handlers=[roasts, reserve],
            configure=_document_service_token,
        )
    )


@pytest.fixture
async def client(app: Litestar) -> AsyncTestClient[Litestar]:
    async with AsyncTestClient(app=app) as client:
        yield client


async def test_the_public_document_leaves_out_internal_routes_and_the_service_credential(
    client: AsyncTestClient[Litestar],
) -> None:
    answer = await client.get("/api/docs/docstest/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    assert "/api/roasts" in document["paths"]
    assert not [p for p in document["paths"] if p.startswith("/internal")]
    assert "ServiceToken" not in document["components"].get("securitySchemes", {})
    assert "BearerToken" in document["components"]["securitySchemes"]
    schemas = document["components"]["schemas"]
    assert any(name.endswith("Roast") for name in schemas)
    # A schema only the internal route uses says what the services trust each other with.
    assert not [name for name in schemas if "ReservationSecret" in name]
    for leak in ("/internal/", "X-Service-Token", "hold_minutes"):
        assert leak not in answer.text, leak
    # The pages that embed or fetch the document show the same one.
    for page in ("/api/docs/docstest", "/api/docs/docstest/swagger"):
        shown = await client.get(page)
        assert shown.status_code == 200, page
        assert "/internal/" not in shown.text, page
        assert "X-Service-Token" not in shown.text, page


async def test_the_full_document_is_for_holders_of_the_service_credential(
    app: Litestar, client: AsyncTestClient[Litestar]
) -> None:
    refused = await client.get("/internal/docs/openapi.json")
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith(PROBLEM)
    wrong = await client.get("/internal/docs/openapi.json", headers={SERVICE_TOKEN_HEADER: "x"})
    assert wrong.status_code == 401

    answer = await client.get(
        "/internal/docs/openapi.json", headers={SERVICE_TOKEN_HEADER: app.state.service_token}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    document = answer.json()
    assert document["paths"]["/internal/roasts/reserve"]["post"]["security"] == [
        {"ServiceToken": []}
    ]
    assert "/api/roasts" in document["paths"]
    assert "ServiceToken" in document["components"]["securitySchemes"]
    assert [name for name in document["components"]["schemas"] if "ReservationSecret" in name]
    # It is the app's own document (the one the published contracts are generated from), and it
    # does not list itself.
    assert set(document["paths"]) == set(app.openapi_schema.to_schema()["paths"])
    assert "/internal/docs/openapi.json" not in document["paths"]
