"""Attacks fail: forged or stale tokens, the customer-vs-admin guard, CSRF, brute force
(rate limited before any Argon2 work), timing and wording that would reveal an account."""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jwt
import pytest
from ember_devkit.testing.tokens import KeyPair, TokenFactory
from ember_shared.auth import TokenVerifier
from ember_shared.csrf import session_csrf_token
from ember_shared.settings import AuthSettings
from identity.app import create_app
from identity.context import Identity
from identity.security.passwords import Passwords
from identity_helpers import Account, Browser, ServedApp, audit_actions, new_email, strong_password
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

PROBLEM = "application/problem+json"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def alg_none_token(user_id: uuid.UUID, roles: list[str]) -> str:
    now = int(time.time())
    claims = {
        "iss": "ember-identity",
        "aud": "ember",
        "sub": str(user_id),
        "roles": roles,
        "sid": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
    }
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


# --- tokens -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/auth/me", "/api/user/profile", "/api/admin/users"])
@pytest.mark.parametrize(
    "forgery", ["bad-signature", "wrong-audience", "wrong-issuer", "expired", "alg-none", "garbage"]
)
async def test_forged_and_stale_tokens_are_refused(
    tokens: TokenFactory,
    signed_in: tuple[Browser, Account],
    browsers: Callable[..., Browser],
    engine: AsyncEngine,
    forgery: str,
    path: str,
) -> None:
    from identity_helpers import make_admin

    _, account = signed_in
    await make_admin(engine, account.user_id)  # the forger even claims a real admin's id
    roles = ("customer", "admin")
    token = {
        "bad-signature": lambda: tokens.mint(
            account.user_id, roles=roles, key_pem=KeyPair.generate().private_pem
        ),
        "wrong-audience": lambda: tokens.mint(account.user_id, roles=roles, aud="another-shop"),
        "wrong-issuer": lambda: tokens.mint(account.user_id, roles=roles, iss="someone-else"),
        "expired": lambda: tokens.mint(account.user_id, roles=roles, expires_in=-120),
        "alg-none": lambda: alg_none_token(account.user_id, list(roles)),
        "garbage": lambda: "not.a.token",
    }[forgery]()
    response = await browsers().get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    if forgery == "expired":
        assert response.json()["type"].endswith("/token-expired")


