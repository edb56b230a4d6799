"""Signing up, signing in and out, refreshing, ``/api/auth/me``; cookies and their flags."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jwt
import pytest
from ember_shared.sealing import is_sealed
from identity.context import Identity
from identity_helpers import (
    Account,
    Browser,
    audit_actions,
    new_email,
    opened_link,
    outbox_events,
    sign_up_token,
    strong_password,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

PROBLEM = "application/problem+json"


def set_cookie_headers(response: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for header in response.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0]
        found[name] = header
    return found


async def test_register_signs_in_and_sets_cookies(
    browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    browser = browsers()
    email = new_email()
    response = await browser.register(email.upper(), strong_password(), name="  Ada Roaster ")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user"]["email"] == email  # stored lower-cased
    assert body["user"]["name"] == "Ada Roaster"
    assert body["user"]["roles"] == ["customer"]
    assert body["user"]["has_password"] is True
    assert body["token_type"] == "Bearer"
    assert body["csrf_token"] == browser.cookie("ember_csrf")
    cookies = set_cookie_headers(response)
    assert set(cookies) == {"ember_access", "ember_csrf", "ember_session"}
    for name in ("ember_access", "ember_session"):
        assert "HttpOnly" in cookies[name]
        assert "SameSite=lax" in cookies[name] or "SameSite=Lax" in cookies[name]
    assert "HttpOnly" not in cookies["ember_csrf"]
    # Local mode: plain HTTP, so no Secure flag (production sets it, see test below).
    assert "Secure" not in cookies["ember_session"]
    assert response.headers["cache-control"] == "no-store"

    me = await browser.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json()["user"]["email"] == email

    events = await outbox_events(engine, "user.registered.v1")
    assert any(e["data"]["email"] == email for e in events)


async def test_cookies_are_secure_outside_local_mode(
    identity: Identity, browsers: Callable[..., Browser]
) -> None:
    production = replace(identity.service.app, mode="production")
    identity.service = replace(identity.service, app=production)
    try:
        response = await browsers().register()
    finally:
        identity.service = replace(identity.service, app=replace(production, mode="local"))
    assert response.status_code == 201
    for name, header in set_cookie_headers(response).items():
        assert "Secure" in header, name


async def test_sign_up_makes_nothing_until_the_emailed_link_is_opened(
    browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    browser = browsers()
    email, password = new_email(), strong_password()
    asked = await browser.sign_up(email, password, name="Grace")
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "accepted"
    assert "set-cookie" not in asked.headers
    assert await user_count(engine, email) == 0
    # Not an account yet: signing in answers as for any unknown address.
    refused = await browsers().login(email, password)
    assert refused.status_code == 401
    assert refused.json()["type"].endswith("/invalid-credentials")

    (mailed,) = [
        e
        for e in await outbox_events(engine, "sign_up.requested.v1")
        if e["data"]["email"] == email
    ]
    # The requester's name is not mailed to an address they may not own (finding 13); the
    # account gets it once the link is opened.
    assert mailed["data"]["name"] == ""
    # The link rests sealed for the notifier: the event holds no live token in clear.
    assert is_sealed(mailed["data"]["verify_url"])
    assert "/verify-email?token=" in opened_link(mailed["data"]["verify_url"])
    async with engine.connect() as connection:
        stored = await connection.scalar(
            text("SELECT token_hash FROM identity.sign_ups WHERE email = :e"), {"e": email}
        )
    token = await sign_up_token(engine, email)
    assert stored is not None
    assert token not in str(stored)  # kept only as a digest

    opened = await browser.verify(token)
    assert opened.status_code == 201, opened.text
    assert opened.json()["user"]["email_verified"] is True
    assert opened.json()["user"]["name"] == "Grace"
    assert (await browser.get("/api/auth/me")).status_code == 200
    assert await user_count(engine, email) == 1
    assert (await browsers().login(email, password)).status_code == 200
    actions = [a["action"] for a in await audit_actions(engine, email=email)]
    assert {"sign_up.requested", "account.registered", "sign_in.succeeded"} <= set(actions)


async def test_sign_up_answers_the_same_whether_or_not_the_address_has_an_account(
    browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    email = new_email()
    assert (await browsers().register(email)).status_code == 201
    known = await browsers().sign_up(email.replace("shopper", "SHOPPER"), strong_password())
    unknown = await browsers().sign_up(new_email(), strong_password())
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    ignored = {"x-request-id", "x-correlation-id", "content-length"}
    assert set(known.headers.keys()) - ignored == set(unknown.headers.keys()) - ignored
    assert "set-cookie" not in known.headers
    assert await user_count(engine, email) == 1

    # Only the mailbox learns the difference: its owner is told to sign in or reset instead.
    (notice,) = [
        e
        for e in await outbox_events(engine, "sign_up.existing_account.v1")
        if e["data"]["email"] == email
    ]
    assert notice["data"]["sign_in_url"].endswith("/signin")
    assert notice["data"]["reset_url"].endswith("/forgot-password")
    # ...and no second link is mailed: the one of the first sign-up is all there is.
    links = [
        e
        for e in await outbox_events(engine, "sign_up.requested.v1")
        if e["data"]["email"] == email
    ]
    assert len(links) == 1


async def test_a_sign_up_link_works_once_and_not_after_it_expires(
    browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    email = new_email()
    assert (await browsers().sign_up(email)).status_code == 202
    token = await sign_up_token(engine, email)
    assert (await browsers().verify(token)).status_code == 201
    again = await browsers().verify(token)
    assert again.status_code == 400
    assert again.headers["content-type"].startswith(PROBLEM)
    assert again.json()["type"].endswith("/invalid-sign-up-link")

    late = new_email()
    assert (await browsers().sign_up(late)).status_code == 202
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE identity.sign_ups SET expires_at = now() - interval '1 minute'"
                " WHERE email = :e"
            ),
            {"e": late},
        )
    expired = await browsers().verify(await sign_up_token(engine, late))
    assert expired.status_code == 400
    assert await user_count(engine, late) == 0
    # Requests nobody can open any more are pruned as new ones come in.
    assert (await browsers().sign_up()).status_code == 202
    async with engine.connect() as connection:
        left = await connection.scalar(
            text("SELECT count(*) FROM identity.sign_ups WHERE email = :e"), {"e": late}
        )
    assert left == 0

    for bad in ({"token": "short"}, {"token": "x" * 40 + "!"}, {}, {"token": "a" * 40, "x": 1}):
        response = await browsers().post("/api/auth/verify-email", bad)
        assert response.status_code == 400, bad
        assert response.json()["type"].endswith("/validation")


async def test_a_later_sign_up_does_not_change_an_earlier_links_password(
    browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    """Someone who signs up with another person's address before them cannot choose the
    password of the account that person's link makes."""
    email, owners, strangers = new_email(), strong_password(), strong_password()
    assert (await browsers().sign_up(email, owners)).status_code == 202
    first = await sign_up_token(engine, email)
    assert (await browsers().sign_up(email, strangers)).status_code == 202
    assert await sign_up_token(engine, email) != first
    assert (await browsers().verify(first)).status_code == 201
    assert (await browsers().login(email, owners)).status_code == 200
    assert (await browsers().login(email, strangers)).status_code == 401


