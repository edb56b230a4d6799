"""Tables of the checkout service, all in Postgres schema ``checkout``.

- ``checkout_sessions``: one per started checkout (one order id), with the priced line snapshot,
  totals, the shipping address, catalog's reservation and Stripe's session. Its ``status`` moves
  only forward (see :mod:`checkout.webhooks.machine`) and only from verified webhooks, apart from
  ``open`` at creation.
- ``subscriptions`` and ``subscription_invoices``: coffee subscriptions billed by Stripe, and
  each of their invoices (a paid one carries the order id it becomes).
- ``provider_events``: every Stripe event id handled, UNIQUE, written in the same transaction as
  the event's effect, so a redelivery changes nothing.
- ``hold_claims``: a checkout being started, admitted within its client's and email's stock-hold
  budget, until its session row is written.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import TYPE_CHECKING, Any

from advanced_alchemy.types import DateTimeUTC
from ember_shared.db import EntityColumns, service_base
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
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
            "subtotal >= 0 AND shipping >= 0 AND discount >= 0 AND discount <= subtotal "
            "AND tax >= 0 AND total = subtotal - discount + shipping + tax",
            name="totals",
        ),
        CheckConstraint("amount_refunded >= 0 AND amount_refunded <= total", name="refund_bounded"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_code"),
        Index(
            "ix_checkout_sessions_cart_open", "cart_id", postgresql_where=text("status = 'open'")
        ),
        Index("ix_checkout_sessions_user", "user_id", "created_at"),
        # The hold budgets count a client's and an address's open checkouts.
        Index(
            "ix_checkout_sessions_client_open",
            "client_ip",
            postgresql_where=text("status = 'open'"),
        ),
        Index(
            "ix_checkout_sessions_email_open",
            text("lower(email)"),
            postgresql_where=text("status = 'open'"),
        ),
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
    #: The shopper's address when it started (the storefront forwards it): budgets stock holds.
    client_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    #: Taken off the subtotal by ``discount_code`` (spread over the lines' ``discount``).
    discount: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    discount_code: Mapped[str] = mapped_column(String(40), default="", server_default="")
    #: Stripe Tax's amount, as Stripe computed it for this session (0 with tax off).
    tax: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    #: The shipping rate the shopper picked (its code and name when picked).
    shipping_rate: Mapped[str] = mapped_column(String(40), default="", server_default="")
    shipping_name: Mapped[str] = mapped_column(String(100), default="", server_default="")


class ShippingRate(EntityColumns, Base):
    """A way to ship (standard, express...) at a price in the shop's currency, free from a
    subtotal on (``free_over``), to the countries listed (none listed: everywhere)."""

    __tablename__ = "shipping_rates"
    __table_args__ = (
        CheckConstraint("price >= 0 AND price <= 1000000", name="price_range"),
        CheckConstraint("free_over IS NULL OR free_over > 0", name="free_over_positive"),
        CheckConstraint("code ~ '^[a-z0-9][a-z0-9-]{0,39}$'", name="code_format"),
    )

    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    price: Mapped[int] = mapped_column(BigInteger)
    free_over: Mapped[int | None] = mapped_column(BigInteger, default=None)
    countries: Mapped[list[str]] = mapped_column(
        ARRAY(String(2)), default=list, server_default=text("'{}'")
    )
    min_days: Mapped[int | None] = mapped_column(default=None)
    max_days: Mapped[int | None] = mapped_column(default=None)
    position: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))


class DiscountCode(EntityColumns, Base):
    """A code staff hand out: percent or amount off the eligible lines, within its window and
    limits. ``uses`` counts paid checkouts; ``holds`` the open ones that carry it. A checkout
    takes a hold with one conditional UPDATE, and the CHECK keeps ``uses + holds`` within
    ``max_uses`` whatever races: a use is never handed out twice."""

    __tablename__ = "discount_codes"
    __table_args__ = (
        CheckConstraint(
            "(percent_off IS NULL) <> (amount_off IS NULL)", name="one_kind_of_discount"
        ),
        CheckConstraint("percent_off IS NULL OR percent_off BETWEEN 1 AND 100", name="percent"),
        CheckConstraint("amount_off IS NULL OR amount_off > 0", name="amount_positive"),
        CheckConstraint("min_subtotal >= 0", name="min_subtotal_positive"),
        CheckConstraint(
            "uses >= 0 AND holds >= 0 AND (max_uses IS NULL OR uses + holds <= max_uses)",
            name="uses_within_limit",
        ),
        CheckConstraint("code ~ '^[A-Z0-9][A-Z0-9_-]{0,39}$'", name="code_format"),
    )

    code: Mapped[str] = mapped_column(String(40), unique=True)
    description: Mapped[str] = mapped_column(String(200), default="", server_default="")
    percent_off: Mapped[int | None] = mapped_column(default=None)
    amount_off: Mapped[int | None] = mapped_column(BigInteger, default=None)
    min_subtotal: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    starts_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    ends_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    max_uses: Mapped[int | None] = mapped_column(default=None)
    max_uses_per_customer: Mapped[int | None] = mapped_column(default=None)
    first_order_only: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    #: The products it takes money off (none listed here nor in ``category_ids``: every product).
    product_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid()), default=list, server_default=text("'{}'")
    )
    #: The catalog categories whose products it takes money off, as well as ``product_ids``'
    #: (neither listed: every product).
    category_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid()), default=list, server_default=text("'{}'")
    )
    active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    uses: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    holds: Mapped[int] = mapped_column(default=0, server_default=text("0"))


class DiscountHold(EntityColumns, Base):
    """One checkout's claim on a use of a code: ``held`` while it may still be paid, then
    ``used`` (paid: counted in the code's ``uses``) or ``released`` (expired, failed, or its
    start failed), each move made once, with the code's counters in the same transaction."""

    __tablename__ = "discount_holds"
    __table_args__ = (
        CheckConstraint("status IN ('held', 'used', 'released')", name="status_known"),
        Index("ix_discount_holds_customer", "code_id", "customer"),
        Index("ix_discount_holds_lapsing", "expires_at", postgresql_where=text("status = 'held'")),
    )

    code_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("checkout.discount_codes.id"))
    order_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    #: ``user:<id>`` or ``email:<lower-case address>``: what the per-customer limit counts.
    customer: Mapped[str] = mapped_column(String(330))
    status: Mapped[str] = mapped_column(String(10), default="held")
    amount: Mapped[int] = mapped_column(BigInteger)
    #: A hold whose checkout never got written (its request died) is released after this.
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))


