"""``POST /api/webhooks/resend``: Resend tells us what became of the mail we sent."""

from __future__ import annotations

from typing import Any

from ember_shared.metrics import record_webhook
from ember_shared.problems import Problem
from litestar import Controller, Request, post
from litestar.openapi.spec import Example
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.settings import NotifierSettings
from notifier.webhooks import svix
from notifier.webhooks.schemas import WebhookReceipt
from notifier.webhooks.services import InvalidPayload, WebhookService, parse


class ResendWebhookController(Controller):
    path = "/api/webhooks/resend"
    tags = ["webhooks"]

    @post(
        "/",
        summary="Receive a Resend webhook (Svix-signed): deliveries, bounces, complaints.",
        description=(
            "The Svix signature over the raw body is checked before anything else "
            "(headers svix-id, svix-timestamp, svix-signature; 5 minutes' tolerance); a "
            "request that fails it gets 400 and changes nothing. Each svix-id is applied once."
        ),
        status_code=200,
        exclude_from_auth=True,
        exclude_from_csrf=True,
    )
    async def receive(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        svix_id: str = Parameter(header="svix-id", required=False, default="", max_length=100),
        svix_timestamp: str = Parameter(
            header="svix-timestamp", required=False, default="", max_length=20
        ),
        svix_signature: str = Parameter(
            header="svix-signature",
            required=False,
            default="",
            max_length=2000,
            examples=[Example(value="v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=")],
        ),
    ) -> WebhookReceipt:
        settings: NotifierSettings = request.app.state.notifier_settings
        body = await request.body()
        try:
            msg_id = svix.verify(
                settings.signing_secret,
                {
                    "svix-id": svix_id,
                    "svix-timestamp": svix_timestamp,
                    "svix-signature": svix_signature,
                },
                body,
                tolerance_s=settings.webhook_tolerance_s,
            )
        except svix.SignatureError as exc:
            record_webhook("notifier", "resend", "rejected")
            raise Problem(
                400, "webhook-signature", f"The webhook signature is not valid: {exc}."
            ) from exc
        try:
            event, raw = parse(body)
        except InvalidPayload as exc:
            record_webhook("notifier", "resend", "rejected")
            raise Problem(
                400, "webhook-payload", "The webhook body is not a Resend event."
            ) from exc
        receipt = await WebhookService(db_session, request.app.state.db_autocommit).receive(
            msg_id, event, raw
        )
        record_webhook("notifier", "resend", "duplicate" if receipt.duplicate else "applied")
        return receipt
