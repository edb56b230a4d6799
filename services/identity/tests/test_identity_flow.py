"""Identity through Caddy, with the whole stack running: sign-in cookies, a token verified by
another service on its own (JWKS) and refused there once the session ends, the sign-up and
password-reset mails delivered by the notifier, and Google sign-in against the OIDC stand-in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from ember_devkit.testing.stack import RunningStack

pytestmark = pytest.mark.stack


def email() -> str:
    return f"flow-{uuid.uuid4().hex[:10]}@example.com"


def password() -> str:
    return f"Flow-{uuid.uuid4().hex[:12]}!"


def sign_up(
    stack: RunningStack, browser: httpx.Client, address: str, secret: str
) -> httpx.Response:
    """Signs up and opens the link the notifier mailed: the newcomer is signed in."""
    asked = browser.post("/api/auth/register", json={"email": address, "password": secret})
    assert asked.status_code == 202, asked.text
    assert "set-cookie" not in asked.headers
    token = stack.mailed_token(address, "/verify-email")
    opened = browser.post("/api/auth/verify-email", json={"token": token})
    assert opened.status_code == 201, opened.text
    return opened


@pytest.fixture
def browser(stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


def test_sign_in_and_other_services_trust_the_token(
    stack: RunningStack, browser: httpx.Client
) -> None:
    address, secret = email(), password()
    registered = sign_up(stack, browser, address, secret)
    token = registered.json()["access_token"]
    me = browser.get("/api/auth/me")
    assert me.status_code == 200, (
        me.text,
        dict(browser.cookies),
        registered.headers.get_list("set-cookie"),
    )
    assert me.json()["user"]["email"] == address

    # Orders never asks identity: it verifies the token with identity's published key.
    bearer = {"Authorization": f"Bearer {token}"}
    assert browser.get("/api/orders/my-orders", headers=bearer).status_code == 200
    assert browser.get("/api/orders/my-orders").status_code == 200  # the ember_access cookie

    # The CSRF double submit guards cookie-authenticated changes.
    refused = browser.put("/api/user/profile", json={"name": "Ada"})
    assert refused.status_code == 403
    csrf = browser.cookies.get("ember_csrf") or ""
    assert (
        browser.put(
            "/api/user/profile", json={"name": "Ada"}, headers={"X-CSRF-Token": csrf}
        ).status_code
        == 200
    )

    assert browser.post("/api/auth/logout", json={}).status_code == 200
    # Another service refuses the unexpired token at once (the Redis revocation list).
    with httpx.Client(base_url=stack.url, timeout=30) as api:
        assert api.get("/api/orders/my-orders", headers=bearer).status_code == 401
    # JWKS is public through the gateway too.
    keys = browser.get("/api/auth/jwks.json").json()["keys"]
    assert keys[0]["kty"] == "OKP"


def test_password_reset_mail_arrives_and_works(stack: RunningStack, browser: httpx.Client) -> None:
    address, secret = email(), password()
    sign_up(stack, browser, address, secret)
    assert browser.post("/api/auth/forgot-password", json={"email": address}).status_code == 202
    link = stack.mailed_token(address, "/reset-password")
    new_secret = password()
    reset = browser.post("/api/auth/reset-password", json={"token": link, "password": new_secret})
    assert reset.status_code == 200, reset.text
    assert browser.get("/api/auth/me").status_code == 401  # every session ended
    signed = browser.post("/api/auth/login", json={"email": address, "password": new_secret})
    assert signed.status_code == 200


def test_google_sign_in_through_the_gateway(stack: RunningStack, browser: httpx.Client) -> None:
    address = email()
    start = browser.get(
        "/api/auth/google/login", params={"next": "/account", "login_hint": address}
    )
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    assert authorize.startswith(stack.service_url("oidc-standin") + "/authorize?")
    with httpx.Client(timeout=30) as provider:
        approved = provider.get(authorize + "&standin_approve=1")
    assert approved.status_code == 302
    callback = urlsplit(approved.headers["location"])
    assert callback.path == "/api/auth/google/callback"
    done = browser.get(f"{callback.path}?{callback.query}")
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/account"
    profile = browser.get("/api/user/profile").json()
    assert profile["email"] == address
    assert profile["linked_providers"] == ["google"]