class HoldClaim(Base):
    """A checkout admitted within its client address's and email's budget of held stock, while it
    is being started: written and committed in a short transaction of its own (the budget is
    decided under a per-subject lock held only for that), deleted in the transaction that writes
    the checkout's session row (which counts from then on), deleted at once when the start fails,
    and ignored after ``expires_at`` should its request have died between the two.
    """

    __tablename__ = "hold_claims"
    __table_args__ = (
        CheckConstraint("units > 0", name="units_positive"),
        Index("ix_hold_claims_client_ip", "client_ip"),
        Index("ix_hold_claims_email", text("lower(email)")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    cart_id: Mapped[uuid.UUID]
    client_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    email: Mapped[str] = mapped_column(String(320))
    units: Mapped[int]
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now()
    )


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


class SubscriptionStatus(enum.StrEnum):
    """Ours at creation (``incomplete``: the shopper has not paid yet), then Stripe's own."""

    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    PAUSED = "paused"
    CANCELED = "canceled"


_SUBSCRIPTION_STATUSES = ", ".join(f"'{s.value}'" for s in SubscriptionStatus)


class Subscription(EntityColumns, Base):
    """A shopper's coffee subscription: one variant of a product ("Espresso / 1 kg"), a
    quantity, a cadence, an address.

    The price is catalog's (the variant's) at subscription time, billed by Stripe each period.
    A subscription from before variants has its product's default variant (``variant_id`` =
    ``product_id``). ``status``,
    ``current_period_end`` and ``cancel_at_period_end`` change only from verified webhooks;
    ``last_event_created`` is the Stripe timestamp of the last subscription event applied, so a
    late, older one changes nothing.
    """

    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint(f"status IN ({_SUBSCRIPTION_STATUSES})", name="subscription_status_known"),
        CheckConstraint("quantity BETWEEN 1 AND 10", name="subscription_quantity"),
        CheckConstraint("interval IN ('week', 'month')", name="subscription_interval"),
        CheckConstraint("interval_count BETWEEN 1 AND 4", name="subscription_interval_count"),
        CheckConstraint("unit_price >= 0", name="subscription_unit_price"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="subscription_currency_code"),
        Index("ix_subscriptions_user", "user_id", "created_at"),
    )

    user_id: Mapped[uuid.UUID]
    email: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(30), default=SubscriptionStatus.INCOMPLETE.value)
    product_id: Mapped[uuid.UUID]
    product_slug: Mapped[str] = mapped_column(String(200))
    product_name: Mapped[str] = mapped_column(String(300))
    #: The variant delivered, with its SKU and option values as catalog had them when it was
    #: chosen; a change of variant follows Stripe's webhook as the quantity does.
    variant_id: Mapped[uuid.UUID]
    sku: Mapped[str] = mapped_column(String(120), default="", server_default="")
    variant_title: Mapped[str] = mapped_column(String(300), default="", server_default="")
    option_values: Mapped[list[str]] = mapped_column(
        ARRAY(String(100)), default=list, server_default=text("'{}'")
    )
    image_url: Mapped[str] = mapped_column(Text, default="", server_default="")
    unit_price: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str] = mapped_column(String(10))
    interval_count: Mapped[int]
    shipping_address: Mapped[dict[str, Any]] = mapped_column(JSONB)
    stripe_checkout_session_id: Mapped[str] = mapped_column(String(255), unique=True)
    checkout_url: Mapped[str] = mapped_column(Text)
    stripe_subscription_id: Mapped[str | None] = mapped_column(
        String(255), unique=True, default=None
    )
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), default=None)
    current_period_end: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    canceled_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )
    last_event_created: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )
    #: Something staff must look at (an invoice amount that differs from the price...).
    attention: Mapped[str] = mapped_column(Text, default="", server_default="")
    #: Stripe's ``pause_collection`` as its webhook last reported it: no delivery is billed
    #: while paused; ``paused_until`` None with ``paused`` means until the shopper resumes.
    paused: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    paused_until: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )


class SubscriptionInvoice(EntityColumns, Base):
    """One Stripe invoice of a subscription; a paid one carries the order id it becomes."""

    __tablename__ = "subscription_invoices"
    __table_args__ = (
        CheckConstraint("amount_due >= 0 AND amount_paid >= 0", name="invoice_amounts"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="invoice_currency_code"),
        CheckConstraint("status IN ('paid', 'payment_failed')", name="invoice_status_known"),
        Index("ix_subscription_invoices_subscription", "subscription_id", "created_at"),
    )

    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("checkout.subscriptions.id", ondelete="CASCADE")
    )
    stripe_invoice_id: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(30))
    amount_due: Mapped[int] = mapped_column(BigInteger)
    amount_paid: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    billing_reason: Mapped[str] = mapped_column(String(60), default="", server_default="")
    period_start: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )
    period_end: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    #: The order this paid invoice becomes (UUIDv7, set when it is first known paid).
    order_id: Mapped[uuid.UUID | None] = mapped_column(unique=True, default=None)
    paid_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
