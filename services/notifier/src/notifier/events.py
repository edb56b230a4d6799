"""Events the notifier handles: each queues one mail in the outbox (never sends it).

The mail's idempotency key is ``{event id}:{template}``: a redelivered event finds its mail
already queued and adds nothing (the consumer's handled-events record says the same).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ember_shared.events import Envelope, EventData, EventHandlers
from ember_shared.events.contracts import (
    OrderDelivered,
    OrderPaid,
    OrderRefunded,
    OrderShipped,
    PasswordResetRequested,
    SignUpForExistingAccount,
    SignUpRequested,
    SubscriptionPaymentFailed,
    UserRegistered,
)
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.emails import compose
from notifier.emails.rendering import Template
from notifier.emails.services import Queued, queue_email

handlers = EventHandlers("notifier")
#: How many events of one type a replica queues mails for at once.
MAIL_CONCURRENCY = 4
D = TypeVar("D", bound=EventData)


def idempotency_key(event: Envelope, template: Template) -> str:
    return f"{event.id}:{template.value}"


async def _queue(
    session: AsyncSession, event: Envelope, template: Template, to: str, context: dict[str, object]
) -> Queued:
    try:
        event_id: uuid.UUID | None = uuid.UUID(event.id)
    except ValueError:
        event_id = None
    return await queue_email(
        session,
        template=template,
        to=to,
        context=context,
        idempotency_key=idempotency_key(event, template),
        source_event_id=event_id,
        source_event_type=event.type,
    )


def recipient(data: EventData) -> str:
    """Every event the notifier mails names the address it goes to in ``email``."""
    email = getattr(data, "email", None)
    if not isinstance(email, str):
        raise TypeError(f"{type(data).__name__} names no email to mail")
    return email


def mail_on(
    data_type: type[D], template: Template, context: Callable[[D, str], dict[str, Any]], name: str
) -> Callable[[Envelope, D, AsyncSession, str], Awaitable[None]]:
    """Registers the handler that queues ``template`` to ``data.email`` for each ``data_type``.

    ``name`` is what the consumer records as done for each event: renaming it would mail again.
    ``public_url`` (the shop's address, for the mail's links) is the app's event dependency.
    """

    async def queue(event: Envelope, data: D, session: AsyncSession, public_url: str) -> None:
        await _queue(session, event, template, recipient(data), context(data, public_url))

    queue.__name__ = queue.__qualname__ = name
    # Each event queues its own mail (keyed by the event's id): no order among them to keep,
    # so one need not wait for the transactions of those before it.
    return handlers.on(data_type, name=f"{handlers.service}.{name}", concurrency=MAIL_CONCURRENCY)(
        queue
    )


# The confirmation follows the order (orders' order.paid, one per paid order, a one-off or a
# subscription's delivery), never the payment: a payment event that orders refused and
# dead-lettered made no order, and must mail nobody.
queue_order_confirmation = mail_on(
    OrderPaid,
    Template.ORDER_CONFIRMATION,
    compose.order_confirmation,
    "queue_order_confirmation",
)
queue_shipment_notice = mail_on(
    OrderShipped, Template.SHIPMENT, compose.shipment, "queue_shipment_notice"
)
queue_delivery_notice = mail_on(
    OrderDelivered, Template.DELIVERED, compose.delivered, "queue_delivery_notice"
)
# Sent when Stripe confirmed the refund (orders' order.refunded), never when staff asked.
queue_refund_notice = mail_on(
    OrderRefunded, Template.REFUNDED, compose.refunded, "queue_refund_notice"
)
queue_subscription_payment_failed = mail_on(
    SubscriptionPaymentFailed,
    Template.SUBSCRIPTION_PAYMENT_FAILED,
    compose.subscription_payment_failed,
    "queue_subscription_payment_failed",
)
queue_sign_up_link = mail_on(
    SignUpRequested, Template.SIGN_UP, compose.sign_up, "queue_sign_up_link"
)
queue_existing_account_notice = mail_on(
    SignUpForExistingAccount,
    Template.EXISTING_ACCOUNT,
    compose.existing_account,
    "queue_existing_account_notice",
)
queue_password_reset = mail_on(
    PasswordResetRequested, Template.PASSWORD_RESET, compose.password_reset, "queue_password_reset"
)
queue_welcome = mail_on(UserRegistered, Template.WELCOME, compose.welcome, "queue_welcome")
