"""Events through Redis: the notifier's consumer queues mail once; staff see and replay dead
letters under ``/api/admin/emails/dead-letters``."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ember_devkit.testing.tokens import TokenFactory
from ember_shared.events import DEAD_LETTER_STREAM, Envelope, stream_for
from ember_shared.events.contracts import Address, PasswordResetRequested, PaymentSucceeded
from ember_shared.events.dead_letters import FailedDelivery, write_dead_letter
from ember_shared.ids import new_id
from litestar import Litestar
from litestar.testing import AsyncTestClient
from notifier_testkit import (
    emails_to,
    envelope,
    fields_of,
    order_paid,
    publish,
    unique_address,
    until,
)
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

BASE = "/api/admin/emails/dead-letters"


@pytest.fixture
async def redis(ember_env: Any) -> AsyncIterator[Redis]:
    client = Redis.from_url(os.environ["REDIS_URL"])
    yield client
    await client.aclose()


@pytest.fixture
def admin(tokens: TokenFactory) -> dict[str, str]:
    token, _ = tokens.admin()
    return tokens.bearer(token)


async def dead_letter(redis: Redis, event: Envelope, *, service: str = "notifier") -> str:
    stream = stream_for(event.type)
    # The original entry need not exist: acknowledging an unknown id is a no-op. (Adding a
    # placeholder to the real stream would be read, and dead-lettered, by the notifier.)
    message_id = b"1-1"
    dead_id = await write_dead_letter(
        redis,
        FailedDelivery(
            stream=stream,
            group=service,
            consumer=f"{service}-test-1",
            message_id=message_id,
            fields=await fields_of(event),
            envelope=event,
        ),
        handler=f"{service}.some_handler",
        reason="handler_failed",
        error="RuntimeError: the database went away",
        attempts=5,
        maxlen=10_000,
    )
    return dead_id.decode()


async def test_an_event_on_its_stream_queues_one_mail_even_when_delivered_twice(
    redis: Redis, engine: AsyncEngine, notifier_url: str
) -> None:
    to = unique_address("stream")
    event = envelope(order_paid(to))

    await publish(redis, event)
    await publish(redis, event)  # the producer's relay sent it again

    async def queued() -> bool:
        return len(await emails_to(engine, to)) >= 1

    await until(queued)
    await until(lambda: _settled(redis))
    rows = await emails_to(engine, to)
    assert [(r.template, r.idempotency_key) for r in rows] == [
        ("order_confirmation", f"{event.id}:order_confirmation")
    ]


async def test_a_payment_that_made_no_order_mails_nobody(
    redis: Redis, engine: AsyncEngine, notifier_url: str
) -> None:
    """A payment event that orders refused (and dead-lettered) made no order: the confirmation
    follows orders' order.paid, so the payment alone queues nothing, and the order does."""
    refused_to, order_to = unique_address("refused"), unique_address("ordered")
    order = order_paid(order_to)
    refused = PaymentSucceeded(
        order_id=new_id(),
        checkout_session_id=new_id(),
        user_id=None,
        cart_id=None,
        email=refused_to,
        lines=list(order.lines),
        subtotal=order.subtotal,
        shipping=order.shipping,
        total=order.total,
        currency=order.currency,
        shipping_address=order.shipping_address
        or Address(name="A", line1="1 Way", city="Town", postal_code="1", country="US"),
        reservation_id=new_id(),
        stripe_session_id="cs_test_refused",
    )

    await publish(redis, envelope(refused))
    await publish(redis, envelope(order))

    async def order_mailed() -> bool:
        return len(await emails_to(engine, order_to)) == 1

    await until(order_mailed)
    await until(lambda: _settled(redis))
    # The notifier reads no payment stream at all: no group of its own there to take one from.
    groups = await redis.xinfo_groups(stream_for(PaymentSucceeded.TYPE))
    assert "notifier" not in {g["name"].decode() for g in groups}
    assert await emails_to(engine, refused_to) == []
    mail = (await emails_to(engine, order_to))[0]
    assert mail.source_event_type == "order.paid.v1"
    assert "Ethiopia Guji" in mail.text


async def _settled(redis: Redis) -> bool:
    """True once the notifier group has nothing pending on the payment stream."""
    summary = await redis.xpending(stream_for("order.paid.v1"), "notifier")
    return int(summary["pending"]) == 0


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("GET", "/1-0"), ("POST", "/1-0/replay"), ("DELETE", "/1-0")],
)
async def test_the_dead_letter_view_needs_the_admin_role(
    client: AsyncTestClient[Litestar], tokens: TokenFactory, method: str, suffix: str
) -> None:
    assert (await client.request(method, BASE + suffix)).status_code == 401
    customer, _ = tokens.customer()
    response = await client.request(method, BASE + suffix, headers=tokens.bearer(customer))
    assert response.status_code == 403