async def test_opening_two_links_of_one_address_at_once_makes_one_account(
    identity: Identity, browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    identity.settings = replace(identity.settings, sensitive_max_per_ip=1000)
    for _ in range(4):  # a race: several rounds, so a deadlock or a second account shows
        email = new_email()
        tokens = []
        for _ in range(3):
            assert (await browsers().sign_up(email)).status_code == 202
            tokens.append(await sign_up_token(engine, email))
        responses = await asyncio.gather(*(browsers().verify(t) for t in tokens))
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(201) == 1, statuses
        assert set(statuses) <= {201, 400, 409}, [r.text for r in responses]
        assert await user_count(engine, email) == 1
        # Whatever link is left can only say the account is made.
        for token in tokens:
            again = await browsers().verify(token)
            assert again.status_code in {400, 409}, again.text


async def user_count(engine: AsyncEngine, email: str) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM identity.users WHERE email = :e"), {"e": email}
        )
    return int(count or 0)


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"email": "not-an-email", "password": "Roast-abcdefgh12!"}, 400, "validation"),
        ({"email": "a@b", "password": "Roast-abcdefgh12!"}, 400, "validation"),
        ({"email": "ada@example.com"}, 400, "validation"),
        (
            {"email": "ada@example.com", "password": "Roast-abcdefgh12!", "role": "admin"},
            400,
            "validation",
        ),
        ({"email": "x" * 250 + "@example.com", "password": "Roast-abcdefgh12!"}, 400, "validation"),
        (
            {"email": "ada@example.com", "password": "Roast-abcdefgh12!", "name": "a\x00b"},
            400,
            "validation",
        ),
        ({"email": "short@example.com", "password": "short"}, 422, "weak-password"),
        ({"email": "long@example.com", "password": "L" * 129}, 422, "weak-password"),
        ({"email": "breach@example.com", "password": "password1234"}, 422, "weak-password"),
        ({"email": "breach@example.com", "password": "qwertyuiop"}, 422, "weak-password"),
        (
            {"email": "samename@example.com", "password": "samename@example.com"},
            422,
            "weak-password",
        ),
    ],
)
async def test_register_refuses_bad_input_and_changes_nothing(
    browsers: Callable[..., Browser],
    engine: AsyncEngine,
    body: dict[str, Any],
    status: int,
    kind: str,
) -> None:
    async with engine.connect() as connection:
        before = await connection.scalar(text("SELECT count(*) FROM identity.users"))
    browser = browsers()
    response = await browser.post("/api/auth/register", body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["type"].endswith("/" + kind)
    assert problem["status"] == status
    assert "Traceback" not in response.text
    assert browser.cookie("ember_session") is None
    async with engine.connect() as connection:
        after = await connection.scalar(text("SELECT count(*) FROM identity.users"))
    assert after == before


async def test_weak_password_names_the_reason(browsers: Callable[..., Browser]) -> None:
    response = await browsers().register(password="iloveyou123")
    assert response.status_code == 422
    assert response.json()["reason"] == "breached"
    response = await browsers().register(password="abc")
    assert response.json()["reason"] == "too-short"


async def test_pre_auth_routes_take_json_only(browsers: Callable[..., Browser]) -> None:
    """A cross-site form cannot send application/json: this is the login-CSRF defence."""
    browser = browsers()
    for path in ("/api/auth/register", "/api/auth/login", "/api/auth/forgot-password"):
        response = await browser.client.post(
            path,
            content="email=ada%40example.com&password=whatever-long",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 415, path
        assert response.headers["content-type"].startswith(PROBLEM)


async def test_login_then_logout_ends_the_session_everywhere(
    signed_in: tuple[Browser, Account],
    browsers: Callable[..., Browser],
    engine: AsyncEngine,
) -> None:
    _, account = signed_in
    browser = browsers()
    response = await browser.login(account.email.upper(), account.password)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    sid = claims["sid"]
    assert claims["sub"] == str(account.user_id)
    # The mailed link proved the address: other services may trust it (guest orders, ...).
    assert claims["email_verified"] is True

    # The token works as a bearer token too (API clients).
    me = await browsers().get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200

    out = await browser.post("/api/auth/logout")
    assert out.status_code == 200
    assert out.json() == {"status": "signed-out", "detail": ""}
    cleared = set_cookie_headers(out)
    assert {"ember_session", "ember_access", "ember_csrf"} <= set(cleared)
    assert all("Max-Age=0" in v or "max-age=0" in v.lower() for v in cleared.values())

    # The access token was not expired, but its session is over: refused at once.
    after = await browsers().get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert after.status_code == 401
    async with engine.connect() as connection:
        revoked = await connection.scalar(
            text("SELECT revoked_reason FROM identity.sessions WHERE id = :id"),
            {"id": uuid.UUID(sid)},
        )
    assert revoked == "sign-out"
    actions = [a["action"] for a in await audit_actions(engine, user_id=account.user_id)]
    assert "sign_in.succeeded" in actions
    assert "sign_out" in actions


async def test_signing_in_again_replaces_the_browsers_session(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    browser, account = signed_in
    first_token = account.access_token
    again = await browser.login(account.email, account.password)
    assert again.status_code == 200
    # The session the browser had is over; the new one works.
    stale = await browsers().get("/api/auth/me", headers={"Authorization": f"Bearer {first_token}"})
    assert stale.status_code == 401
    assert (await browser.get("/api/auth/me")).status_code == 200
    first_sid = jwt.decode(first_token, options={"verify_signature": False})["sid"]
    async with engine.connect() as connection:
        reason = await connection.scalar(
            text("SELECT revoked_reason FROM identity.sessions WHERE id = :id"),
            {"id": uuid.UUID(first_sid)},
        )
    assert reason == "replaced"


async def test_logout_needs_json_or_the_csrf_echo(signed_in: tuple[Browser, Account]) -> None:
    browser, _ = signed_in
    refused = await browser.client.post("/api/auth/logout")
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/csrf")
    me = await browser.get("/api/auth/me")
    assert me.status_code == 200


async def test_logout_with_only_a_bearer_token(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    _, account = signed_in
    api = browsers()
    headers = {"Authorization": f"Bearer {account.access_token}"}
    assert (await api.client.post("/api/auth/logout", headers=headers)).status_code == 200
    assert (await api.get("/api/auth/me", headers=headers)).status_code == 401


async def test_refresh_rotates_the_session_token(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    browser, account = signed_in
    first = browser.cookie("ember_session")
    response = await browser.post("/api/auth/refresh")
    assert response.status_code == 200, response.text
    second = browser.cookie("ember_session")
    assert second
    assert second != first
    new_token = response.json()["access_token"]
    assert (
        jwt.decode(new_token, options={"verify_signature": False})["sid"]
        == jwt.decode(account.access_token, options={"verify_signature": False})["sid"]
    )
    # The CSRF cookie stays what the page already read.
    assert response.json()["csrf_token"] == browser.cookie("ember_csrf")
    assert (await browser.get("/api/auth/me")).status_code == 200


async def test_a_replayed_refresh_token_ends_the_session(
    signed_in: tuple[Browser, Account],
    browsers: Callable[..., Browser],
    engine: AsyncEngine,
) -> None:
    browser, account = signed_in
    stolen = browser.cookie("ember_session")
    assert (await browser.post("/api/auth/refresh")).status_code == 200
    # Past the grace period that covers two tabs refreshing at once.
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE identity.sessions SET rotated_at = rotated_at - interval '1 hour' "
                "WHERE user_id = :u"
            ),
            {"u": account.user_id},
        )
    thief = browsers()
    thief.client.cookies.set("ember_session", stolen or "", domain="shop.test")
    replay = await thief.post("/api/auth/refresh", json={})
    assert replay.status_code == 401
    assert replay.json()["type"].endswith("/session-ended")
    # The rightful browser's session ended too: the token was copied, trust neither.
    assert (await browser.post("/api/auth/refresh")).status_code == 401
    assert (await browser.get("/api/auth/me")).status_code == 401
    actions = [a["action"] for a in await audit_actions(engine, user_id=account.user_id)]
    assert "session.refresh_reused" in actions


async def test_two_tabs_refreshing_at_once_stay_signed_in(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    browser, _ = signed_in
    old = browser.cookie("ember_session")
    assert (await browser.post("/api/auth/refresh")).status_code == 200
    other_tab = browsers()
    other_tab.client.cookies.set("ember_session", old or "", domain="shop.test")
    late = await other_tab.post("/api/auth/refresh", json={})
    assert late.status_code == 200
    assert other_tab.cookie("ember_session") == old  # not rotated again
    assert (await browser.post("/api/auth/refresh")).status_code == 200


async def test_refresh_without_a_session_is_refused(browsers: Callable[..., Browser]) -> None:
    browser = browsers()
    response = await browser.post("/api/auth/refresh", json={})
    assert response.status_code == 401
    browser.client.cookies.set("ember_session", "nonsense", domain="shop.test")
    response = await browser.post("/api/auth/refresh", json={})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_me_without_a_token(browsers: Callable[..., Browser]) -> None:
    response = await browsers().get("/api/auth/me")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_login_rehashes_when_argon2_parameters_change(
    make_app: Callable[..., Any], browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    email, password = new_email(), strong_password()
    assert (await browsers().register(email, password)).status_code == 201

    async def stored_hash() -> str:
        async with engine.connect() as connection:
            value = await connection.scalar(
                text("SELECT password_hash FROM identity.users WHERE email = :e"), {"e": email}
            )
        return str(value)

    before = await stored_hash()
    assert "m=19456,t=2,p=1" in before
    async with make_app(argon2_time_cost=3) as app:
        response = await browsers(app=app).login(email, password)
        assert response.status_code == 200
    after = await stored_hash()
    assert after != before
    assert "m=19456,t=3,p=1" in after
    # And the new hash still signs in, with the new parameters or the old.
    assert (await browsers().login(email, password)).status_code == 200


async def test_jwks_is_published_at_both_addresses(browsers: Callable[..., Browser]) -> None:
    browser = browsers()
    well_known = await browser.get("/.well-known/jwks.json")
    public = await browser.get("/api/auth/jwks.json")
    assert well_known.status_code == public.status_code == 200
    assert well_known.json() == public.json()
    (key,) = well_known.json()["keys"]
    assert key["kty"] == "OKP"
    assert key["crv"] == "Ed25519"
    assert key["alg"] == "EdDSA"
    assert "d" not in key  # never the private part
