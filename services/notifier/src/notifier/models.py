"""Tables of the notifier service, all in Postgres schema ``notifier``.

``pending_emails`` is the notifier's outbox: an event handler renders a mail and inserts it
here (nothing else ever sends mail, invariant 8); the worker claims due rows, sends them through
Resend and records each try in ``delivery_attempts``. A mail that keeps failing ends ``dead``
(the ``dead_letter_emails`` view lists them). ``suppressions`` holds addresses we must not mail
again (hard bounces, complaints, staff); ``webhook_events`` dedupes Resend's webhooks by svix id.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from advanced_alchemy.types import DateTimeUTC
from ember_shared.db import EntityColumns, service_base
from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

if TYPE_CHECKING:
    from sqlalchemy.orm import DeclarativeBase

    class Base(DeclarativeBase):
        """What ``service_base`` makes, spelled out for the type checker."""

else:
    Base = service_base("notifier")

MAX_EMAIL_LENGTH = 320
#: What we accept as an email address: one @, a dot in the domain, no spaces, no control
#: characters (Postgres refuses NUL) and nothing that would split or quote an address list.
ADDRESS_PATTERN = (
    r"^[^@\s<>\"',;\x00-\x1f\x7f]+@[^@\s<>\"',;\x00-\x1f\x7f]+\.[^@\s<>\"',;\x00-\x1f\x7f]+$"
)
#: Free text in a query or path: anything printable (Postgres refuses NUL in text).
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f]*$"


class EmailStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    #: The last try failed in a way worth retrying; ``next_attempt_at`` says when.
    FAILED = "failed"
    DEAD = "dead"
    SUPPRESSED = "suppressed"


class AttemptOutcome(StrEnum):
    SENT = "sent"
    RETRYABLE_ERROR = "retryable_error"
    PERMANENT_ERROR = "permanent_error"
    SUPPRESSED = "suppressed"


class SuppressionReason(StrEnum):
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"


class DeliveryStatus(StrEnum):
    """What Resend reported after accepting the mail (its webhooks)."""

    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    DELAYED = "delivery_delayed"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class PendingEmail(EntityColumns, Base):
    __tablename__ = "pending_emails"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        CheckConstraint(_in("status", EmailStatus), name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        # The worker's claim query reads exactly this: due rows, oldest first.
        Index(
            "ix_pending_emails_due",
            "next_attempt_at",
            postgresql_where=sql("status IN ('queued', 'failed', 'sending')"),
        ),
        Index("ix_pending_emails_status_created", "status", "created_at"),
        Index("ix_pending_emails_provider_message_id", "provider_message_id"),
    )

    #: ``{event id}:{template}`` for mail caused by an event: a redelivered event adds nothing.
    idempotency_key: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(String(50))
    to_email: Mapped[str] = mapped_column(String(MAX_EMAIL_LENGTH))
    subject: Mapped[str] = mapped_column(String(300))
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=EmailStatus.QUEUED.value)
    #: Tries so far, over the mail's whole life (each numbers a row of ``delivery_attempts``).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=sql("0"))
    #: ``attempts`` when staff last sent it back to the queue: a retry gets a fresh set of tries.
    attempts_at_requeue: Mapped[int] = mapped_column(Integer, default=0, server_default=sql("0"))
    next_attempt_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now()
    )
    #: While ``sending``: the claim's token and how long it holds (a dead worker's claim lapses).
    claim_token: Mapped[uuid.UUID | None] = mapped_column(default=None)
    locked_until: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(100), default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    delivery_status: Mapped[str | None] = mapped_column(String(30), default=None)
    delivery_updated_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )
    source_event_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    source_event_type: Mapped[str | None] = mapped_column(String(120), default=None)
    #: A live link (sign-up, reset, a guest's order) sealed with the notifier's key; the body
    #: holds a placeholder in its place. The worker opens it only to send, and drops it once sent.
    sealed_link: Mapped[str | None] = mapped_column(Text, default=None)
    #: W3C trace context of the handler that queued it: the send shows in the event's trace.
    traceparent: Mapped[str | None] = mapped_column(String(100), default=None)

    delivery_attempts: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="email",
        order_by="DeliveryAttempt.attempt",
        lazy="noload",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class DeliveryAttempt(EntityColumns, Base):
    __tablename__ = "delivery_attempts"
    __table_args__ = (
        UniqueConstraint("email_id", "attempt"),
        CheckConstraint(_in("outcome", AttemptOutcome), name="outcome_known"),
    )

    # No index of its own: the unique (email_id, attempt) leads with it (one more index written
    # by every attempt for no read).
    email_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notifier.pending_emails.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(30))
    #: The provider's HTTP status (None when no answer came: timeout, connection refused).
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(100), default=None)

    email: Mapped[PendingEmail] = relationship(back_populates="delivery_attempts", lazy="noload")


class Suppression(EntityColumns, Base):
    __tablename__ = "suppressions"
    __table_args__ = (
        UniqueConstraint("email"),
        CheckConstraint(_in("reason", SuppressionReason), name="reason_known"),
        # Addresses are kept lower-cased so that one UNIQUE covers every spelling.
        CheckConstraint("email = lower(email)", name="email_lower"),
    )

    email: Mapped[str] = mapped_column(String(MAX_EMAIL_LENGTH))
    reason: Mapped[str] = mapped_column(String(20))
    #: Where it came from: ``resend-webhook:<svix id>`` or ``admin:<user id>``.
    source: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text, default="", server_default="")


class WebhookEvent(Base):
    """Every Resend webhook we accepted, once: its svix id is the primary key."""

    __tablename__ = "webhook_events"

    svix_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(80))
    received_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now()
    )
    provider_message_id: Mapped[str | None] = mapped_column(String(100), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)


# Admins look mail up by address, whatever its spelling.
Index("ix_pending_emails_to_email_lower", func.lower(PendingEmail.to_email))

#: Created by the migration; dead mail stays in ``pending_emails`` and this is a window on it.
DEAD_LETTER_VIEW = "dead_letter_emails"
