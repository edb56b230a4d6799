"""Events the notifier handles: each queues one mail in the outbox (never sends it).

The mail's idempotency key is ``{event id}:{template}``: a redelivered event finds its mail
already queued and adds nothing (the consumer's handled-events record says the same).
"""

from __future__ import annotations

import uuid

from ember_shared.events import Envelope, EventHandlers
from ember_shared.events.contracts import (
    OrderDelivered,
    OrderShipped,
    PasswordResetRequested,
    PaymentSucceeded,
    SignUpForExistingAccount,
    SignUpRequested,
    SubscriptionInvoicePaid,
    UserRegistered,
)
from ember_shared.settings import service_settings
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.emails import compose
from notifier.emails.rendering import Template
from notifier.emails.services import Queued, queue_email

handlers = EventHandlers("notifier")


def idempotency_key(event: Envelope, template: Template) -> str:
    return f"{event.id}:{template.value}"


def _public_url() -> str:
    return service_settings("notifier").app.public_url


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


@handlers.on(PaymentSucceeded)
async def queue_order_confirmation(
    event: Envelope, data: PaymentSucceeded, session: AsyncSession
) -> None:
    context = compose.order_confirmation(data, _public_url())
    await _queue(session, event, Template.ORDER_CONFIRMATION, data.email, context)


@handlers.on(SubscriptionInvoicePaid)
async def queue_subscription_order_confirmation(
    event: Envelope, data: SubscriptionInvoicePaid, session: AsyncSession
) -> None:
    context = compose.order_confirmation(data, _public_url())
    await _queue(session, event, Template.ORDER_CONFIRMATION, data.email, context)


@handlers.on(OrderShipped)
async def queue_shipment_notice(event: Envelope, data: OrderShipped, session: AsyncSession) -> None:
    context = compose.shipment(data, _public_url())
    await _queue(session, event, Template.SHIPMENT, data.email, context)


@handlers.on(OrderDelivered)
async def queue_delivery_notice(
    event: Envelope, data: OrderDelivered, session: AsyncSession
) -> None:
    context = compose.delivered(data, _public_url())
    await _queue(session, event, Template.DELIVERED, data.email, context)


@handlers.on(SignUpRequested)
async def queue_sign_up_link(event: Envelope, data: SignUpRequested, session: AsyncSession) -> None:
    context = compose.sign_up(data, _public_url())
    await _queue(session, event, Template.SIGN_UP, data.email, context)


@handlers.on(SignUpForExistingAccount)
async def queue_existing_account_notice(
    event: Envelope, data: SignUpForExistingAccount, session: AsyncSession
) -> None:
    context = compose.existing_account(data, _public_url())
    await _queue(session, event, Template.EXISTING_ACCOUNT, data.email, context)


@handlers.on(PasswordResetRequested)
async def queue_password_reset(
    event: Envelope, data: PasswordResetRequested, session: AsyncSession
) -> None:
    context = compose.password_reset(data, _public_url())
    await _queue(session, event, Template.PASSWORD_RESET, data.email, context)


@handlers.on(UserRegistered)
async def queue_welcome(event: Envelope, data: UserRegistered, session: AsyncSession) -> None:
    context = compose.welcome(data, _public_url())
    await _queue(session, event, Template.WELCOME, data.email, context)
