"""Admin-only account management: list and search, disable (ending every session), enable,
role changes; and the audit log that records them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from identity_helpers import Account, Browser, audit_actions, make_admin, new_email, strong_password
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture
async def admin(browsers: Callable[..., Browser], engine: AsyncEngine) -> tuple[Browser, Account]:
    """A browser signed in as a real admin account (signed in after the promotion)."""
    email, password = new_email("admin"), strong_password()
    registered = await browsers().register(email, password)
    user_id = registered.json()["user"]["id"]
    import uuid

    await make_admin(engine, uuid.UUID(user_id))
    browser = browsers()
    response = await browser.login(email, password)
    assert response.json()["user"]["roles"] == ["customer", "admin"]
    return browser, Account(email, password, uuid.UUID(user_id), response.json()["access_token"])


async def test_list_search_and_paginate(
    admin: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    browser, _ = admin
    tag = new_email("findme").split("@")[0]
    for i in range(3):
        await browsers().register(f"{tag}.{i}@example.com", strong_password(), name=f"Find Me {i}")
    found = await browser.get("/api/admin/users", params={"q": tag.upper(), "page_size": 2})
    assert found.status_code == 200
    body = found.json()
    assert body["total"] == 3
    assert len(body["items"]) == 2
    assert body["items"][0]["email"] == f"{tag}.2@example.com"  # newest first
    assert "password_hash" not in body["items"][0]
    page2 = (
        await browser.get("/api/admin/users", params={"q": tag, "page_size": 2, "page": 2})
    ).json()
    assert [u["email"] for u in page2["items"]] == [f"{tag}.0@example.com"]
    # LIKE wildcards in the query are taken literally.
    assert (await browser.get("/api/admin/users", params={"q": "%"})).json()["total"] == 0


@pytest.mark.parametrize(
    "params", [{"page": 0}, {"page_size": 101}, {"page_size": 0}, {"q": "x" * 255}, {"page": "one"}]
)
async def test_list_refuses_unbounded_pages(
    admin: tuple[Browser, Account], params: dict[str, Any]
) -> None:
    browser, _ = admin
    response = await browser.get("/api/admin/users", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_admin_routes_refuse_customers_and_strangers(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    customer, account = signed_in
    for method, path in (
        ("GET", "/api/admin/users"),
        ("GET", f"/api/admin/users/{account.user_id}"),
        ("POST", f"/api/admin/users/{account.user_id}/disable"),
        ("POST", f"/api/admin/users/{account.user_id}/enable"),
        ("PUT", f"/api/admin/users/{account.user_id}/role"),
        ("GET", "/api/admin/users/audit"),
    ):
        body = {"role": "admin"} if path.endswith("/role") else None
        assert (await customer.request(method, path, json=body)).status_code == 403, path
        assert (await browsers().request(method, path, json=body)).status_code == 401, path
    assert (await customer.get("/api/user/profile")).json()["roles"] == ["customer"]


async def test_disable_ends_every_session_and_blocks_sign_in(
    admin: tuple[Browser, Account],
    signed_in: tuple[Browser, Account],
    browsers: Callable[..., Browser],
    engine: AsyncEngine,
) -> None:
    staff, admin_account = admin
    victim_browser, victim = signed_in
    disabled = await staff.post(f"/api/admin/users/{victim.user_id}/disable")
    assert disabled.status_code == 200
    assert disabled.json()["disabled"] is True
    # The access token still has minutes to live, yet it is refused now.
    assert (await victim_browser.get("/api/auth/me")).status_code == 401
    bearer = {"Authorization": f"Bearer {victim.access_token}"}
    assert (await browsers().get("/api/user/profile", headers=bearer)).status_code == 401
    assert (await victim_browser.post("/api/auth/refresh")).status_code == 401
    assert (await browsers().login(victim.email, victim.password)).status_code == 403
    assert (
        await browsers().post("/api/auth/forgot-password", {"email": victim.email})
    ).status_code == 202

    enabled = await staff.post(f"/api/admin/users/{victim.user_id}/enable")
    assert enabled.json()["disabled"] is False
    assert (await browsers().login(victim.email, victim.password)).status_code == 200

    log = await audit_actions(engine, user_id=victim.user_id)
    disabled_entry = next(e for e in log if e["action"] == "account.disabled")
    assert disabled_entry["actor_id"] == admin_account.user_id
    assert disabled_entry["detail"]["sessions_ended"] >= 1
    assert "account.enabled" in [e["action"] for e in log]


async def test_role_changes(
    admin: tuple[Browser, Account],
    signed_in: tuple[Browser, Account],
    browsers: Callable[..., Browser],
    engine: AsyncEngine,
) -> None:
    staff, admin_account = admin
    _, account = signed_in
    promoted = await staff.put(f"/api/admin/users/{account.user_id}/role", {"role": "admin"})
    assert promoted.status_code == 200
    assert promoted.json()["roles"] == ["customer", "admin"]
    new_admin = browsers()
    login = await new_admin.login(account.email, account.password)
    assert login.json()["user"]["roles"] == ["customer", "admin"]
    assert (await new_admin.get("/api/admin/users")).status_code == 200

    demoted = await staff.put(f"/api/admin/users/{account.user_id}/role", {"role": "customer"})
    assert demoted.json()["roles"] == ["customer"]
    # Its admin token stops at once: taking the role away ended the sessions.
    assert (await new_admin.get("/api/admin/users")).status_code == 401
    again = browsers()
    await again.login(account.email, account.password)
    assert (await again.get("/api/admin/users")).status_code == 403

    bad = await staff.put(f"/api/admin/users/{account.user_id}/role", {"role": "owner"})
    assert bad.status_code == 400
    changes = [
        e
        for e in await audit_actions(engine, user_id=account.user_id)
        if e["action"] == "role.changed"
    ]
    assert [(c["detail"]["previous"], c["detail"]["role"]) for c in changes] == [
        ("customer", "admin"),
        ("admin", "customer"),
    ]
    assert all(c["actor_id"] == admin_account.user_id for c in changes)


async def test_an_admin_cannot_lock_themselves_out(admin: tuple[Browser, Account]) -> None:
    staff, me = admin
    assert (await staff.post(f"/api/admin/users/{me.user_id}/disable")).status_code == 409
    assert (
        await staff.put(f"/api/admin/users/{me.user_id}/role", {"role": "customer"})
    ).status_code == 409
    assert (await staff.get("/api/admin/users")).status_code == 200


async def test_unknown_users(admin: tuple[Browser, Account]) -> None:
    import uuid

    staff, _ = admin
    unknown = uuid.uuid4()
    assert (await staff.get(f"/api/admin/users/{unknown}")).status_code == 404
    assert (await staff.post(f"/api/admin/users/{unknown}/disable")).status_code == 404
    assert (
        await staff.put(f"/api/admin/users/{unknown}/role", {"role": "admin"})
    ).status_code == 404


async def test_audit_log_records_sign_ins_failures_and_resets(
    admin: tuple[Browser, Account],
    signed_in: tuple[Browser, Account],
    browsers: Callable[..., Browser],
) -> None:
    staff, _ = admin
    _, account = signed_in
    await browsers().login(account.email, "wrong-password-here")
    await browsers().login(account.email, account.password)
    await browsers().post("/api/auth/forgot-password", {"email": account.email})
    log = (await staff.get(f"/api/admin/users/{account.user_id}/audit")).json()
    actions = [e["action"] for e in log["items"]]
    for expected in (
        "account.registered",
        "sign_in.succeeded",
        "sign_in.failed",
        "password.reset_requested",
    ):
        assert expected in actions, expected
    failed = next(e for e in log["items"] if e["action"] == "sign_in.failed")
    assert failed["detail"]["reason"] == "wrong-password"
    assert failed["ip"] == "127.0.0.1"
    everything = (
        await staff.get("/api/admin/users/audit", params={"action": "sign_in.failed"})
    ).json()
    assert everything["total"] >= 1
    assert {e["action"] for e in everything["items"]} == {"sign_in.failed"}
