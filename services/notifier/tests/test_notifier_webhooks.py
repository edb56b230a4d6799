"""``POST /api/webhooks/resend``: Svix signature first, each svix-id once, bounces suppress."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

import pytest
from ember_shared.events.contracts import UserRegistered
from ember_shared.ids import new_id
from litestar import Litestar
from litestar.testing import AsyncTestClient
from notifier.events import queue_order_confirmation, queue_welcome
from notifier.models import PendingEmail, Suppression, WebhookEvent
from notifier.settings import LOCAL_WEBHOOK_SECRET
from notifier.webhooks import svix
from notifier.worker import EmailWorker
from notifier_testkit import (
    Standin,
    email_by_id,
    emails_to,
    envelope,
    handle,
    order_paid,
    until,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

pytestmark = pytest.mark.usefixtures("fresh")
PATH = "/api/webhooks/resend"


def bounce_body(to: str, email_id: str = "", bounce_type: str = "Permanent") -> bytes:
    return json.dumps(
        {
            "type": "email.bounced",
            "created_at": "2026-01-01T00:00:00.000Z",
            "data": {
                "email_id": email_id or str(uuid.uuid4()),
                "from": "Ember <orders@ember.local>",
                "to": [to],
                "subject": "Your order",
                "bounce": {"message": "No such user", "subType": "General", "type": bounce_type},
            },
        }
    ).encode()


def signed_headers(
    body: bytes,
    *,
    msg_id: str | None = None,
    secret: str = LOCAL_WEBHOOK_SECRET,
    timestamp: int | None = None,
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": str(timestamp),
        "svix-signature": svix.sign(secret, msg_id, timestamp, body),
    }


async def counts(engine: AsyncEngine) -> tuple[int, int]:
    async with AsyncSession(engine) as session:
        hooks = await session.scalar(select(func.count()).select_from(WebhookEvent))
        suppressed = await session.scalar(select(func.count()).select_from(Suppression))
    return int(hooks or 0), int(suppressed or 0)


async def suppression(engine: AsyncEngine, address: str) -> Suppression | None:
    async with AsyncSession(engine) as session:
        return (
            await session.execute(select(Suppression).where(Suppression.email == address.lower()))
        ).scalar_one_or_none()


async def test_a_signed_hard_bounce_suppresses_the_address(
    client: AsyncTestClient[Litestar], engine: AsyncEngine
) -> None:
    body = bounce_body("Gone@Example.com")
    headers = signed_headers(body)

    response = await client.post(PATH, content=body, headers=headers)

    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False, "type": "email.bounced"}
    row = await suppression(engine, "gone@example.com")
    assert row is not None
    assert row.reason == "bounce"
    assert row.source == f"resend-webhook:{headers['svix-id']}"


async def test_a_soft_bounce_does_not_suppress(
    client: AsyncTestClient[Litestar], engine: AsyncEngine
) -> None:
    body = bounce_body("full@example.com", bounce_type="Transient")
    response = await client.post(PATH, content=body, headers=signed_headers(body))
    assert response.status_code == 200
    assert await suppression(engine, "full@example.com") is None


async def test_a_complaint_suppresses_and_marks_the_mail(
    client: AsyncTestClient[Litestar], engine: AsyncEngine, worker: EmailWorker
) -> None:
    data = UserRegistered(user_id=new_id(), email="annoyed@example.com", name="A")
    await handle(engine, queue_welcome, envelope(data), data)
    await worker.run_once()
    (sent,) = await emails_to(engine, "annoyed@example.com")
    body = json.dumps(
        {
            "type": "email.complained",
            "created_at": "2026-01-01T00:00:00.000Z",
            "data": {"email_id": sent.provider_message_id, "to": ["annoyed@example.com"]},
        }
    ).encode()

    response = await client.post(PATH, content=body, headers=signed_headers(body))

    assert response.status_code == 200
    row = await suppression(engine, "annoyed@example.com")
    assert row is not None
    assert row.reason == "complaint"
    assert (await email_by_id(engine, sent.id)).delivery_status == "complained"


@pytest.mark.parametrize(
    "tamper",
    ["wrong_secret", "old_timestamp", "future_timestamp", "body_changed", "no_signature", "v2"],
)
async def test_a_forged_or_stale_webhook_is_refused_and_writes_nothing(
    client: AsyncTestClient[Litestar], engine: AsyncEngine, tamper: str
) -> None:
    body = bounce_body("victim@example.com")
    headers = signed_headers(body)
    if tamper == "wrong_secret":
        headers = signed_headers(body, secret="whsec_" + "QUJD" * 8)
    elif tamper == "old_timestamp":
        headers = signed_headers(body, timestamp=int(time.time()) - 301)
    elif tamper == "future_timestamp":
        headers = signed_headers(body, timestamp=int(time.time()) + 301)
    elif tamper == "body_changed":
        body = bounce_body("someone-else@example.com")
    elif tamper == "no_signature":
        del headers["svix-signature"]
    elif tamper == "v2":
        headers["svix-signature"] = headers["svix-signature"].replace("v1,", "v2,")
    before = await counts(engine)

    response = await client.post(PATH, content=body, headers=headers)

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/webhook-signature")
    assert await counts(engine) == before
    assert await suppression(engine, "victim@example.com") is None


async def test_any_of_several_signatures_may_match(
    client: AsyncTestClient[Litestar], engine: AsyncEngine
) -> None:
    # During a secret rotation Svix sends one signature per secret, space-separated.
    body = bounce_body("rotated@example.com")
    headers = signed_headers(body)
    headers["svix-signature"] = f"v1,{'A' * 44} {headers['svix-signature']}"

    response = await client.post(PATH, content=body, headers=headers)

    assert response.status_code == 200
    assert await suppression(engine, "rotated@example.com") is not None


async def test_a_duplicate_svix_id_is_acknowledged_and_ignored(
    client: AsyncTestClient[Litestar], engine: AsyncEngine
) -> None:
    body = bounce_body("twice@example.com")
    msg_id = "msg_duplicate_" + secrets.token_hex(4)

    first = await client.post(PATH, content=body, headers=signed_headers(body, msg_id=msg_id))
    # Svix re-signs each retry with a fresh timestamp; the id stays.
    second = await client.post(PATH, content=body, headers=signed_headers(body, msg_id=msg_id))

    assert first.status_code == second.status_code == 200
    assert first.json()["duplicate"] is False
    assert second.json()["duplicate"] is True
    assert await counts(engine) == (1, 1)


async def test_a_signed_body_that_is_not_an_event_is_refused(
    client: AsyncTestClient[Litestar], engine: AsyncEngine
) -> None:
    for body in (b"[1, 2]", b"not json", b'{"data": {}}', b'{"type": "email.sent\\u0000"}'):
        response = await client.post(PATH, content=body, headers=signed_headers(body))
        assert response.status_code == 400
        assert response.json()["type"].endswith("/webhook-payload")
    assert await counts(engine) == (0, 0)


async def test_unknown_event_types_are_recorded_and_acknowledged(
    client: AsyncTestClient[Litestar], engine: AsyncEngine
) -> None:
    body = json.dumps({"type": "contact.created", "data": {"id": "c1", "email": "x@y.z"}}).encode()
    response = await client.post(PATH, content=body, headers=signed_headers(body))
    assert response.status_code == 200
    assert await counts(engine) == (1, 0)


async def test_the_stand_ins_bounce_suppresses_and_a_later_mail_is_not_sent(
    engine: AsyncEngine, worker: EmailWorker, resend_standin: Standin, notifier_url: str
) -> None:
    """End to end over HTTP: worker -> SDK -> stand-in -> signed webhook -> served notifier."""
    to = "bounced@resend.dev"
    first = order_paid(to)
    await handle(engine, queue_order_confirmation, envelope(first), first)

    await worker.run_once()
    (sent,) = await emails_to(engine, to)
    assert sent.status == "sent"

    async def suppressed() -> bool:
        return await suppression(engine, to) is not None

    await until(suppressed)
    row = await suppression(engine, to)
    assert row is not None
    assert row.reason == "bounce"
    assert row.source.startswith("resend-webhook:msg_")

    async def marked() -> bool:
        return (await email_by_id(engine, sent.id)).delivery_status == "bounced"

    await until(marked)

    later = order_paid(to)
    await handle(engine, queue_order_confirmation, envelope(later), later)
    rows = await emails_to(engine, to)
    assert [r.status for r in rows] == ["sent", "suppressed"]
    assert await worker.run_once() == 0
    assert len(resend_standin.emails(to)) == 1


async def test_the_stand_ins_delivery_and_complaint_reach_the_notifier(
    engine: AsyncEngine, worker: EmailWorker, resend_standin: Standin
) -> None:
    for to in ("delivered@resend.dev", "complained@resend.dev"):
        data = UserRegistered(user_id=new_id(), email=to, name="T")
        await handle(engine, queue_welcome, envelope(data), data)
    await worker.run_once()
    delivered, complained = (
        (await emails_to(engine, "delivered@resend.dev"))[0],
        (await emails_to(engine, "complained@resend.dev"))[0],
    )

    async def reported() -> bool:
        a = await email_by_id(engine, delivered.id)
        b = await email_by_id(engine, complained.id)
        return a.delivery_status == "delivered" and b.delivery_status == "complained"

    await until(reported)
    row = await suppression(engine, "complained@resend.dev")
    assert row is not None
    assert row.reason == "complaint"
    assert await suppression(engine, "delivered@resend.dev") is None
    expected = ["email.sent", "email.delivered", "email.complained"]

    # The notifier commits before it answers, so the stand-in logs the last 200 a moment later.
    async def acknowledged() -> bool:
        hooks: list[dict[str, Any]] = resend_standin.webhooks(complained.provider_message_id)
        return [h["type"] for h in hooks if h["status_code"] == 200] == expected

    await until(acknowledged)


async def test_a_later_delivered_report_does_not_hide_a_bounce(
    client: AsyncTestClient[Litestar], engine: AsyncEngine, worker: EmailWorker
) -> None:
    data = UserRegistered(user_id=new_id(), email="order@example.com", name="O")
    await handle(engine, queue_welcome, envelope(data), data)
    await worker.run_once()
    (sent,) = await emails_to(engine, "order@example.com")
    assert sent.provider_message_id
    bounce = bounce_body("order@example.com", sent.provider_message_id)
    delivered = json.dumps(
        {"type": "email.delivered", "data": {"email_id": sent.provider_message_id}}
    ).encode()

    await client.post(PATH, content=bounce, headers=signed_headers(bounce))
    await client.post(PATH, content=delivered, headers=signed_headers(delivered))

    assert (await email_by_id(engine, sent.id)).delivery_status == "bounced"


def test_svix_verification_follows_the_spec() -> None:
    # Svix's documented example: secret, id, timestamp, body and the signature they give.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    timestamp = 1614265330
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {"svix-id": msg_id, "svix-timestamp": str(timestamp), "svix-signature": expected}

    assert svix.sign(secret, msg_id, timestamp, body) == expected
    assert svix.verify(secret, headers, body, now=timestamp + 10) == msg_id
    with pytest.raises(svix.SignatureError):
        svix.verify(secret, headers, body, now=timestamp + 301)
    with pytest.raises(svix.SignatureError):
        svix.verify(secret, headers, body + b" ", now=timestamp)
    with pytest.raises(svix.SignatureError):
        svix.verify(secret, {**headers, "svix-timestamp": "soon"}, body, now=timestamp)


async def test_the_webhook_needs_no_sign_in_and_ignores_cookies(
    client: AsyncTestClient[Litestar], engine: AsyncEngine
) -> None:
    # A stray access cookie without CSRF header must not turn a provider call into a 403.
    body = bounce_body("cookie@example.com")
    headers = {**signed_headers(body), "cookie": "ember_access=garbage"}
    response = await client.post(PATH, content=body, headers=headers)
    assert response.status_code == 200


async def test_pending_emails_are_untouched_by_an_unknown_message_id(
    client: AsyncTestClient[Litestar], engine: AsyncEngine
) -> None:
    body = json.dumps({"type": "email.delivered", "data": {"email_id": "nope"}}).encode()
    response = await client.post(PATH, content=body, headers=signed_headers(body))
    assert response.status_code == 200
    async with AsyncSession(engine) as session:
        marked = await session.scalar(
            select(func.count())
            .select_from(PendingEmail)
            .where(PendingEmail.delivery_status.is_not(None))
        )
    assert marked == 0
