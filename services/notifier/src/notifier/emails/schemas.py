"""What the admin email API answers (msgspec structs, documented in OpenAPI)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec
from ember_shared.pagination import Page

from notifier.models import DeliveryAttempt, PendingEmail

EmailStatusName = Literal["queued", "sending", "sent", "failed", "dead", "suppressed"]
PageNumber = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
PageSize = Annotated[int, msgspec.Meta(ge=1, le=100)]


class DeliveryAttemptOut(msgspec.Struct, kw_only=True):
    attempt: int
    started_at: dt.datetime
    duration_ms: int
    outcome: Literal["sent", "retryable_error", "permanent_error", "suppressed"]
    status_code: int | None
    error: str | None
    provider_message_id: str | None

    @classmethod
    def of(cls, row: DeliveryAttempt) -> DeliveryAttemptOut:
        return cls(
            attempt=row.attempt,
            started_at=row.started_at,
            duration_ms=row.duration_ms,
            outcome=row.outcome,  # type: ignore[arg-type]
            status_code=row.status_code,
            error=row.error,
            provider_message_id=row.provider_message_id,
        )


class EmailSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    template: str
    to: str
    subject: str
    status: EmailStatusName
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    provider_message_id: str | None
    sent_at: dt.datetime | None
    delivery_status: Literal["delivered", "bounced", "complained", "delivery_delayed"] | None = None
    delivery_updated_at: dt.datetime | None = None
    source_event_id: uuid.UUID | None = None
    source_event_type: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def fields_of(cls, row: PendingEmail) -> dict[str, object]:
        return {
            "id": row.id,
            "template": row.template,
            "to": row.to_email,
            "subject": row.subject,
            "status": row.status,
            "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at,
            "last_error": row.last_error,
            "provider_message_id": row.provider_message_id,
            "sent_at": row.sent_at,
            "delivery_status": row.delivery_status,
            "delivery_updated_at": row.delivery_updated_at,
            "source_event_id": row.source_event_id,
            "source_event_type": row.source_event_type,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }

    @classmethod
    def of(cls, row: PendingEmail) -> EmailSummary:
        return cls(**cls.fields_of(row))  # type: ignore[arg-type]


class EmailDetail(EmailSummary, kw_only=True):
    html: str
    text: str
    delivery_attempts: list[DeliveryAttemptOut]

    @classmethod
    def of(cls, row: PendingEmail) -> EmailDetail:
        return cls(
            **cls.fields_of(row),  # type: ignore[arg-type]
            html=row.html,
            text=row.text,
            delivery_attempts=[DeliveryAttemptOut.of(a) for a in row.delivery_attempts],
        )


EmailPage = Page[EmailSummary]