async def test_staff_see_dead_letters_with_secrets_redacted(
    client: AsyncTestClient[Litestar], redis: Redis, admin: dict[str, str]
) -> None:
    reset = envelope(
        PasswordResetRequested(
            user_id=new_id(),
            email="forgetful@example.com",
            reset_url="https://shop.example.com/account/reset?token=LIVE-TOKEN-123",
            expires_at="2030-01-01T00:00:00Z",
        )
    )
    letter_id = await dead_letter(redis, reset)
    other_id = await dead_letter(redis, envelope(order_paid("x@example.com")), service="orders")

    mine = (await client.get(BASE, params={"service": "notifier"}, headers=admin)).json()
    everyone = (await client.get(BASE, headers=admin)).json()

    ids = [item["id"] for item in mine["items"]]
    assert letter_id in ids
    assert other_id not in ids
    assert {letter_id, other_id} <= {item["id"] for item in everyone["items"]}
    assert everyone["total"] >= 2
    item = next(i for i in mine["items"] if i["id"] == letter_id)
    assert item["event_type"] == "password_reset.requested.v1"
    assert item["event_id"] == reset.id
    assert item["reason"] == "handler_failed"
    assert item["attempts"] == 5
    assert "LIVE-TOKEN-123" not in json.dumps(item)
    assert json.loads(item["payload"])["data"]["reset_url"] == "[redacted]"
    assert json.loads(item["payload"])["data"]["email"] == "forgetful@example.com"

    one = await client.get(f"{BASE}/{letter_id}", headers=admin)
    assert one.status_code == 200
    assert one.json()["id"] == letter_id
    assert "LIVE-TOKEN-123" not in one.text


async def test_dead_letters_page_with_before(
    client: AsyncTestClient[Litestar], redis: Redis, admin: dict[str, str]
) -> None:
    ids = [await dead_letter(redis, envelope(order_paid("p@example.com"))) for _ in range(3)]

    # Only the notifier's: other services' consumers may add letters of their own meanwhile.
    query = {"limit": 2, "service": "notifier"}
    first = (await client.get(BASE, params=query, headers=admin)).json()
    second = (
        await client.get(BASE, params={**query, "before": first["next_before"]}, headers=admin)
    ).json()

    assert [i["id"] for i in first["items"]] == [ids[2], ids[1]]
    assert second["items"][0]["id"] == ids[0]


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"service": "payments"}, {"before": "yesterday"}],
)
async def test_bad_dead_letter_queries_are_refused(
    client: AsyncTestClient[Litestar], admin: dict[str, str], params: dict[str, Any]
) -> None:
    response = await client.get(BASE, params=params, headers=admin)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_replayed_dead_letter_is_handled_by_the_notifier(
    client: AsyncTestClient[Litestar],
    redis: Redis,
    engine: AsyncEngine,
    admin: dict[str, str],
    notifier_url: str,
) -> None:
    to = unique_address("replay")
    event = envelope(order_paid(to))
    letter_id = await dead_letter(redis, event)
    assert await emails_to(engine, to) == []

    response = await client.post(f"{BASE}/{letter_id}/replay", headers=admin)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dead_letter_id"] == letter_id
    assert body["service"] == "notifier"
    assert body["stream"] == "ember.events.order.paid.v1"

    async def queued() -> bool:
        return len(await emails_to(engine, to)) == 1

    await until(queued)
    # The letter is gone: a second replay finds nothing.
    again = await client.post(f"{BASE}/{letter_id}/replay", headers=admin)
    assert again.status_code == 404
    assert again.json()["type"].endswith("/not-found")
    assert (await client.get(f"{BASE}/{letter_id}", headers=admin)).status_code == 404


async def test_a_dead_letter_can_be_discarded(
    client: AsyncTestClient[Litestar], redis: Redis, admin: dict[str, str]
) -> None:
    letter_id = await dead_letter(redis, envelope(order_paid("d@example.com")))
    before = await redis.xlen(DEAD_LETTER_STREAM)

    assert (await client.delete(f"{BASE}/{letter_id}", headers=admin)).status_code == 204
    assert await redis.xlen(DEAD_LETTER_STREAM) == before - 1
    assert (await client.delete(f"{BASE}/{letter_id}", headers=admin)).status_code == 404


@pytest.mark.parametrize("letter_id", ["abc", "1-2-3", "-1", "1" * 50 + "-0"])
async def test_a_malformed_dead_letter_id_is_refused(
    client: AsyncTestClient[Litestar], admin: dict[str, str], letter_id: str
) -> None:
    for method, suffix in (("GET", ""), ("POST", "/replay"), ("DELETE", "")):
        response = await client.request(method, f"{BASE}/{letter_id}{suffix}", headers=admin)
        assert response.status_code == 400, (method, letter_id, response.text)


async def test_ids_beyond_what_redis_accepts_are_not_found_not_errors(
    client: AsyncTestClient[Litestar], admin: dict[str, str]
) -> None:
    huge = "99999999999999999999-0"
    assert (await client.get(f"{BASE}/{huge}", headers=admin)).status_code == 404
    assert (await client.post(f"{BASE}/{huge}/replay", headers=admin)).status_code == 404
    assert (await client.delete(f"{BASE}/{huge}", headers=admin)).status_code == 404
    page = await client.get(BASE, params={"before": huge}, headers=admin)
    assert page.status_code == 400
    oldest = await client.get(BASE, params={"before": "0-0"}, headers=admin)
    assert oldest.status_code == 200
    assert oldest.json()["items"] == []
