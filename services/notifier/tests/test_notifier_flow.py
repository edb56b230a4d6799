"""Mail through the whole stack, behind Caddy: identity's events reach the notifier, its worker
process sends through the Resend stand-in, and the shopper can use what arrives."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def gateway(stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=15) as client:
        yield client


@pytest.fixture(scope="module")
def inbox(stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.service_url("resend-standin"), timeout=15) as client:
        yield client


def mail_to(inbox: httpx.Client, address: str, count: int, within: float = 45.0) -> list[Any]:
    deadline = time.monotonic() + within
    while True:
        found: list[Any] = inbox.get("/_standin/emails", params={"to": address}).json()["data"]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} mail(s) to {address} did not arrive: {found}")
        time.sleep(0.25)


def test_registration_and_password_reset_mail_arrive_and_work(
    gateway: httpx.Client, inbox: httpx.Client
) -> None:
    address = f"flow-{uuid.uuid4().hex[:10]}@example.com"
    password = "Roast-" + secrets.token_urlsafe(12)
    registered = gateway.post(
        "/api/auth/register", json={"email": address, "password": password, "name": "Flo <b>"}
    )
    assert registered.status_code == 202, registered.text

    (link_mail,) = mail_to(inbox, address, 1)
    assert link_mail["subject"] == "Confirm your email to finish signing up at Ember"
    # The sign-up mail goes to an address nobody has proved yet: it repeats no name the
    # requester chose (issue 10); the welcome, once the link is opened, greets by it.
    assert "Flo" not in link_mail["html"]
    assert "Flo" not in link_mail["text"]
    assert link_mail["from"]
    link = re.search(r"https?://\S+?/verify-email\?token=([A-Za-z0-9_-]+)", link_mail["text"])
    assert link, link_mail["text"]
    opened = gateway.post("/api/auth/verify-email", json={"token": link.group(1)})
    assert opened.status_code == 201, opened.text

    welcome = next(m for m in mail_to(inbox, address, 2) if m["subject"] == "Welcome to Ember")
    assert "Flo &lt;b&gt;" in welcome["html"]

    # Signing up again with the address: the same answer, and only its owner learns why.
    again = gateway.post("/api/auth/register", json={"email": address, "password": password})
    assert again.status_code == 202, again.text
    assert again.json() == registered.json()
    notice = next(
        m for m in mail_to(inbox, address, 3) if m["subject"] == "You already have an Ember account"
    )
    assert "/forgot-password" in notice["text"]

    asked = gateway.post("/api/auth/forgot-password", json={"email": address})
    assert asked.status_code == 202

    reset = next(
        m for m in mail_to(inbox, address, 4) if m["subject"] == "Reset your Ember password"
    )
    match = re.search(r"https?://\S+?token=([A-Za-z0-9_-]+)", reset["text"])
    assert match, reset["text"]
    new_password = "Brew-" + secrets.token_urlsafe(12)
    done = gateway.post(
        "/api/auth/reset-password", json={"token": match.group(1), "password": new_password}
    )
    assert done.status_code == 200, done.text
    signed_in = gateway.post("/api/auth/login", json={"email": address, "password": new_password})
    assert signed_in.status_code == 200


def test_staff_see_the_sent_mail_through_the_gateway(
    gateway: httpx.Client, inbox: httpx.Client, tokens: TokenFactory, stack: RunningStack
) -> None:
    address = f"staff-view-{uuid.uuid4().hex[:10]}@example.com"
    password = "Roast-" + secrets.token_urlsafe(12)
    assert (
        gateway.post("/api/auth/register", json={"email": address, "password": password})
    ).status_code == 202
    link = stack.mailed_token(address, "/verify-email")
    assert gateway.post("/api/auth/verify-email", json={"token": link}).status_code == 201
    token, _ = tokens.admin()
    headers = tokens.bearer(token)

    deadline = time.monotonic() + 30
    while True:
        listed = gateway.get("/api/admin/emails", params={"to": address}, headers=headers)
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        if items and items[0]["status"] == "sent":
            break
        assert time.monotonic() < deadline, items
        time.sleep(0.25)
    detail = gateway.get(f"/api/admin/emails/{items[0]['id']}", headers=headers).json()
    assert detail["delivery_attempts"][0]["outcome"] == "sent"
    # The client holds the new shopper's cookies: a customer is refused, and nobody at all too.
    assert gateway.get("/api/admin/emails", params={"to": address}).status_code == 403
    gateway.cookies.clear()
    assert gateway.get("/api/admin/emails", params={"to": address}).status_code == 401
