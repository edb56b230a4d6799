"""``POST /api/webhooks/stripe``: Stripe's deliveries. No cookies, no token: the signature is
the credential, checked on the raw body before anything else."""

from __future__ import annotations

from typing import Any

import msgspec
from ember_shared.metrics import record_webhook
from ember_shared.problems import Problem
from litestar import Request, Response, post
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from checkout.webhooks.services import WebhookService

MAX_WEBHOOK_BYTES = 512 * 1024


class WebhookReceived(msgspec.Struct, kw_only=True):
    received: bool
    event_id: str
    duplicate: bool
    outcome: str


@post(
    "/api/webhooks/stripe",
    summary="Stripe webhook endpoint",
    description=(
        "Send Stripe events here (``checkout.session.completed``, ``checkout.session.async_payment_"
        "succeeded``/``_failed``, ``checkout.session.expired``, ``charge.refunded``; for subscriptions "
        "``customer.subscription.created``/``updated``/``deleted``, ``invoice.paid``, "
        "``invoice.payment_failed``). The "
        "``Stripe-Signature`` header must verify on the raw body within the tolerance, or the "
        "answer is 400 and nothing changes. A repeated event id is answered 200 and does nothing."
    ),
    tags=["webhooks"],
    status_code=200,
    request_max_body_size=MAX_WEBHOOK_BYTES,
    exclude_from_auth=True,
    exclude_from_csrf=True,
)
async def stripe_webhook(
    request: Request[Any, Any, Any], db_session: AsyncSession, state: State
) -> Response[WebhookReceived]:
    payload = await request.body()
    try:
        received = await WebhookService(db_session, state.stripe, state.checkout_changes).receive(
            payload, request.headers.get("stripe-signature")
        )
    except Problem:
        record_webhook("checkout", "stripe", "rejected")
        raise
    record_webhook("checkout", "stripe", received.outcome)
    return Response(
        WebhookReceived(
            received=True,
            event_id=received.event_id,
            duplicate=received.duplicate,
            outcome=received.outcome,
        )
    )
