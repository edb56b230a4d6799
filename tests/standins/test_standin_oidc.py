"""The Google OIDC stand-in speaks the protocol as Google does, and refuses what Google refuses."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from standins.oidc import CODE_TTL, create_app, subject_for

BASE = "http://oidc.test"
CLIENT_ID = "shop-client"
CLIENT_SECRET = "shop-secret"
REDIRECT = "http://shop.test/api/auth/google/callback"


def challenge(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


@pytest.fixture
async def provider() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


def authorize_params(verifier: str, **changes: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "openid email profile",
        "state": "state-123",
        "nonce": "nonce-456",
        "code_challenge": challenge(verifier),
        "code_challenge_method": "S256",
        "login_hint": "Ada@Example.com",
        "standin_approve": "1",
    }
    params.update(changes)
    return params


async def get_code(client: httpx.AsyncClient, verifier: str, **changes: str) -> dict[str, str]:
    response = await client.get("/authorize", params=authorize_params(verifier, **changes))
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def token_form(code: str, verifier: str, **changes: str) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "code_verifier": verifier,
    }
    form.update(changes)
    return form


async def test_discovery_names_the_address_it_was_asked_at(provider: httpx.AsyncClient) -> None:
    doc = (await provider.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == BASE
    assert doc["authorization_endpoint"] == f"{BASE}/authorize"
    assert doc["token_endpoint"] == f"{BASE}/token"
    assert doc["jwks_uri"] == f"{BASE}/jwks"
    assert "S256" in doc["code_challenge_methods_supported"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    configured = create_app(issuer="https://accounts.example")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=configured), base_url=BASE
    ) as other:
        assert (await other.get("/.well-known/openid-configuration")).json()[
            "issuer"
        ] == "https://accounts.example"


async def test_the_whole_code_flow_with_pkce(provider: httpx.AsyncClient) -> None:
    verifier = secrets.token_urlsafe(48)
    query = await get_code(provider, verifier, standin_name="Ada Lovelace")
    assert query["state"] == "state-123"
    response = await provider.post("/token", data=token_form(query["code"], verifier))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    keys = (await provider.get("/jwks")).json()["keys"]
    (key,) = keys
    assert key["kty"] == "RSA"
    header = jwt.get_unverified_header(body["id_token"])
    assert header["kid"] == key["kid"]
    claims: dict[str, Any] = jwt.decode(
        body["id_token"],
        jwt.PyJWK.from_dict(key),
        algorithms=["RS256"],
        audience=CLIENT_ID,
        issuer=BASE,
    )
    assert claims["nonce"] == "nonce-456"
    assert claims["email"] == "Ada@Example.com"
    assert claims["email_verified"] is True
    assert claims["name"] == "Ada Lovelace"
    assert claims["sub"] == subject_for("ada@example.com")
    assert len(claims["sub"]) == 21
    assert claims["sub"].isdigit()
    assert claims["azp"] == CLIENT_ID

    info = await provider.get(
        "/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert info.status_code == 200
    assert info.json()["sub"] == claims["sub"]
    assert (
        await provider.get("/userinfo", headers={"Authorization": "Bearer nope"})
    ).status_code == 401


async def test_client_secret_basic_is_accepted(provider: httpx.AsyncClient) -> None:
    verifier = secrets.token_urlsafe(48)
    code = (await get_code(provider, verifier))["code"]
    form = token_form(code, verifier)
    del form["client_id"], form["client_secret"]
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    response = await provider.post("/token", data=form, headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("changes", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "someone-else"}, 401, "invalid_client"),
        ({"redirect_uri": "http://evil.test/cb"}, 400, "invalid_grant"),
        ({"code_verifier": "x" * 50}, 400, "invalid_grant"),
        ({"code_verifier": ""}, 400, "invalid_grant"),
        ({"code": "not-a-code"}, 400, "invalid_grant"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
async def test_token_endpoint_refusals(
    provider: httpx.AsyncClient, changes: dict[str, str], status: int, error: str
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = (await get_code(provider, verifier))["code"]
    response = await provider.post("/token", data={**token_form(code, verifier), **changes})
    assert response.status_code == status
    assert response.json()["error"] == error


async def test_a_code_works_once_and_briefly(provider: httpx.AsyncClient) -> None:
    verifier = secrets.token_urlsafe(48)
    code = (await get_code(provider, verifier))["code"]
    assert (await provider.post("/token", data=token_form(code, verifier))).status_code == 200
    again = await provider.post("/token", data=token_form(code, verifier))
    assert again.json()["error"] == "invalid_grant"

    stale = (await get_code(provider, verifier))["code"]
    grant = provider.app.state.provider.codes[stale]  # type: ignore[attr-defined]
    grant.issued -= CODE_TTL + 1
    assert (await provider.post("/token", data=token_form(stale, verifier))).json()[
        "error"
    ] == "invalid_grant"


async def test_a_failed_exchange_still_uses_up_the_code(provider: httpx.AsyncClient) -> None:
    verifier = secrets.token_urlsafe(48)
    code = (await get_code(provider, verifier))["code"]
    assert (await provider.post("/token", data=token_form(code, "y" * 60))).status_code == 400
    assert (await provider.post("/token", data=token_form(code, verifier))).status_code == 400


async def test_authorize_refuses_unknown_clients_and_addresses_on_the_page(
    provider: httpx.AsyncClient,
) -> None:
    verifier = secrets.token_urlsafe(48)
    unknown = await provider.get(
        "/authorize", params=authorize_params(verifier, client_id="nobody")
    )
    assert unknown.status_code == 401
    assert "location" not in unknown.headers  # never redirect for a client we do not know
    bad_uri = await provider.get(
        "/authorize", params=authorize_params(verifier, redirect_uri="javascript:alert(1)")
    )
    assert bad_uri.status_code == 400
    assert "location" not in bad_uri.headers


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "email"}, "invalid_scope"),
        ({"code_challenge_method": "S512"}, "invalid_request"),
        ({"login_hint": ""}, "login_required"),
    ],
)
async def test_authorize_errors_go_back_to_the_client(
    provider: httpx.AsyncClient, changes: dict[str, str], error: str
) -> None:
    response = await provider.get("/authorize", params=authorize_params("v" * 50, **changes))
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == [error]
    assert query["state"] == ["state-123"]


async def test_the_sign_in_page(provider: httpx.AsyncClient) -> None:
    verifier = secrets.token_urlsafe(48)
    params = authorize_params(verifier)
    del params["standin_approve"]
    page = await provider.get("/authorize", params=params)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Ada@Example.com" in page.text
    request_id = page.text.split("name='request_id' value='")[1].split("'")[0]

    denied = await provider.post(
        "/authorize/decision", data={"request_id": request_id, "action": "deny"}
    )
    assert denied.status_code == 302
    assert parse_qs(urlsplit(denied.headers["location"]).query) == {
        "error": ["access_denied"],
        "state": ["state-123"],
    }
    # The request was used up by the answer.
    again = await provider.post(
        "/authorize/decision", data={"request_id": request_id, "action": "approve"}
    )
    assert again.status_code == 400

    page = await provider.get("/authorize", params=params)
    request_id = page.text.split("name='request_id' value='")[1].split("'")[0]
    approved = await provider.post(
        "/authorize/decision",
        data={
            "request_id": request_id,
            "action": "approve",
            "email": "grace@example.com",
            "name": "Grace",
        },
    )
    query = parse_qs(urlsplit(approved.headers["location"]).query)
    token = await provider.post("/token", data=token_form(query["code"][0], verifier))
    claims = jwt.decode(token.json()["id_token"], options={"verify_signature": False})
    assert claims["email"] == "grace@example.com"
    assert claims["email_verified"] is False  # the box was left unticked

    index = await provider.get("/")
    assert "grace@example.com" in index.text


async def test_the_page_escapes_what_it_is_given(provider: httpx.AsyncClient) -> None:
    params = authorize_params("v" * 50, login_hint="<script>alert(1)</script>")
    del params["standin_approve"]
    page = await provider.get("/authorize", params=params)
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;" in page.text
