"""``/api/admin/emails*``: admins only; list, read, retry, suppressions."""

from __future__ import annotations

from typing import Any

import pytest
from ember_devkit.testing.tokens import TokenFactory
from ember_shared.events.contracts import UserRegistered
from ember_shared.ids import new_id
from litestar import Litestar
from litestar.testing import AsyncTestClient
from notifier.events import queue_welcome
from notifier.models import PendingEmail
from notifier.worker import EmailWorker
from notifier_testkit import (
    Standin,
    attempts_of,
    email_by_id,
    emails_to,
    envelope,
    handle,
    unique_address,
)
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

pytestmark = pytest.mark.usefixtures("fresh")
BASE = "/api/admin/emails"


@pytest.fixture
def admin(tokens: TokenFactory) -> dict[str, str]:
    token, _ = tokens.admin()
    return tokens.bearer(token)


async def queue_welcome_to(engine: AsyncEngine, to: str, name: str = "Ada") -> PendingEmail:
    data = UserRegistered(user_id=new_id(), email=to, name=name)
    await handle(engine, queue_welcome, envelope(data), data)
    rows = await emails_to(engine, to)
    return rows[-1]


async def set_status(engine: AsyncEngine, email: PendingEmail, status: str, attempts: int) -> None:
    async with AsyncSession(engine) as session, session.begin():
        await session.execute(
            update(PendingEmail)
            .where(PendingEmail.id == email.id)
            .values(status=status, attempts=attempts, last_error="boom")
        )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", BASE, None),
        ("GET", f"{BASE}/{new_id()}", None),
        ("POST", f"{BASE}/{new_id()}/retry", None),
        ("GET", f"{BASE}/suppressions", None),
        ("POST", f"{BASE}/suppressions", {"email": "a@example.com"}),
        ("DELETE", f"{BASE}/suppressions/a@example.com", None),
    ],
)
async def test_every_admin_route_needs_the_admin_role(
    client: AsyncTestClient[Litestar],
    tokens: TokenFactory,
    method: str,
    path: str,
    body: Any,
) -> None:
    anonymous = await client.request(method, path, json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")

    customer, _ = tokens.customer()
    refused = await client.request(method, path, json=body, headers=tokens.bearer(customer))
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/forbidden")

    expired, _ = tokens.admin(expires_in=-60)
    late = await client.request(method, path, json=body, headers=tokens.bearer(expired))
    assert late.status_code == 401


async def test_admins_list_mail_filtered_and_paginated(
    client: AsyncTestClient[Litestar], engine: AsyncEngine, admin: dict[str, str]
) -> None:
    to = unique_address("list")
    for _ in range(3):
        await queue_welcome_to(engine, to)
    other = await queue_welcome_to(engine, unique_address("other"))
    await set_status(engine, other, "dead", 6)

    page1 = (
        await client.get(BASE, params={"to": to.upper(), "page_size": 2}, headers=admin)
    ).json()
    page2 = (
        await client.get(BASE, params={"to": to, "page_size": 2, "page": 2}, headers=admin)
    ).json()

    assert page1["total"] == page2["total"] == 3
    assert len(page1["items"]) == 2
    assert len(page2["items"]) == 1
    ids = {i["id"] for i in page1["items"] + page2["items"]}
    assert len(ids) == 3
    assert all(i["to"] == to and i["template"] == "welcome" for i in page1["items"])
    assert "html" not in page1["items"][0]  # the list stays small: no bodies

    dead = (await client.get(BASE, params={"status": "dead"}, headers=admin)).json()
    assert [i["id"] for i in dead["items"]] == [str(other.id)]


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": 101},
        {"page_size": 0},
        {"page": 0},
        {"status": "exploded"},
        {"to": "x" * 400},
        {"to": "a\x00@example.com"},
    ],
)
async def test_bad_list_queries_are_refused(
    client: AsyncTestClient[Litestar], admin: dict[str, str], params: dict[str, Any]
) -> None:
    response = await client.get(BASE, params=params, headers=admin)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_one_mail_shows_its_content_and_attempts(
    client: AsyncTestClient[Litestar],
    engine: AsyncEngine,
    admin: dict[str, str],
    worker: EmailWorker,
    resend_standin: Standin,
) -> None:
    email = await queue_welcome_to(engine, unique_address("detail"), name="<Eve>")
    resend_standin.fail(1, 500)
    await worker.run_once()

    response = await client.get(f"{BASE}/{email.id}", headers=admin)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed"
    assert "&lt;Eve&gt;" in body["html"]
    assert "<Eve>" in body["text"]
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in body["delivery_attempts"]] == [
        (1, "retryable_error", 500)
    ]

    missing = await client.get(f"{BASE}/{new_id()}", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("/not-found")
    assert (await client.get(f"{BASE}/not-a-uuid", headers=admin)).status_code in (400, 404)


async def test_retry_sends_a_dead_mail_back_to_the_queue(
    client: AsyncTestClient[Litestar],
    engine: AsyncEngine,
    admin: dict[str, str],
    worker: EmailWorker,
    resend_standin: Standin,
) -> None:
    to = unique_address("retry")
    email = await queue_welcome_to(engine, to)
    resend_standin.fail(100, 503)
    for _ in range(worker.settings.max_attempts):
        async with AsyncSession(engine) as session, session.begin():
            await session.execute(
                update(PendingEmail)
                .where(PendingEmail.id == email.id)
                .values(next_attempt_at=PendingEmail.created_at)
            )
        await worker.run_once()
    assert (await email_by_id(engine, email.id)).status == "dead"
    resend_standin.fail(0)

    response = await client.post(f"{BASE}/{email.id}/retry", headers=admin)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "queued"
    assert await worker.run_once() == 1
    sent = await email_by_id(engine, email.id)
    assert sent.status == "sent"
    assert sent.attempts == 4
    assert len(resend_standin.emails(to)) == 1
    # The history is kept: three failures before the retry, then the send.
    outcomes = [(a.attempt, a.outcome) for a in await attempts_of(engine, email.id)]
    assert outcomes == [
        (1, "retryable_error"),
        (2, "retryable_error"),
        (3, "retryable_error"),
        (4, "sent"),
    ]


async def test_a_retried_mail_gets_a_fresh_set_of_tries(
    client: AsyncTestClient[Litestar],
    engine: AsyncEngine,
    admin: dict[str, str],
    worker: EmailWorker,
    resend_standin: Standin,
) -> None:
    email = await queue_welcome_to(engine, unique_address("fresh"))
    await set_status(engine, email, "dead", 3)
    assert (await client.post(f"{BASE}/{email.id}/retry", headers=admin)).status_code == 200
    resend_standin.fail(1, 500)

    await worker.run_once()

    # Attempt 4 overall, but the first of the new set: it is retried, not dead.
    row = await email_by_id(engine, email.id)
    assert row.status == "failed"
    assert row.attempts == 4


async def test_retry_refuses_mail_that_is_not_dead_or_failed(
    client: AsyncTestClient[Litestar], engine: AsyncEngine, admin: dict[str, str]
) -> None:
    email = await queue_welcome_to(engine, unique_address("queued"))
    for status in ("queued", "sent", "sending"):
        await set_status(engine, email, status, 1)
        response = await client.post(f"{BASE}/{email.id}/retry", headers=admin)
        assert response.status_code == 409
        assert response.json()["type"].endswith("/email-not-retryable")
    assert (await client.post(f"{BASE}/{new_id()}/retry", headers=admin)).status_code == 404


async def test_a_suppressed_address_cannot_be_retried_until_lifted(
    client: AsyncTestClient[Litestar],
    engine: AsyncEngine,
    admin: dict[str, str],
) -> None:
    to = unique_address("lift")
    added = await client.post(
        f"{BASE}/suppressions", json={"email": to, "note": "asked us to stop"}, headers=admin
    )
    assert added.status_code == 201
    email = await queue_welcome_to(engine, to)
    assert email.status == "suppressed"

    refused = await client.post(f"{BASE}/{email.id}/retry", headers=admin)
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/email-suppressed")

    lifted = await client.delete(f"{BASE}/suppressions/{to.upper()}", headers=admin)
    assert lifted.status_code == 204
    retried = await client.post(f"{BASE}/{email.id}/retry", headers=admin)
    assert retried.status_code == 200
    assert retried.json()["status"] == "queued"


async def test_suppressions_can_be_listed_added_and_removed(
    client: AsyncTestClient[Litestar], admin: dict[str, str], tokens: TokenFactory
) -> None:
    to = unique_address("manual")
    token, admin_id = tokens.admin()
    headers = tokens.bearer(token)

    created = await client.post(f"{BASE}/suppressions", json={"email": to.upper()}, headers=headers)
    assert created.status_code == 201
    body = created.json()
    assert body["email"] == to.lower()
    assert body["reason"] == "manual"
    assert body["source"] == f"admin:{admin_id}"

    again = await client.post(f"{BASE}/suppressions", json={"email": to}, headers=headers)
    assert again.status_code == 409
    assert again.json()["type"].endswith("/already-suppressed")

    listed = (await client.get(f"{BASE}/suppressions", params={"email": to}, headers=admin)).json()
    assert [i["email"] for i in listed["items"]] == [to.lower()]
    by_reason = await client.get(f"{BASE}/suppressions", params={"reason": "bounce"}, headers=admin)
    assert to.lower() not in [i["email"] for i in by_reason.json()["items"]]

    assert (await client.delete(f"{BASE}/suppressions/{to}", headers=admin)).status_code == 204
    gone = await client.delete(f"{BASE}/suppressions/{to}", headers=admin)
    assert gone.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "not-an-address"},
        {"email": "a@b"},
        {"email": "x" * 330 + "@example.com"},
        {"email": "a@example.com", "note": "n" * 501},
        {"email": "a@example.com", "reason": "bounce"},
        {"email": ["a@example.com"]},
        {"email": "a\x00b@example.com"},
        {"email": "a@example.com", "note": "nul \x00 byte"},
    ],
)
async def test_bad_suppressions_are_refused(
    client: AsyncTestClient[Litestar], admin: dict[str, str], body: dict[str, Any]
) -> None:
    response = await client.post(f"{BASE}/suppressions", json=body, headers=admin)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_openapi_document_lists_the_notifier_routes(
    client: AsyncTestClient[Litestar],
) -> None:
    document = (await client.get("/api/docs/notifier/openapi.json")).json()
    paths = set(document["paths"])
    assert {
        "/api/webhooks/resend",
        "/api/admin/emails",
        "/api/admin/emails/{email_id}",
        "/api/admin/emails/{email_id}/retry",
        "/api/admin/emails/suppressions",
        "/api/admin/emails/suppressions/{email}",
        "/api/admin/emails/dead-letters",
        "/api/admin/emails/dead-letters/{letter_id}",
        "/api/admin/emails/dead-letters/{letter_id}/replay",
    } <= paths
    problem = document["paths"]["/api/webhooks/resend"]["post"]["responses"]["400"]
    assert "application/problem+json" in problem["content"]


async def test_a_nul_byte_in_a_path_or_filter_is_a_400_not_a_500(
    client: AsyncTestClient[Litestar], admin: dict[str, str]
) -> None:
    deleted = await client.delete(f"{BASE}/suppressions/a%00b@example.com", headers=admin)
    assert deleted.status_code == 400
    listed = await client.get(f"{BASE}/suppressions", params={"email": "\x00"}, headers=admin)
    assert listed.status_code == 400
