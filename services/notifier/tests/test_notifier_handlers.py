"""Event handlers queue mail (exactly one per event and template), and never send it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ember_shared.events.contracts import OrderShipped, PasswordResetRequested, UserRegistered
from ember_shared.ids import new_id
from ember_shared.settings import service_settings
from notifier.events import (
    handlers,
    queue_order_confirmation,
    queue_password_reset,
    queue_shipment_notice,
    queue_welcome,
)
from notifier.models import Suppression
from notifier_testkit import (
    emails_to,
    envelope,
    handle,
    payment_succeeded,
    unique_address,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession


def public_url() -> str:
    return service_settings("notifier").app.public_url.rstrip("/")


def test_the_notifier_handles_the_four_mail_events() -> None:
    assert handlers.service == "notifier"
    assert handlers.event_types == sorted(
        [
            "payment.succeeded.v1",
            "order.shipped.v1",
            "password_reset.requested.v1",
            "user.registered.v1",
        ]
    )


async def test_payment_succeeded_queues_one_confirmation_even_when_delivered_twice(
    engine: AsyncEngine,
) -> None:
    to = unique_address()
    data = payment_succeeded(to)
    event = envelope(data)

    await handle(engine, queue_order_confirmation, event, data)
    await handle(engine, queue_order_confirmation, event, data)

    rows = await emails_to(engine, to)
    assert len(rows) == 1
    email = rows[0]
    assert email.status == "queued"
    assert email.template == "order_confirmation"
    assert email.idempotency_key == f"{event.id}:order_confirmation"
    assert str(email.source_event_id) == event.id
    assert email.source_event_type == "payment.succeeded.v1"
    assert email.attempts == 0
    # Totals are formatted from minor units; the order link goes to the public order page.
    assert "$57.95" in email.html
    assert "$57.95" in email.text
    assert "$37.00" in email.html  # 2 x 18.50
    assert f"{public_url()}/order/{data.order_id}" in email.html
    assert "12 Roastery Lane" in email.text
    assert data.order_id.hex[-8:].upper() in email.subject


async def test_concurrent_deliveries_of_one_event_queue_one_mail(engine: AsyncEngine) -> None:
    to = unique_address()
    data = payment_succeeded(to)
    event = envelope(data)

    await asyncio.gather(*(handle(engine, queue_order_confirmation, event, data) for _ in range(5)))

    assert len(await emails_to(engine, to)) == 1


async def test_a_new_event_for_the_same_order_is_a_new_mail(engine: AsyncEngine) -> None:
    to = unique_address()
    data = payment_succeeded(to)

    await handle(engine, queue_order_confirmation, envelope(data), data)
    await handle(engine, queue_order_confirmation, envelope(data), data)

    assert len(await emails_to(engine, to)) == 2


async def test_shipment_reset_and_welcome_are_queued_with_their_links(engine: AsyncEngine) -> None:
    to = unique_address()
    order_id = new_id()
    shipped = OrderShipped(
        order_id=order_id,
        email=to,
        carrier="UPS",
        tracking_number="1Z999AA10123456784",
        tracking_url="https://track.example.com/1Z999AA10123456784?x=1&y=2",
    )
    reset = PasswordResetRequested(
        user_id=new_id(),
        email=to,
        reset_url="https://shop.example.com/account/reset?token=abc123",
        expires_at="2030-01-01T12:30:00+00:00",
    )
    welcome = UserRegistered(user_id=new_id(), email=to, name="Grace")

    await handle(engine, queue_shipment_notice, envelope(shipped), shipped)
    await handle(engine, queue_password_reset, envelope(reset), reset)
    await handle(engine, queue_welcome, envelope(welcome), welcome)

    by_template = {row.template: row for row in await emails_to(engine, to)}
    assert set(by_template) == {"shipment", "password_reset", "welcome"}
    shipment = by_template["shipment"]
    assert "1Z999AA10123456784" in shipment.text
    # The link is kept, with its ampersand escaped as HTML requires.
    assert 'href="https://track.example.com/1Z999AA10123456784?x=1&amp;y=2"' in shipment.html
    assert "https://track.example.com/1Z999AA10123456784?x=1&y=2" in shipment.text
    assert f"/order/{order_id}" in shipment.html
    password = by_template["password_reset"]
    assert "https://shop.example.com/account/reset?token=abc123" in password.text
    assert "12:30 UTC on 01 Jan 2030" in password.text
    assert "Grace" in by_template["welcome"].html


async def test_a_suppressed_address_is_queued_as_suppressed(engine: AsyncEngine) -> None:
    to = unique_address("bounced")
    async with AsyncSession(engine) as session, session.begin():
        session.add(Suppression(email=to, reason="bounce", source="test"))
    data = UserRegistered(user_id=new_id(), email=to.upper(), name="Bo")

    await handle(engine, queue_welcome, envelope(data), data)

    rows = await emails_to(engine, to.upper())
    assert [r.status for r in rows] == ["suppressed"]
    assert rows[0].last_error


async def test_an_unmailable_address_is_recorded_dead_not_dropped(engine: AsyncEngine) -> None:
    data = UserRegistered(user_id=new_id(), email="not-an-address", name="X")

    await handle(engine, queue_welcome, envelope(data), data)

    rows = await emails_to(engine, "not-an-address")
    assert [r.status for r in rows] == ["dead"]
    assert "not a valid email address" in (rows[0].last_error or "")


async def test_a_failing_handler_leaves_nothing_behind(engine: AsyncEngine) -> None:
    to = unique_address()
    data = payment_succeeded(to)

    class Boom(Exception):
        pass

    async def then_fail(event: Any, payload: Any, session: AsyncSession) -> None:
        await queue_order_confirmation(event, payload, session)
        raise Boom

    with contextlib.suppress(Boom):
        await handle(engine, then_fail, envelope(data), data)
    # The mail was in the handler's transaction, which rolled back: the redelivery queues it.
    assert await emails_to(engine, to) == []
