"""Forgotten passwords: the event the notifier mails, and a token that is random, stored
hashed, single use, 30 minutes long, one live per user; a reset ends every session."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ember_shared.settings import AppSettings
from identity_helpers import (
    Account,
    Browser,
    audit_actions,
    new_email,
    opened_link,
    outbox_events,
    strong_password,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

RESET_EVENT = "password_reset.requested.v1"


async def request_reset(browsers: Callable[..., Browser], engine: AsyncEngine, email: str) -> str:
    """Asks for a reset and returns the raw token from the event the notifier would mail."""
    response = await browsers().post("/api/auth/forgot-password", {"email": email})
    assert response.status_code == 202
    events = [
        e for e in await outbox_events(engine, RESET_EVENT) if e["data"]["email"] == email.lower()
    ]
    assert events, "no reset event"
    url = opened_link(events[-1]["data"]["reset_url"])
    # The shop's address comes from PUBLIC_URL (other suites in the same run may set it).
    public_url = AppSettings(name="identity").public_url
    assert url.startswith(f"{public_url}/reset-password?token=")
    return parse_qs(urlsplit(url).query)["token"][0]


async def test_forgot_password_emits_the_event_and_stores_only_a_hash(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    _, account = signed_in
    token = await request_reset(browsers, engine, account.email.upper())
    assert len(token) >= 40
    event = [
        e for e in await outbox_events(engine, RESET_EVENT) if e["data"]["email"] == account.email
    ][-1]
    assert event["data"]["user_id"] == str(account.user_id)
    assert event["producer"] == "identity"
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT token_hash, expires_at - created_at AS ttl FROM identity.password_reset_tokens "
                    "WHERE user_id = :u"
                ),
                {"u": account.user_id},
            )
        ).one()
        raw_anywhere = await connection.scalar(
            text("SELECT count(*) FROM identity.password_reset_tokens WHERE token_hash = :t"),
            {"t": token},
        )
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert raw_anywhere == 0
    assert 29 * 60 <= row.ttl.total_seconds() <= 30 * 60 + 5
    assert "password.reset_requested" in [
        a["action"] for a in await audit_actions(engine, user_id=account.user_id)
    ]


async def test_unknown_address_gets_the_same_answer_and_no_event(
    browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    email = new_email()
    before = len(await outbox_events(engine, RESET_EVENT))
    response = await browsers().post("/api/auth/forgot-password", {"email": email})
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    assert len(await outbox_events(engine, RESET_EVENT)) == before


async def test_reset_sets_the_password_and_ends_every_session(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    browser, account = signed_in
    other_device = browsers()
    assert (await other_device.login(account.email, account.password)).status_code == 200
    token = await request_reset(browsers, engine, account.email)
    new_password = strong_password()
    response = await browsers().post(
        "/api/auth/reset-password", {"token": token, "password": new_password}
    )
    assert response.status_code == 200, response.text

    for device in (browser, other_device):
        assert (await device.get("/api/auth/me")).status_code == 401
        assert (await device.post("/api/auth/refresh")).status_code == 401
    assert (await browsers().login(account.email, account.password)).status_code == 401
    assert (await browsers().login(account.email, new_password)).status_code == 200
    assert await outbox_events(engine, "password.changed.v1")
    async with engine.connect() as connection:
        verified = await connection.scalar(
            text("SELECT email_verified FROM identity.users WHERE id = :u"), {"u": account.user_id}
        )
    assert verified is True  # following the emailed link proved the address
    assert "password.reset" in [
        a["action"] for a in await audit_actions(engine, user_id=account.user_id)
    ]


async def test_a_reset_token_works_once(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    _, account = signed_in
    token = await request_reset(browsers, engine, account.email)
    first = await browsers().post(
        "/api/auth/reset-password", {"token": token, "password": strong_password()}
    )
    assert first.status_code == 200
    second_password = strong_password()
    again = await browsers().post(
        "/api/auth/reset-password", {"token": token, "password": second_password}
    )
    assert again.status_code == 400
    assert again.json()["type"].endswith("/invalid-reset-token")
    assert (await browsers().login(account.email, second_password)).status_code == 401
    failures = await audit_actions(engine, action="password.reset_failed")
    assert any(f["detail"].get("reason") == "invalid-token" for f in failures)


async def test_racing_resets_with_one_token_let_one_win(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    _, account = signed_in
    token = await request_reset(browsers, engine, account.email)
    passwords = [strong_password() for _ in range(4)]
    responses = await asyncio.gather(
        *(
            browsers().post("/api/auth/reset-password", {"token": token, "password": p})
            for p in passwords
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 400, 400, 400]
    winner = passwords[[r.status_code for r in responses].index(200)]
    assert (await browsers().login(account.email, winner)).status_code == 200


async def test_an_expired_token_is_refused(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    _, account = signed_in
    token = await request_reset(browsers, engine, account.email)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE identity.password_reset_tokens SET expires_at = now() - interval '1 second' "
                "WHERE user_id = :u"
            ),
            {"u": account.user_id},
        )
    response = await browsers().post(
        "/api/auth/reset-password", {"token": token, "password": strong_password()}
    )
    assert response.status_code == 400
    assert (await browsers().login(account.email, account.password)).status_code == 200


async def test_a_new_request_replaces_the_live_token(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    _, account = signed_in
    first = await request_reset(browsers, engine, account.email)
    second = await request_reset(browsers, engine, account.email)
    assert first != second
    async with engine.connect() as connection:
        live = await connection.scalar(
            text("SELECT count(*) FROM identity.password_reset_tokens WHERE user_id = :u"),
            {"u": account.user_id},
        )
    assert live == 1
    old = await browsers().post(
        "/api/auth/reset-password", {"token": first, "password": strong_password()}
    )
    assert old.status_code == 400
    new = await browsers().post(
        "/api/auth/reset-password", {"token": second, "password": strong_password()}
    )
    assert new.status_code == 200


async def test_a_weak_new_password_does_not_use_up_the_token(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    _, account = signed_in
    token = await request_reset(browsers, engine, account.email)
    for weak in ("short", "password123", account.email):
        response = await browsers().post(
            "/api/auth/reset-password", {"token": token, "password": weak}
        )
        assert response.status_code == 422, weak
    good = await browsers().post(
        "/api/auth/reset-password", {"token": token, "password": strong_password()}
    )
    assert good.status_code == 200


async def test_bad_reset_bodies_are_refused(browsers: Callable[..., Browser]) -> None:
    cases: list[dict[str, Any]] = [
        {},
        {"token": "x"},
        {"token": "a" * 40},
        {"token": "has spaces and ! marks......", "password": strong_password()},
        {"token": "a" * 40, "password": strong_password(), "extra": 1},
    ]
    for body in cases:
        response = await browsers().post("/api/auth/reset-password", body)
        assert response.status_code == 400, body
        assert response.headers["content-type"].startswith("application/problem+json")
    unknown = await browsers().post(
        "/api/auth/reset-password", {"token": uuid.uuid4().hex * 2, "password": strong_password()}
    )
    assert unknown.status_code == 400
    assert unknown.json()["type"].endswith("/invalid-reset-token")


async def test_reset_requests_per_address_are_quietly_capped(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    _, account = signed_in

    async def mine() -> int:
        return len(
            [
                e
                for e in await outbox_events(engine, RESET_EVENT)
                if e["data"]["email"] == account.email
            ]
        )

    for _ in range(8):
        response = await browsers(ip=f"192.0.2.{_ + 10}").post(
            "/api/auth/forgot-password", {"email": account.email}
        )
        assert response.status_code == 202  # the same answer throughout
    assert await mine() == 5
