"""Event handlers queue mail (exactly one per event and template), and never send it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ember_shared.events.contracts import (
    OrderDelivered,
    OrderLine,
    OrderRefunded,
    OrderShipped,
    PasswordResetRequested,
    SignUpForExistingAccount,
    SignUpRequested,
    SubscriptionPaymentFailed,
    UserRegistered,
)
from ember_shared.ids import new_id
from ember_shared.sealing import private_key, unseal
from ember_shared.settings import service_settings
from notifier.emails.rendering import SEALED_LINK
from notifier.events import (
    handlers,
    queue_delivery_notice,
    queue_existing_account_notice,
    queue_order_confirmation,
    queue_password_reset,
    queue_refund_notice,
    queue_shipment_notice,
    queue_sign_up_link,
    queue_subscription_payment_failed,
    queue_welcome,
)
from notifier.models import PendingEmail, Suppression
from notifier_testkit import (
    emails_to,
    envelope,
    guest_order_link,
    handle,
    order_paid,
    unique_address,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession


def opened_link(email: PendingEmail) -> str:
    assert email.sealed_link is not None
    return unseal(email.sealed_link, private_key(local=True))


def public_url() -> str:
    return service_settings("notifier").app.public_url.rstrip("/")


def test_the_notifier_handles_every_mail_event() -> None:
    assert handlers.service == "notifier"
    assert handlers.event_types == sorted(
        [
            "order.paid.v1",
            "order.shipped.v1",
            "order.delivered.v1",
            "order.refunded.v1",
            "password_reset.requested.v1",
            "sign_up.requested.v1",
            "sign_up.existing_account.v1",
            "subscription.payment_failed.v1",
            "user.registered.v1",
        ]
    )
    # The confirmation follows the order, not the payment (a refused payment makes no order).
    assert "payment.succeeded.v1" not in handlers.event_types
    assert "subscription.invoice_paid.v1" not in handlers.event_types


async def test_order_paid_queues_one_confirmation_even_when_delivered_twice(
    engine: AsyncEngine,
) -> None:
    to = unique_address()
    data = order_paid(to)
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
    assert email.source_event_type == "order.paid.v1"
    assert email.attempts == 0
    # Totals are formatted from minor units; the order link goes to the public order page.
    assert "$57.95" in email.html
    assert "$57.95" in email.text
    assert "$37.00" in email.html  # 2 x 18.50
    # A guest's link (its token opens the order on any device) rests sealed, never in the body.
    assert "tok_guest_" not in email.html + email.text
    assert f'href="{SEALED_LINK}"' in email.html
    assert opened_link(email) == guest_order_link(data.order_id)
    assert "12 Roastery Lane" in email.text
    assert data.order_id.hex[-8:].upper() in email.subject


async def test_concurrent_deliveries_of_one_event_queue_one_mail(engine: AsyncEngine) -> None:
    to = unique_address()
    data = order_paid(to)
    event = envelope(data)

    await asyncio.gather(*(handle(engine, queue_order_confirmation, event, data) for _ in range(5)))

    assert len(await emails_to(engine, to)) == 1


async def test_a_new_event_for_the_same_order_is_a_new_mail(engine: AsyncEngine) -> None:
    to = unique_address()
    data = order_paid(to)

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
        order_url=f"https://shop.example.com/order/{order_id}?session_id=cs_test_guest",
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
    # The order page orders named (a guest's carries the session that lets them in).
    assert f"https://shop.example.com/order/{order_id}?session_id=cs_test_guest" in shipment.text
    password = by_template["password_reset"]
    # The live link rests sealed, never in the stored body (the worker fills it in to send).
    assert "abc123" not in password.text + password.html
    assert SEALED_LINK in password.text
    assert opened_link(password) == "https://shop.example.com/account/reset?token=abc123"
    assert "12:30 UTC on 01 Jan 2030" in password.text
    assert "Grace" in by_template["welcome"].html


async def test_sign_up_mails_carry_the_link_or_say_the_account_exists(
    engine: AsyncEngine,
) -> None:
    newcomer, customer = unique_address("newcomer"), unique_address("customer")
    asked = SignUpRequested(
        email=newcomer,
        name="Grace",
        verify_url="https://shop.example.com/verify-email?token=tok_abc123",
        expires_at="2030-01-02T08:00:00+00:00",
    )
    known = SignUpForExistingAccount(
        user_id=new_id(),
        email=customer,
        name="Ada",
        sign_in_url="https://shop.example.com/signin",
        reset_url="https://shop.example.com/forgot-password",
    )

    await handle(engine, queue_sign_up_link, envelope(asked), asked)
    await handle(engine, queue_existing_account_notice, envelope(known), known)
    await handle(engine, queue_sign_up_link, envelope(asked), asked)  # another request, new mail

    links = await emails_to(engine, newcomer)
    assert [row.template for row in links] == ["sign_up", "sign_up"]
    assert "tok_abc123" not in links[0].text + links[0].html
    assert f'href="{SEALED_LINK}"' in links[0].html
    assert opened_link(links[0]) == "https://shop.example.com/verify-email?token=tok_abc123"
    assert "08:00 UTC on 02 Jan 2030" in links[0].text
    (notice,) = await emails_to(engine, customer)
    assert notice.template == "existing_account"
    assert notice.subject == "You already have an Ember account"
    assert "https://shop.example.com/forgot-password" in notice.text
    assert "token" not in notice.text


async def test_a_subscription_delivery_and_an_arrival_are_mailed(engine: AsyncEngine) -> None:
    to = unique_address("subscriber")
    # What orders announces for the order a paid subscription invoice became (a member's).
    invoice = order_paid(
        to,
        user_id=new_id(),
        lines=[
            OrderLine(
                product_id=new_id(), slug="house", name="House Blend", unit_price=1600, quantity=2
            )
        ],
        subtotal=3200,
        shipping=0,
        total=3200,
        stripe_session_id="",
        sealed_order_url="",
    )
    arrived = OrderDelivered(
        order_id=invoice.order_id,
        email=to,
        carrier="UPS",
        tracking_number="1Z999AA10123456784",
        delivered_at="2030-01-04T15:20:00Z",
    )
    event = envelope(invoice)

    await handle(engine, queue_order_confirmation, event, invoice)
    await handle(engine, queue_order_confirmation, event, invoice)  # redelivered
    await handle(engine, queue_delivery_notice, envelope(arrived), arrived)

    by_template = {row.template: row for row in await emails_to(engine, to)}
    assert sorted(by_template) == ["delivered", "order_confirmation"]
    confirmation = by_template["order_confirmation"]
    assert "House Blend" in confirmation.text
    assert "$32.00" in confirmation.text
    assert invoice.order_id.hex[-8:].upper() in confirmation.subject
    # A member signs in to see it: no link with a key, nothing sealed.
    assert f"{public_url()}/order/{invoice.order_id}\n" in confirmation.text
    assert confirmation.sealed_link is None
    delivered = by_template["delivered"]
    assert "15:20 UTC on 04 Jan 2030" in delivered.text
    assert f"/order/{invoice.order_id}" in delivered.html
    assert delivered.subject.endswith("has arrived")


async def test_a_failed_renewal_is_mailed_once_with_the_subscription_page_to_update_the_card(
    engine: AsyncEngine,
) -> None:
    to = unique_address("renewal-failed")
    failed = SubscriptionPaymentFailed(
        subscription_id=new_id(),
        user_id=new_id(),
        email=to,
        product_name="Brazil Cerrado",
        amount_due=3000,
        currency="USD",
        stripe_invoice_id="in_test_1",
    )
    event = envelope(failed)
    await handle(engine, queue_subscription_payment_failed, event, failed)
    await handle(engine, queue_subscription_payment_failed, event, failed)  # redelivered

    (mail,) = await emails_to(engine, to)
    assert mail.template == "subscription_payment_failed"
    assert "update your card" in mail.subject
    assert "$30.00" in mail.text
    assert "Brazil Cerrado" in mail.text
    assert f"{public_url()}/account/subscriptions/{failed.subscription_id}" in mail.text


async def test_a_confirmed_refund_is_mailed_once_with_the_amount_and_the_order_link(
    engine: AsyncEngine,
) -> None:
    to = unique_address("refunded")
    order_id = new_id()
    link = f"{public_url()}/order/{order_id}?session_id=cs_test_abc"
    partial = OrderRefunded(
        order_id=order_id,
        email=to,
        amount=1250,
        amount_refunded=1250,
        total=5850,
        currency="USD",
        fully_refunded=False,
        order_url=link,
    )
    event = envelope(partial)
    await handle(engine, queue_refund_notice, event, partial)
    await handle(engine, queue_refund_notice, event, partial)  # redelivered

    (mail,) = await emails_to(engine, to)
    assert mail.template == "refunded"
    assert (
        mail.subject == f"We have refunded $12.50 of your Ember order {order_id.hex[-8:].upper()}"
    )
    assert "$12.50 of $58.50 is refunded" in mail.text
    assert link in mail.text
    assert "cs_test_abc" in mail.html

    rest = OrderRefunded(
        order_id=order_id,
        email=to,
        amount=4600,
        amount_refunded=5850,
        total=5850,
        currency="USD",
        fully_refunded=True,
    )
    await handle(engine, queue_refund_notice, envelope(rest), rest)
    latest = [m for m in await emails_to(engine, to) if "$46.00" in m.subject]
    assert len(latest) == 1
    assert "The whole order is refunded." in latest[0].text
    # Without the producer's link, the plain order page (a member signs in to see it).
    assert f"/order/{order_id}" in latest[0].text


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
    data = order_paid(to)

    class Boom(Exception):
        pass

    async def then_fail(event: Any, payload: Any, session: AsyncSession, public_url: str) -> None:
        await queue_order_confirmation(event, payload, session, public_url)
        raise Boom

    with contextlib.suppress(Boom):
        await handle(engine, then_fail, envelope(data), data)
    # The mail was in the handler's transaction, which rolled back: the redelivery queues it.
    assert await emails_to(engine, to) == []
