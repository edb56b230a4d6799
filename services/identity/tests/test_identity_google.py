"""Google sign-in end to end against the repo's OIDC stand-in running as a real HTTP server:
authorization code + PKCE, state bound to the browser, nonce, verified email; link or create."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from identity.google.services import safe_next
from identity_helpers import (
    Account,
    Browser,
    ServedApp,
    audit_actions,
    new_email,
    outbox_events,
    strong_password,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def start(
    browser: Browser, standin: ServedApp, email: str, next_path: str = "/orders"
) -> str:
    response = await browser.get(
        "/api/auth/google/login", params={"next": next_path, "login_hint": email}
    )
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(f"{standin.url}/authorize?")
    return location


async def at_provider(authorize_url: str, **standin: str) -> str:
    """The user approves at the stand-in (a real HTTP request); returns where it sends them."""
    async with httpx.AsyncClient() as http:
        response = await http.get(_with_query(authorize_url, standin_approve="1", **standin))
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def back_to_shop(browser: Browser, callback_url: str, **headers: str) -> httpx.Response:
    parts = urlsplit(callback_url)
    assert f"{parts.scheme}://{parts.netloc}" == "http://shop.test"
    return await browser.get(f"{parts.path}?{parts.query}", headers=headers)


async def google_sign_in(
    browser: Browser, standin: ServedApp, email: str, **standin_options: str
) -> httpx.Response:
    authorize = await start(browser, standin, email)
    return await back_to_shop(browser, await at_provider(authorize, **standin_options))


async def test_the_authorization_request_carries_pkce_state_and_nonce(
    browsers: Callable[..., Browser], oidc_standin: ServedApp, redis_client: Any
) -> None:
    browser = browsers()
    authorize = await start(browser, oidc_standin, "ada@example.com")
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == "ember-local"
    assert query["redirect_uri"] == "http://shop.test/api/auth/google/callback"
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32
    assert len(query["nonce"]) >= 32
    assert browser.cookie("ember_oidc_state") == query["state"]
    # The verifier and nonce wait server-side, never in the browser.
    keys = [k async for k in redis_client.scan_iter(match="identity:oidc-state:*")]
    assert keys
    assert query["state"].encode() not in b"".join(keys)


async def test_a_new_google_user_is_created_and_signed_in(
    browsers: Callable[..., Browser], oidc_standin: ServedApp, engine: AsyncEngine
) -> None:
    browser = browsers()
    email = new_email("google")
    response = await google_sign_in(
        browser, oidc_standin, email.upper(), standin_name="Grace Hopper"
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/orders"
    for cookie in ("ember_session", "ember_access", "ember_csrf"):
        assert browser.cookie(cookie), cookie
    profile = (await browser.get("/api/user/profile")).json()
    assert profile["email"] == email
    assert profile["name"] == "Grace Hopper"
    assert profile["has_password"] is False
    assert profile["email_verified"] is True
    assert profile["linked_providers"] == ["google"]
    user_id = uuid.UUID(profile["id"])
    actions = [a["action"] for a in await audit_actions(engine, user_id=user_id)]
    assert {"account.registered", "google.linked", "sign_in.succeeded"} <= set(actions)
    assert any(
        e["data"]["email"] == email for e in await outbox_events(engine, "user.registered.v1")
    )

    # Signing in again finds the same account through the link.
    again = browsers()
    assert (await google_sign_in(again, oidc_standin, email)).status_code == 303
    assert (await again.get("/api/user/profile")).json()["id"] == str(user_id)
    async with engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM identity.users WHERE email = :e"), {"e": email}
        )
    assert count == 1


async def test_google_links_an_unproved_account_and_ends_its_password(
    signed_in: tuple[Browser, Account],
    browsers: Callable[..., Browser],
    oidc_standin: ServedApp,
    engine: AsyncEngine,
) -> None:
    old_browser, account = signed_in
    # Accounts made before sign-up links proved addresses (or loaded from elsewhere).
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE identity.users SET email_verified = false WHERE id = :u"),
            {"u": account.user_id},
        )
    browser = browsers()
    response = await google_sign_in(browser, oidc_standin, account.email)
    assert response.status_code == 303
    profile = (await browser.get("/api/user/profile")).json()
    assert profile["id"] == str(account.user_id)
    assert profile["linked_providers"] == ["google"]
    # The address had never been proved, so whoever registered it may not own it: its
    # password and earlier sessions stop working; the mailbox owner carries on via Google.
    assert profile["has_password"] is False
    assert (await old_browser.get("/api/auth/me")).status_code == 401
    assert (await browsers().login(account.email, account.password)).status_code == 401


async def test_a_proved_account_keeps_its_password_when_google_is_linked(
    signed_in: tuple[Browser, Account],
    browsers: Callable[..., Browser],
    oidc_standin: ServedApp,
    engine: AsyncEngine,
) -> None:
    old_browser, account = signed_in  # made through the emailed link: its address is proved
    assert (await google_sign_in(browsers(), oidc_standin, account.email)).status_code == 303
    assert (await browsers().login(account.email, account.password)).status_code == 200
    assert (await old_browser.get("/api/auth/me")).status_code == 200


async def test_a_bad_state_is_refused(
    browsers: Callable[..., Browser], oidc_standin: ServedApp, engine: AsyncEngine
) -> None:
    browser = browsers()
    email = new_email("state")
    callback = await at_provider(await start(browser, oidc_standin, email))
    forged = _with_query(callback, state="forged-" + uuid.uuid4().hex)
    response = await back_to_shop(browser, forged)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/google-bad-state")
    assert browser.cookie("ember_session") is None
    async with engine.connect() as connection:
        assert (
            await connection.scalar(
                text("SELECT count(*) FROM identity.users WHERE email = :e"), {"e": email}
            )
            == 0
        )
    failures = await audit_actions(engine, action="google.failed")
    assert any(f["detail"]["reason"] == "bad-state" for f in failures)


async def test_a_state_from_another_browser_is_refused(
    browsers: Callable[..., Browser], oidc_standin: ServedApp
) -> None:
    """Login CSRF: an attacker's own authorization response, fed to a victim's browser."""
    attacker, victim = browsers(), browsers()
    callback = await at_provider(await start(attacker, oidc_standin, new_email("attacker")))
    response = await back_to_shop(victim, callback)
    assert response.status_code == 400
    assert victim.cookie("ember_session") is None
    # ...and a browser is sent back to the sign-in page rather than shown JSON.
    html = await back_to_shop(victim, callback, accept="text/html")
    assert html.status_code == 303
    assert html.headers["location"] == "/sign-in?error=google-bad-state"


async def test_a_state_works_once(
    browsers: Callable[..., Browser], oidc_standin: ServedApp
) -> None:
    browser = browsers()
    callback = await at_provider(await start(browser, oidc_standin, new_email("once")))
    assert (await back_to_shop(browser, callback)).status_code == 303
    # Same state and cookie once more (a replayed callback URL).
    browser.client.cookies.set(
        "ember_oidc_state",
        parse_qs(urlsplit(callback).query)["state"][0],
        domain="shop.test",
        path="/api/auth/google",
    )
    assert (await back_to_shop(browser, callback)).status_code == 400


async def test_a_bad_nonce_is_refused(
    browsers: Callable[..., Browser], oidc_standin: ServedApp
) -> None:
    """An ID token minted for another sign-in (its nonce differs) is not accepted."""
    browser = browsers()
    authorize = await start(browser, oidc_standin, new_email("nonce"))
    callback = await at_provider(
        _with_query(authorize, nonce="someone-elses-nonce-" + uuid.uuid4().hex)
    )
    response = await back_to_shop(browser, callback)
    assert response.status_code == 400
    assert response.json()["type"].endswith("/google-bad-nonce")
    assert browser.cookie("ember_session") is None


async def test_a_tampered_pkce_challenge_makes_the_code_useless(
    browsers: Callable[..., Browser], oidc_standin: ServedApp
) -> None:
    """The code was bound to another challenge: our verifier does not match it."""
    browser = browsers()
    authorize = await start(browser, oidc_standin, new_email("pkce"))
    callback = await at_provider(_with_query(authorize, code_challenge="A" * 43))
    response = await back_to_shop(browser, callback)
    assert response.status_code == 400
    assert response.json()["type"].endswith("/google-code-refused")


async def test_an_unverified_google_email_is_refused(
    browsers: Callable[..., Browser], oidc_standin: ServedApp, engine: AsyncEngine
) -> None:
    browser = browsers()
    email = new_email("unverified")
    response = await google_sign_in(browser, oidc_standin, email, standin_email_verified="false")
    assert response.status_code == 400
    assert response.json()["type"].endswith("/google-email-not-verified")
    async with engine.connect() as connection:
        assert (
            await connection.scalar(
                text("SELECT count(*) FROM identity.users WHERE email = :e"), {"e": email}
            )
            == 0
        )


async def test_cancelling_at_the_provider(
    browsers: Callable[..., Browser], oidc_standin: ServedApp
) -> None:
    browser = browsers()
    authorize = await start(browser, oidc_standin, new_email("cancel"))
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    response = await browser.get(
        "/api/auth/google/callback",
        params={"error": "access_denied", "state": state},
        headers={"accept": "text/html"},
    )
    assert response.status_code == 303
    # The shopper lands back on the sign-in page with the reason and the page they came from.
    assert response.headers["location"] == "/sign-in?error=google-cancelled&next=%2Forders"
    # That sign-in is over: its state does not work again.
    assert browser.cookie("ember_oidc_state") is None


async def test_a_cancel_with_a_state_of_another_browser_tells_nothing(
    browsers: Callable[..., Browser], oidc_standin: ServedApp
) -> None:
    owner, other = browsers(), browsers()
    authorize = await start(owner, oidc_standin, new_email("cancel-other"), "/secret/path")
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    response = await other.get(
        "/api/auth/google/callback",
        params={"error": "access_denied", "state": state},
        headers={"accept": "text/html"},
    )
    assert response.headers["location"] == "/sign-in?error=google-cancelled"
    # ...and the owner's sign-in still works.
    finished = await back_to_shop(owner, await at_provider(authorize))
    assert finished.status_code == 303
    assert finished.headers["location"] == "/secret/path"


async def test_a_disabled_account_cannot_sign_in_with_google(
    browsers: Callable[..., Browser], oidc_standin: ServedApp, engine: AsyncEngine
) -> None:
    email = new_email("disabled")
    assert (await google_sign_in(browsers(), oidc_standin, email)).status_code == 303
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE identity.users SET disabled_at = now() WHERE email = :e"), {"e": email}
        )
    browser = browsers()
    response = await google_sign_in(browser, oidc_standin, email)
    assert response.status_code == 403
    assert browser.cookie("ember_session") is None


async def test_the_stand_in_page_flow(
    browsers: Callable[..., Browser], oidc_standin: ServedApp
) -> None:
    """What `make run` shows: the stand-in's page, where a person types an email and approves."""
    browser = browsers()
    authorize = await start(browser, oidc_standin, "")
    async with httpx.AsyncClient() as http:
        page = await http.get(authorize)
        assert page.status_code == 200
        assert "Sign in" in page.text
        assert "request_id" in page.text
        request_id = page.text.split("name='request_id' value='")[1].split("'")[0]
        email = new_email("page")
        decided = await http.post(
            f"{oidc_standin.url}/authorize/decision",
            data={
                "request_id": request_id,
                "email": email,
                "name": "Page User",
                "email_verified": "true",
                "action": "approve",
            },
        )
    assert decided.status_code == 302
    response = await back_to_shop(browser, decided.headers["location"])
    assert response.status_code == 303
    assert (await browser.get("/api/user/profile")).json()["email"] == email


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "/account"),
        ("/orders/123?x=1", "/orders/123?x=1"),
        ("//evil.example/steal", "/account"),
        ("https://evil.example/", "/account"),
        ("/\\evil.example", "/account"),
        ("/ok\r\nSet-Cookie: x=1", "/account"),
    ],
)
def test_next_stays_on_our_site(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected


async def test_login_with_an_unreachable_provider(
    make_app: Callable[..., Any], browsers: Callable[..., Browser]
) -> None:
    async with make_app(google_issuer="http://127.0.0.1:9") as app:
        browser = browsers(app=app)
        response = await browser.get("/api/auth/google/login")
        assert response.status_code == 503
        assert response.json()["type"].endswith("/google-provider-unavailable")
        page = await browser.get("/api/auth/google/login", headers={"accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == "/sign-in?error=google-provider-unavailable"
        kept = await browser.get(
            "/api/auth/google/login",
            params={"next": "/checkout"},
            headers={"accept": "text/html"},
        )
        assert kept.headers["location"] == (
            "/sign-in?error=google-provider-unavailable&next=%2Fcheckout"
        )
        # Only a path on this site is carried back.
        foreign = await browser.get(
            "/api/auth/google/login",
            params={"next": "//evil.example/"},
            headers={"accept": "text/html"},
        )
        assert foreign.headers["location"] == (
            "/sign-in?error=google-provider-unavailable&next=%2Faccount"
        )


async def test_registering_with_google_does_not_need_a_password(
    browsers: Callable[..., Browser], oidc_standin: ServedApp
) -> None:
    browser = browsers()
    email = new_email("nopass")
    await google_sign_in(browser, oidc_standin, email)
    change = await browser.put(
        "/api/user/change-password",
        {"current_password": "anything-at-all", "new_password": strong_password()},
    )
    assert change.status_code == 409
    assert change.json()["type"].endswith("/no-password")


async def test_google_sends_the_shopper_back_to_the_address_they_came_from(
    make_app: Callable[..., Any], oidc_standin: ServedApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shop opened on a LAN address comes back from Google on it (its cookies and cart are
    there), not on PUBLIC_URL; a Host that is none of the shop's addresses gets PUBLIC_URL."""
    monkeypatch.setenv("PUBLIC_URL", "http://shop.test")
    monkeypatch.setenv("PUBLIC_URL_ALIASES", "http://192.168.1.20:8080")
    async with make_app(google_redirect_uri="") as app:
        browser = Browser(app)
        try:
            for host, origin in (
                ("192.168.1.20:8080", "http://192.168.1.20:8080"),
                ("shop.test", "http://shop.test"),
                ("evil.example", "http://shop.test"),
            ):
                started = await browser.get(
                    "/api/auth/google/login", params={"next": "/orders"}, headers={"host": host}
                )
                assert started.status_code == 302, started.text
                query = parse_qs(urlsplit(started.headers["location"]).query)
                assert query["redirect_uri"] == [f"{origin}/api/auth/google/callback"], host
            # The round trip ends where it began: the provider sends the browser to the alias,
            # and the code is exchanged with that same redirect URI (else Google refuses it).
            started = await browser.get(
                "/api/auth/google/login",
                params={"next": "/orders", "login_hint": "lan@example.com"},
                headers={"host": "192.168.1.20:8080"},
            )
            callback = urlsplit(await at_provider(started.headers["location"]))
            assert f"{callback.scheme}://{callback.netloc}" == "http://192.168.1.20:8080"
            landed = await browser.get(
                f"{callback.path}?{callback.query}", headers={"host": "192.168.1.20:8080"}
            )
            assert landed.status_code == 303, landed.text
            assert landed.headers["location"] == "/orders"
        finally:
            await browser.aclose()
