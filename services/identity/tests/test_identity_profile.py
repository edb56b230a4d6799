"""The signed-in customer's own account: profile, password change, sessions, addresses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
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

PROBLEM = "application/problem+json"


def address(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Ada Roaster",
        "phone": "+1 (555) 010-2030",
        "line1": "12 Bean Street",
        "line2": "Unit 4",
        "city": "Portland",
        "state": "OR",
        "postal_code": "97201",
        "country": "us",
    }
    body.update(changes)
    return body


# --- profile ----------------------------------------------------------------------------


async def test_profile_read_and_update(
    signed_in: tuple[Browser, Account], engine: AsyncEngine
) -> None:
    browser, account = signed_in
    profile = await browser.get("/api/user/profile")
    assert profile.status_code == 200
    body = profile.json()
    assert body["email"] == account.email
    assert body["linked_providers"] == []
    assert "password_hash" not in body

    updated = await browser.put(
        "/api/user/profile", {"name": " Ada L. ", "phone": "+44 20 7946 0000"}
    )
    assert updated.status_code == 200
    assert updated.json()["name"] == "Ada L."
    assert updated.json()["phone"] == "+44 20 7946 0000"
    # Fields left out are kept.
    kept = await browser.put("/api/user/profile", {})
    assert kept.json()["name"] == "Ada L."
    assert "profile.updated" in [
        a["action"] for a in await audit_actions(engine, user_id=account.user_id)
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"email": "new@example.com"},
        {"name": "x" * 121},
        {"phone": "call me maybe"},
        {"name": "line\nbreak"},
        {"role": "admin"},
        [],
    ],
)
async def test_profile_refuses_bad_input(signed_in: tuple[Browser, Account], body: Any) -> None:
    browser, _ = signed_in
    response = await browser.put("/api/user/profile", body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM)
    assert (await browser.get("/api/user/profile")).json()["name"] == "Ada Roaster"


async def test_profile_needs_a_signed_in_user(browsers: Callable[..., Browser]) -> None:
    for method, path in (
        ("GET", "/api/user/profile"),
        ("PUT", "/api/user/profile"),
        ("GET", "/api/user/addresses"),
    ):
        response = await browsers().request(method, path, json={})
        assert response.status_code == 401
        assert response.headers["content-type"].startswith(PROBLEM)


# --- password change --------------------------------------------------------------------


async def test_change_password_needs_the_current_one_and_ends_other_sessions(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser], engine: AsyncEngine
) -> None:
    browser, account = signed_in
    phone = browsers()
    login = await phone.login(account.email, account.password)
    phone_token = login.json()["access_token"]
    new_password = strong_password()

    wrong = await browser.put(
        "/api/user/change-password",
        {"current_password": "not-the-one", "new_password": new_password},
    )
    assert wrong.status_code == 403
    assert wrong.json()["type"].endswith("/wrong-password")
    weak = await browser.put(
        "/api/user/change-password",
        {"current_password": account.password, "new_password": "password123"},
    )
    assert weak.status_code == 422
    same = await browser.put(
        "/api/user/change-password",
        {"current_password": account.password, "new_password": account.password},
    )
    assert same.status_code == 422
    assert (await phone.get("/api/auth/me")).status_code == 200  # nothing happened yet

    changed = await browser.put(
        "/api/user/change-password",
        {"current_password": account.password, "new_password": new_password},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() == {"status": "changed", "other_sessions_ended": 1}
    # This browser stays signed in; the phone's session is over, its token refused at once.
    assert (await browser.get("/api/auth/me")).status_code == 200
    assert (await browser.post("/api/auth/refresh")).status_code == 200
    assert (
        await browsers().get("/api/auth/me", headers={"Authorization": f"Bearer {phone_token}"})
    ).status_code == 401
    assert (await phone.post("/api/auth/refresh")).status_code == 401
    assert (await browsers().login(account.email, account.password)).status_code == 401
    assert (await browsers().login(account.email, new_password)).status_code == 200
    assert any(
        e["data"]["user_id"] == str(account.user_id)
        for e in await outbox_events(engine, "password.changed.v1")
    )
    actions = [a["action"] for a in await audit_actions(engine, user_id=account.user_id)]
    assert "password.changed" in actions
    assert "password.change_failed" in actions


async def test_sessions_list_and_sign_out_elsewhere(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    browser, account = signed_in
    laptop = browsers()
    await laptop.login(account.email, account.password)
    listed = (await browser.get("/api/user/sessions")).json()["items"]
    assert len(listed) == 2
    current = [s for s in listed if s["current"]]
    other = [s for s in listed if not s["current"]]
    assert len(current) == len(other) == 1
    assert (await browser.delete(f"/api/user/sessions/{other[0]['id']}")).status_code == 204
    assert (await laptop.get("/api/auth/me")).status_code == 401
    assert (await browser.get("/api/auth/me")).status_code == 200
    # Someone else's session id is simply not found.
    stranger, _ = browsers(), None
    await stranger.register()
    theirs = (await stranger.get("/api/user/sessions")).json()["items"][0]["id"]
    assert (await browser.delete(f"/api/user/sessions/{theirs}")).status_code == 404
    assert (await stranger.get("/api/auth/me")).status_code == 200


# --- addresses --------------------------------------------------------------------------


async def test_address_crud_and_the_single_default(signed_in: tuple[Browser, Account]) -> None:
    browser, _ = signed_in
    first = await browser.post("/api/user/addresses", address())
    assert first.status_code == 201, first.text
    home = first.json()
    assert home["is_default"] is True  # the first address is the default
    assert home["country"] == "US"
    work = (await browser.post("/api/user/addresses", address(line1="1 Office Park"))).json()
    assert work["is_default"] is False

    moved = await browser.put(
        f"/api/user/addresses/{work['id']}", address(line1="1 Office Park", is_default=True)
    )
    assert moved.status_code == 200
    assert moved.json()["is_default"] is True
    items = (await browser.get("/api/user/addresses")).json()["items"]
    assert [a["id"] for a in items if a["is_default"]] == [work["id"]]
    assert items[0]["id"] == work["id"]  # the default comes first

    unset = await browser.put(f"/api/user/addresses/{work['id']}", address(is_default=False))
    assert unset.status_code == 409

    edited = await browser.put(f"/api/user/addresses/{home['id']}", address(city="Salem"))
    assert edited.json()["city"] == "Salem"
    assert edited.json()["is_default"] is False
    assert (await browser.get(f"/api/user/addresses/{home['id']}")).json()["city"] == "Salem"

    # Deleting the default hands the role to another address.
    assert (await browser.delete(f"/api/user/addresses/{work['id']}")).status_code == 204
    remaining = (await browser.get("/api/user/addresses")).json()["items"]
    assert [(a["id"], a["is_default"]) for a in remaining] == [(home["id"], True)]
    assert (await browser.get(f"/api/user/addresses/{work['id']}")).status_code == 404


async def test_a_customer_reaches_only_their_own_addresses(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    browser, _ = signed_in
    mine = (await browser.post("/api/user/addresses", address())).json()
    other = browsers()
    await other.register()
    assert (await other.get("/api/user/addresses")).json()["items"] == []
    assert (await other.get(f"/api/user/addresses/{mine['id']}")).status_code == 404
    assert (
        await other.put(f"/api/user/addresses/{mine['id']}", address(city="Stolen"))
    ).status_code == 404
    assert (await other.delete(f"/api/user/addresses/{mine['id']}")).status_code == 404
    assert (await browser.get(f"/api/user/addresses/{mine['id']}")).json()["city"] == "Portland"


@pytest.mark.parametrize(
    "body",
    [
        address(country="XX"),
        address(country="USA"),
        address(country="1A"),
        address(name=""),
        address(name="   "),
        address(line1="a\x00b"),
        address(postal_code=""),
        address(postal_code="!!!"),
        address(city="c" * 101),
        address(phone="not a phone"),
        address(extra="field"),
        {k: v for k, v in address().items() if k != "city"},
    ],
)
async def test_bad_addresses_are_refused_and_change_nothing(
    signed_in: tuple[Browser, Account], body: dict[str, Any]
) -> None:
    browser, _ = signed_in
    response = await browser.post("/api/user/addresses", body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert (await browser.get("/api/user/addresses")).json()["items"] == []


async def test_concurrent_default_changes_leave_exactly_one(
    signed_in: tuple[Browser, Account], engine: AsyncEngine
) -> None:
    browser, account = signed_in
    ids = []
    for i in range(4):
        ids.append(
            (await browser.post("/api/user/addresses", address(line1=f"{i} Street"))).json()["id"]
        )
    responses = await asyncio.gather(
        *(browser.put(f"/api/user/addresses/{i}", address(is_default=True)) for i in ids),
        *(
            browser.post("/api/user/addresses", address(line1="New", is_default=True))
            for _ in range(2)
        ),
    )
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    async with engine.connect() as connection:
        defaults = await connection.scalar(
            text("SELECT count(*) FROM identity.addresses WHERE user_id = :u AND is_default"),
            {"u": account.user_id},
        )
    assert defaults == 1


async def test_address_book_is_bounded(signed_in: tuple[Browser, Account]) -> None:
    browser, _ = signed_in
    for i in range(20):
        assert (
            await browser.post("/api/user/addresses", address(line1=f"{i} Road"))
        ).status_code == 201
    over = await browser.post("/api/user/addresses", address())
    assert over.status_code == 409
    assert over.json()["type"].endswith("/too-many-addresses")


async def test_unknown_address_ids(signed_in: tuple[Browser, Account]) -> None:
    browser, _ = signed_in
    assert (await browser.get(f"/api/user/addresses/{uuid.uuid4()}")).status_code == 404
    assert (await browser.get("/api/user/addresses/not-a-uuid")).status_code in (400, 404)


# --- a first password for a Google account ----------------------------------------------


async def _google_account(browser: Browser, standin: ServedApp, email: str) -> str:
    """Signs ``browser`` in with Google through the OIDC stand-in; the new account's id."""
    started = await browser.get(
        "/api/auth/google/login", params={"next": "/account", "login_hint": email}
    )
    assert started.status_code == 302, started.text
    parts = urlsplit(started.headers["location"])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"standin_approve": "1"}
    async with httpx.AsyncClient() as http:
        approved = await http.get(urlunsplit(parts._replace(query=urlencode(query))))
    assert approved.status_code == 302, approved.text
    back = urlsplit(approved.headers["location"])
    signed_in = await browser.get(f"{back.path}?{back.query}")
    assert signed_in.status_code == 303, signed_in.text
    return str((await browser.get("/api/user/profile")).json()["id"])


