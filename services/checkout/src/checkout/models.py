"""Tables of the checkout service, all in Postgres schema ``checkout``.

- ``checkout_sessions``: one per started checkout (one order id), with the priced line snapshot,
  totals, the shipping address, catalog's reservation and Stripe's session. Its ``status`` moves
  only forward (see :mod:`checkout.webhooks.machine`) and only from verified webhooks, apart from
  ``open`` at creation.
- ``provider_events``: every Stripe event id handled, UNIQUE, written in the same transaction as
  the event's effect, so a redelivery changes nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import TYPE_CHECKING, Any

from advanced_alchemy.types import DateTimeUTC
from ember_shared.db import EntityColumns, service_base
from sqlalchemy import BigInteger, CheckConstraint, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

if TYPE_CHECKING:
    from sqlalchemy.orm import DeclarativeBase

    class Base(DeclarativeBase):
        """What ``service_base`` makes, spelled out for the type checker."""

else:
    Base = service_base("checkout")


class CheckoutStatus(enum.StrEnum):
    OPEN = "open"
    PAYMENT_PENDING = "payment_pending"
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


_STATUSES = ", ".join(f"'{s.value}'" for s in CheckoutStatus)


class CheckoutSession(EntityColumns, Base):
    __tablename__ = "checkout_sessions"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUSES})", name="status_known"),
        CheckConstraint(
            "subtotal >= 0 AND shipping >= 0 AND total = subtotal + shipping", name="totals"
        ),
        CheckConstraint("amount_refunded >= 0 AND amount_refunded <= total", name="refund_bounded"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_code"),
        Index(
            "ix_checkout_sessions_cart_open", "cart_id", postgresql_where=text("status = 'open'")
        ),
        Index("ix_checkout_sessions_user", "user_id", "created_at"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    status: Mapped[str] = mapped_column(String(30), default=CheckoutStatus.OPEN.value)
    user_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    cart_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    #: SHA-256 of the guest's ``ember_cart`` cookie, so that guest may read the session's status.
    cart_token_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    #: Digest of what was priced (lines, prices, address, email): the same checkout twice is one.
    content_hash: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(320))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    subtotal: Mapped[int] = mapped_column(BigInteger)
    shipping: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    shipping_address: Mapped[dict[str, Any]] = mapped_column(JSONB)
    reservation_id: Mapped[uuid.UUID]
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    stripe_session_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(
        String(255), default=None, index=True
    )
    checkout_url: Mapped[str] = mapped_column(Text)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    paid_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    status_reason: Mapped[str] = mapped_column(String(300), default="", server_default="")
    #: Something staff must look at (an amount that differs, a payment after expiry...).
    attention: Mapped[str] = mapped_column(Text, default="", server_default="")


class ProviderEvent(Base):
    __tablename__ = "provider_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(String(30), default="stripe")
    type: Mapped[str] = mapped_column(String(120))
    object_id: Mapped[str] = mapped_column(String(255), default="")
    checkout_session_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
    #: What handling it did: ``paid``, ``ignored: ...``, ``unhandled type``...
    outcome: Mapped[str] = mapped_column(String(300), default="")
    stripe_created: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )
    received_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now()
    )
