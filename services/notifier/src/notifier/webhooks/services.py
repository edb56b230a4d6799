"""What a verified Resend webhook changes: delivery status, and the suppression list.

A hard bounce or a complaint puts the address on the suppression list, so no later mail is sent
to it. Each webhook is applied once: its svix id is inserted first, in the same transaction as
its effect, and a redelivery finds it there and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
from functools import cached_property
from typing import Any

import msgspec
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from notifier.emails.repositories import PendingEmailRepository
from notifier.emails.services import valid_address
from notifier.models import DeliveryStatus, SuppressionReason
from notifier.suppressions.services import SuppressionService
from notifier.webhooks.repositories import WebhookEventRepository, insert_once_and_report
from notifier.webhooks.schemas import ResendWebhook, WebhookReceipt

log = structlog.get_logger("notifier.webhooks")

#: The event types that change something here; any other is only recorded. A Resend endpoint
#: subscribes to these (README; ``make run``'s stand-in too).
ACTED_ON = frozenset(
    {"email.delivered", "email.delivery_delayed", "email.bounced", "email.complained"}
)

#: Reports that never replace one already set (a later "delivered" must not hide a bounce).
REPORTS_KEPT_FIRST = {
    "email.delivered": DeliveryStatus.DELIVERED.value,
    "email.delivery_delayed": DeliveryStatus.DELAYED.value,
}
#: Bounce types that mean the address will never accept mail (Resend's own rule).
HARD_BOUNCES = frozenset({"permanent", ""})


class InvalidPayload(Exception):
    pass


def parse(body: bytes) -> tuple[ResendWebhook, dict[str, Any]]:
    if b"\\u0000" in body:
        # Postgres cannot keep NUL in JSONB (and no Resend event carries one).
        raise InvalidPayload("the body holds a NUL character")
    try:
        raw = msgspec.json.decode(body)
        if not isinstance(raw, dict):
            raise InvalidPayload("the body is not a JSON object")
        return msgspec.convert(raw, ResendWebhook), raw
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidPayload(str(exc)) from exc


def _mailable(addresses: list[str]) -> list[str]:
    return [a.strip() for a in addresses if valid_address(a.strip())]


class WebhookService:
    """``session`` is the request's (its transaction committed before the answer); a delivery
    report, one statement, runs on a connection of ``autocommit`` (the service's engine in
    autocommit) when one is given: without BEGIN and COMMIT around it (two round trips less on
    every mail's report)."""

    def __init__(self, session: AsyncSession, autocommit: AsyncEngine | None = None) -> None:
        self.session = session
        self.autocommit = autocommit

    # Made when a webhook needs them: a delivery report (one per mail sent) needs none, and
    # each repository builds its base statement as it is made.
    @cached_property
    def events(self) -> WebhookEventRepository:
        return WebhookEventRepository(session=self.session, auto_commit=False)

    @cached_property
    def emails(self) -> PendingEmailRepository:
        return PendingEmailRepository(session=self.session, auto_commit=False)

    @cached_property
    def suppressions(self) -> SuppressionService:
        return SuppressionService(self.session)

    async def receive(
        self, svix_id: str, event: ResendWebhook, raw: dict[str, Any]
    ) -> WebhookReceipt:
        message_id = event.data.email_id or None
        reported = REPORTS_KEPT_FIRST.get(event.type)
        if reported is not None and message_id:
            # The common case (one per mail sent): recorded and applied in one statement.
            report = functools.partial(
                insert_once_and_report,
                svix_id=svix_id,
                type_=event.type,
                provider_message_id=message_id,
                payload=raw,
                delivery_status=reported,
                at=dt.datetime.now(dt.UTC),
            )
            if self.autocommit is None:
                first = await report(self.session)
            else:
                async with self.autocommit.connect() as connection:
                    first = await report(connection)
            if first:
                log.info("resend_webhook", svix_id=svix_id, type=event.type, email_id=message_id)
                return WebhookReceipt(received=True, type=event.type)
            log.info("resend_webhook_duplicate", svix_id=svix_id, type=event.type)
            return WebhookReceipt(received=True, duplicate=True, type=event.type)
        first = await self.events.insert_once(
            svix_id=svix_id, type_=event.type, provider_message_id=message_id, payload=raw
        )
        if not first:
            log.info("resend_webhook_duplicate", svix_id=svix_id, type=event.type)
            return WebhookReceipt(received=True, duplicate=True, type=event.type)
        now = dt.datetime.now(dt.UTC)
        source = f"resend-webhook:{svix_id}"
        if event.type == "email.bounced":
            bounce = event.data.bounce
            kind = (bounce.type if bounce else "").strip().lower()
            if message_id:
                await self.emails.set_delivery(
                    message_id, DeliveryStatus.BOUNCED, now, overwrite=True
                )
            if kind in HARD_BOUNCES:
                note = bounce.message if bounce else ""
                for address in _mailable(event.data.recipients):
                    await self.suppressions.add_from_provider(
                        address, SuppressionReason.BOUNCE, source, note[:500]
                    )
        elif event.type == "email.complained":
            if message_id:
                await self.emails.set_delivery(
                    message_id, DeliveryStatus.COMPLAINED, now, overwrite=True
                )
            for address in _mailable(event.data.recipients):
                await self.suppressions.add_from_provider(
                    address, SuppressionReason.COMPLAINT, source, "Marked as spam by the recipient."
                )
        log.info("resend_webhook", svix_id=svix_id, type=event.type, email_id=message_id)
        return WebhookReceipt(received=True, type=event.type)