async def test_an_account_made_through_google_sets_a_first_password(
    browsers: Callable[..., Browser], oidc_standin: ServedApp, engine: AsyncEngine
) -> None:
    browser = browsers()
    email = new_email("google-pw")
    user_id = await _google_account(browser, oidc_standin, email)
    assert (await browser.get("/api/user/profile")).json()["has_password"] is False
    password = strong_password()

    weak = await browser.put("/api/user/set-password", {"new_password": "password123"})
    assert weak.status_code == 422
    assert weak.headers["content-type"].startswith(PROBLEM)
    unknown = await browser.put("/api/user/set-password", {"new_password": password, "x": 1})
    assert unknown.status_code == 400
    assert unknown.headers["content-type"].startswith(PROBLEM)
    assert (
        await browsers().put("/api/user/set-password", {"new_password": password})
    ).status_code == 401

    # A sign-in of long ago (a borrowed laptop) cannot add a password without a fresh one.
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE identity.sessions SET created_at = now() - interval '20 minutes' "
                "WHERE user_id = :u"
            ),
            {"u": uuid.UUID(user_id)},
        )
    stale = await browser.put("/api/user/set-password", {"new_password": password})
    assert stale.status_code == 403
    assert stale.json()["type"].endswith("/recent-sign-in-required")
    assert (await browsers().login(email, password)).status_code == 401

    await _google_account(browser, oidc_standin, email)  # signs in again: a fresh session
    done = await browser.put("/api/user/set-password", {"new_password": password})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "set"
    assert (await browser.get("/api/user/profile")).json()["has_password"] is True
    assert (await browsers().login(email, password)).status_code == 200
    again = await browser.put("/api/user/set-password", {"new_password": strong_password()})
    assert again.status_code == 409
    assert again.json()["type"].endswith("/has-password")
    assert (await browsers().login(email, password)).status_code == 200
    actions = [a["action"] for a in await audit_actions(engine, user_id=uuid.UUID(user_id))]
    assert "password.set" in actions
    assert any(
        e["data"]["user_id"] == user_id for e in await outbox_events(engine, "password.changed.v1")
    )


async def test_an_account_with_a_password_cannot_set_another_one_without_the_current(
    signed_in: tuple[Browser, Account],
) -> None:
    browser, account = signed_in
    refused = await browser.put("/api/user/set-password", {"new_password": strong_password()})
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/has-password")
    assert (await browser.login(account.email, account.password)).status_code == 200