async def test_a_customer_token_never_passes_the_admin_guard(
    tokens: TokenFactory, signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    browser, account = signed_in
    # Its own cookie session, and a bearer token, and one with a made-up role.
    assert (await browser.get("/api/admin/users")).status_code == 403
    customer, _ = tokens.customer()
    for token in (customer, account.access_token, tokens.mint(roles=("customer", "staff"))):
        response = await browsers().get("/api/admin/users", headers=tokens.bearer(token))
        assert response.status_code == 403
        assert response.json()["type"].endswith("/forbidden")
    admin, _ = tokens.admin()
    assert (
        await browsers().get("/api/admin/users", headers=tokens.bearer(admin))
    ).status_code == 200


async def test_other_services_verify_identity_tokens_through_jwks(
    oidc_standin: ServedApp,
    signed_in: tuple[Browser, Account],
    redis_client: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A service with only the JWKS address (no key in its settings) accepts identity's
    token, with no call to identity per request, and refuses it once the session ends."""
    from identity_helpers import settings_for

    monkeypatch.setenv("EVENTS_RELAY_LISTEN", "false")  # see the make_app fixture

    served = ServedApp(create_app(settings=settings_for(oidc_standin.url)))
    try:
        settings = AuthSettings(jwks_url=f"{served.url}/.well-known/jwks.json", public_key_pem="")
        verifier = TokenVerifier(settings, redis_client)
        browser, account = signed_in
        principal = await verifier.verify(account.access_token)
        assert principal.user_id == account.user_id
        assert principal.email == account.email
        assert principal.roles == frozenset({"customer"})
        fetched_at = verifier.keys.fetched_at
        await verifier.verify(account.access_token)
        assert verifier.keys.fetched_at == fetched_at  # cached: no second fetch

        assert (await browser.post("/api/auth/logout")).status_code == 200
        with pytest.raises(jwt.InvalidTokenError, match="revoked"):
            await verifier.verify(account.access_token)
    finally:
        served.stop()


# --- CSRF -------------------------------------------------------------------------------


async def test_cookie_authenticated_changes_need_the_csrf_echo(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    browser, account = signed_in
    missing = await browser.put("/api/user/profile", {"name": "Mallory"}, csrf=False)
    assert missing.status_code == 403
    assert missing.json()["type"].endswith("/csrf")
    wrong = await browser.put(
        "/api/user/profile", {"name": "Mallory"}, csrf=False, headers={"X-CSRF-Token": "guess"}
    )
    assert wrong.status_code == 403
    address = {
        "name": "A",
        "line1": "1 Road",
        "city": "Town",
        "postal_code": "12345",
        "country": "US",
    }
    assert (await browser.post("/api/user/addresses", address, csrf=False)).status_code == 403
    assert (
        await browser.request(
            "PUT",
            "/api/user/change-password",
            json={"current_password": account.password, "new_password": strong_password()},
            csrf=False,
        )
    ).status_code == 403
    profile = await browser.get("/api/user/profile")
    assert profile.json()["name"] == "Ada Roaster"  # nothing changed

    ok = await browser.put("/api/user/profile", {"name": "Ada"})
    assert ok.status_code == 200
    assert ok.json()["name"] == "Ada"
    # A bearer token is not sent by the browser on its own: no CSRF echo needed.
    api = browsers()
    bearer = {"Authorization": f"Bearer {account.access_token}"}
    assert (
        await api.put("/api/user/profile", {"name": "Ada L"}, headers=bearer)
    ).status_code == 200


async def test_a_planted_csrf_pair_is_not_the_sessions_and_is_refused(
    signed_in: tuple[Browser, Account],
) -> None:
    """Someone who can set cookies for the shop (a sibling subdomain, a plain-HTTP hop) plants
    ``ember_csrf`` and sends the same value as the header: it names no session, so nothing
    changes (profile, sign out, refresh). The token identity hands out is the session's own."""
    browser, account = signed_in
    sid = jwt.decode(account.access_token, options={"verify_signature": False})["sid"]
    issued = browser.cookie("ember_csrf")
    assert issued == session_csrf_token(AuthSettings().csrf_key, sid)
    session_before = browser.cookie("ember_session")
    browser.client.cookies.set("ember_csrf", "planted-by-mallory", domain="shop.test")
    for method, path, body in (
        ("PUT", "/api/user/profile", {"name": "Mallory"}),
        ("POST", "/api/auth/logout", None),
        ("POST", "/api/auth/refresh", None),
    ):
        forged = await browser.request(method, path, json=body)  # echoes the planted cookie
        assert forged.status_code == 403, (path, forged.text)
        assert forged.json()["type"].endswith("/csrf")
    assert browser.cookie("ember_session") == session_before  # not rotated, not cleared
    profile = await browser.get("/api/user/profile")
    assert profile.status_code == 200
    assert profile.json()["name"] == "Ada Roaster"
    # The session's own token still works for each (refresh last: it keeps the same token).
    browser.client.cookies.set("ember_csrf", issued, domain="shop.test")
    assert (await browser.put("/api/user/profile", {"name": "Ada"})).status_code == 200
    refreshed = await browser.post("/api/auth/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["csrf_token"] == issued
    assert (await browser.post("/api/auth/logout")).status_code == 200


# --- brute force ------------------------------------------------------------------------


class SpyPasswords(Passwords):
    """Counts verifications and can be told that any verification is a test failure."""

    def __init__(self, inner: Passwords) -> None:
        self.__dict__.update(inner.__dict__)
        self.calls = 0
        self.forbidden = False

    async def verify(self, password_hash: str, password: str) -> bool:
        if self.forbidden:
            raise AssertionError("Argon2 verify ran for a rate-limited request")
        self.calls += 1
        return await super().verify(password_hash, password)


async def test_guesses_per_account_and_client_stop_before_argon2_but_not_the_owner(
    identity: Identity,
    signed_in: tuple[Browser, Account],
    browsers: Callable[..., Browser],
    engine: AsyncEngine,
) -> None:
    _, account = signed_in
    identity.settings = replace(identity.settings, login_max_per_account=3, login_max_per_ip=100)
    before = identity.passwords.verifications
    spy = SpyPasswords(identity.passwords)
    identity.passwords = spy
    attacker = browsers(ip="203.0.113.7")
    for _ in range(3):
        response = await attacker.login(account.email, "wrong-password-123")
        assert response.status_code == 401
    assert spy.calls == 3

    spy.forbidden = True
    for password in ("wrong-password-123", account.password):
        # The guesser's own (account, address) counter is full, even for the right password.
        limited = await attacker.login(account.email, password)
        assert limited.status_code == 429
        assert limited.headers["content-type"].startswith(PROBLEM)
        assert 0 < int(limited.headers["retry-after"]) <= identity.settings.login_window_seconds
        assert limited.json()["type"].endswith("/rate-limited")
    assert spy.calls == 3  # no hash was computed for the limited requests
    assert spy.verifications - before == 3  # the service's own counter agrees

    # The owner, from their own address, is not locked out by someone else's guesses.
    spy.forbidden = False
    owner = await browsers(ip="198.51.100.9").login(account.email, account.password)
    assert owner.status_code == 200, owner.text

    actions = [a["action"] for a in await audit_actions(engine, email=account.email)]
    assert actions.count("sign_in.failed") >= 3
    assert "sign_in.rate_limited" in actions


async def test_guessing_from_many_addresses_only_slows_the_account_down(
    identity: Identity, signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    """Eleven wrong passwords from a mix of addresses used to lock the account for 15 minutes
    even against the right password; now they cost the owner a wait of seconds at most."""
    _, account = signed_in
    cap = 2
    identity.settings = replace(
        identity.settings, login_max_per_account=3, login_max_per_ip=100, login_delay_cap_s=cap
    )
    answers = [
        (await browsers(ip=f"203.0.113.{10 + i}").login(account.email, "wrong-guess-1")).status_code
        for i in range(11)
    ]
    assert answers[:3] == [401, 401, 401]
    # Past the free failures every further guess must wait: most of the burst is refused.
    assert answers.count(429) >= 7
    owner = browsers(ip="198.51.100.20")
    first = await owner.login(account.email, account.password)
    if first.status_code == 429:
        wait = int(first.headers["retry-after"])
        assert wait <= cap
        await asyncio.sleep(wait)  # the refusal's own Retry-After, then the owner gets in
        first = await owner.login(account.email, account.password)
    assert first.status_code == 200, first.text


async def test_a_password_reset_clears_the_failures(
    identity: Identity,
    signed_in: tuple[Browser, Account],
    browsers: Callable[..., Browser],
    engine: AsyncEngine,
) -> None:
    from test_identity_reset import request_reset

    _, account = signed_in
    identity.settings = replace(identity.settings, login_max_per_account=3, login_max_per_ip=100)
    browser = browsers(ip="198.51.100.30")
    for _ in range(3):
        assert (await browser.login(account.email, "forgot-it-again")).status_code == 401
    assert (await browser.login(account.email, account.password)).status_code == 429
    token = await request_reset(browsers, engine, account.email)
    new_password = strong_password()
    done = await browser.post(
        "/api/auth/reset-password", {"token": token, "password": new_password}
    )
    assert done.status_code == 200, done.text
    assert (await browser.login(account.email, new_password)).status_code == 200


async def test_successes_do_not_count_against_a_shared_address(
    identity: Identity, signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    """An office behind one address: its shoppers' sign-ins never use up its failures."""
    _, account = signed_in
    identity.settings = replace(identity.settings, login_max_per_ip=3, login_max_per_account=100)
    office = "198.51.100.40"
    for _ in range(6):
        assert (await browsers(ip=office).login(account.email, account.password)).status_code == 200
    for _ in range(3):
        assert (await browsers(ip=office).login(new_email(), "guess-guess-1")).status_code == 401
    assert (await browsers(ip=office).login(new_email(), "guess-guess-1")).status_code == 429


async def test_rate_limit_per_address(identity: Identity, browsers: Callable[..., Browser]) -> None:
    identity.settings = replace(identity.settings, login_max_per_ip=4, login_max_per_account=100)
    spy = SpyPasswords(identity.passwords)
    identity.passwords = spy
    attacker = browsers(ip="203.0.113.50")
    for _ in range(4):
        assert (await attacker.login(new_email(), "guess-guess-guess")).status_code == 401
    spy.forbidden = True
    limited = await attacker.login(new_email(), "guess-guess-guess")
    assert limited.status_code == 429
    assert "retry-after" in limited.headers
    # Another address is not affected.
    spy.forbidden = False
    assert (
        await browsers(ip="203.0.113.51").login(new_email(), "guess-guess-guess")
    ).status_code == 401


async def test_a_successful_sign_in_clears_the_account_counter(
    identity: Identity, signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    _, account = signed_in
    identity.settings = replace(identity.settings, login_max_per_account=3)
    browser = browsers()
    assert (await browser.login(account.email, "not-it-at-all")).status_code == 401
    assert (await browser.login(account.email, "not-it-at-all")).status_code == 401
    assert (await browser.login(account.email, account.password)).status_code == 200
    for _ in range(3):
        assert (await browser.login(account.email, "not-it-at-all")).status_code == 401


# --- what answers reveal ----------------------------------------------------------------


def _public(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k not in {"request_id"}}


async def test_unknown_email_and_wrong_password_look_the_same(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    _, account = signed_in
    wrong = await browsers().login(account.email, "definitely-not-it")
    unknown = await browsers().login(new_email(), "definitely-not-it")
    assert wrong.status_code == unknown.status_code == 401
    assert _public(wrong.json()) == _public(unknown.json())
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")


async def test_unknown_email_takes_as_long_as_a_wrong_password(
    identity: Identity, signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    _, account = signed_in
    identity.settings = replace(
        identity.settings, login_max_per_account=1000, login_max_per_ip=1000
    )
    browser = browsers()
    # Warm both paths (the dummy hash is made on first use).
    await browser.login(new_email(), "warm-up-password")
    await browser.login(account.email, "warm-up-password")

    unknown: list[float] = []
    wrong: list[float] = []
    for _ in range(9):
        start = time.perf_counter()
        assert (await browser.login(new_email(), "timing-probe-1")).status_code == 401
        unknown.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert (await browser.login(account.email, "timing-probe-1")).status_code == 401
        wrong.append(time.perf_counter() - start)

    hash_time = []
    stored = await identity.passwords.hash("x" * 12)
    for _ in range(5):
        start = time.perf_counter()
        await identity.passwords.verify(stored, "timing-probe-1")
        hash_time.append(time.perf_counter() - start)

    m_unknown, m_wrong, m_hash = (statistics.median(v) for v in (unknown, wrong, hash_time))
    # Both answers include one Argon2 verify: the difference is far below its cost.
    assert m_unknown >= 0.7 * m_hash, (m_unknown, m_hash)
    assert abs(m_unknown - m_wrong) <= max(0.35 * m_wrong, 0.010), (m_unknown, m_wrong)


async def test_forgot_password_answers_the_same_for_any_address(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    _, account = signed_in
    known = await browsers().post("/api/auth/forgot-password", {"email": account.email})
    unknown = await browsers().post("/api/auth/forgot-password", {"email": new_email()})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert set(known.headers.keys()) - {"x-request-id", "x-correlation-id"} == set(
        unknown.headers.keys()
    ) - {"x-request-id", "x-correlation-id"}


async def test_sign_up_takes_as_long_for_a_known_address_as_for_a_new_one(
    identity: Identity, browsers: Callable[..., Browser]
) -> None:
    identity.settings = replace(identity.settings, sensitive_max_per_ip=1000)
    warm, known = new_email(), new_email()
    for address in (warm, known):
        assert (await browsers().register(address)).status_code == 201
    browser = browsers()
    await browser.sign_up(warm)
    await browser.sign_up(new_email())

    fresh: list[float] = []
    taken: list[float] = []
    for _ in range(5):  # the quiet per-address cap is 5 mails per window
        start = time.perf_counter()
        assert (await browser.sign_up(new_email())).status_code == 202
        fresh.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert (await browser.sign_up(known)).status_code == 202
        taken.append(time.perf_counter() - start)

    hash_time = []
    for _ in range(3):
        start = time.perf_counter()
        await identity.passwords.hash("timing-probe-password")
        hash_time.append(time.perf_counter() - start)
    m_fresh, m_taken, m_hash = (statistics.median(v) for v in (fresh, taken, hash_time))
    # Both answers include one Argon2 hash: the difference is far below its cost.
    assert m_taken >= 0.7 * m_hash, (m_taken, m_hash)
    assert abs(m_fresh - m_taken) <= max(0.35 * m_fresh, 0.010), (m_fresh, m_taken)


async def test_sign_in_of_a_disabled_account_says_so_only_with_the_right_password(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    from sqlalchemy import text

    _, account = signed_in
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE identity.users SET disabled_at = now() WHERE id = :id"),
            {"id": account.user_id},
        )
    wrong = await browsers().login(account.email, "not-the-password")
    assert wrong.status_code == 401
    right = await browsers().login(account.email, account.password)
    assert right.status_code == 403
    assert right.json()["type"].endswith("/account-disabled")
    assert "ember_session" not in right.headers.get("set-cookie", "")
