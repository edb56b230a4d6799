"""Tables of the orders service, all in Postgres schema ``orders``.

``order_items`` rows are immutable snapshots of what was bought (invariant 14): the mapper
refuses to flush a change to one, and the database refuses any UPDATE or DELETE of one with a
trigger (created in the migration), so no code path, present or future, can rewrite history.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from advanced_alchemy.types import DateTimeUTC
from ember_shared.db import EntityColumns, service_base
from ember_shared.ids import new_id
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, Mapper, mapped_column, relationship

from orders.ordering.status import OrderStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import DeclarativeBase

    class Base(DeclarativeBase):
        """What ``service_base`` makes, spelled out for the type checker."""

else:
    Base = service_base("orders")

_STATUS_LIST = ", ".join(f"'{s.value}'" for s in OrderStatus)


class ImmutableSnapshotError(RuntimeError):
    """Raised when code tries to change or delete an order item snapshot."""


class Order(EntityColumns, Base):
    """One purchase. Its id is the order id checkout gave the checkout session."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUS_LIST})", name="status_known"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        CheckConstraint(
            "subtotal >= 0 AND shipping_total >= 0 AND total >= 0", name="money_positive"
        ),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= total", name="refund_within_total"
        ),
        CheckConstraint(
            "discount_total >= 0 AND discount_total <= subtotal AND tax_total >= 0",
            name="discount_and_tax",
        ),
        CheckConstraint(
            "(tracking_number IS NULL) = (carrier IS NULL)", name="tracking_number_with_carrier"
        ),
        # Every order comes from a checkout session or from a subscription's paid invoice.
        CheckConstraint(
            "checkout_session_id IS NOT NULL OR subscription_id IS NOT NULL",
            name="from_checkout_or_subscription",
        ),
        CheckConstraint(
            "(subscription_id IS NULL) = (stripe_invoice_id IS NULL)",
            name="subscription_with_invoice",
        ),
        Index("ix_orders_status_created", "status", "created_at"),
        Index("ix_orders_user_created", "user_id", "created_at"),
        Index("ix_orders_paid_at", "paid_at"),
        Index("ix_orders_email_lower", text("lower(email)")),
        Index(
            "ix_orders_tracking_due",
            "tracking_last_sync",
            postgresql_where=text("status = 'shipped' AND tracking_number IS NOT NULL"),
        ),
        Index(
            "uq_orders_stripe_session",
            "stripe_session_id",
            unique=True,
            postgresql_where=text("stripe_session_id IS NOT NULL"),
        ),
        # One order per paid invoice, whatever order id each delivery of the event carries.
        Index(
            "uq_orders_stripe_invoice",
            "stripe_invoice_id",
            unique=True,
            postgresql_where=text("stripe_invoice_id IS NOT NULL"),
        ),
        # Staff's "needs attention" list: few rows, so a partial index keeps it cheap.
        Index(
            "ix_orders_attention_created",
            "created_at",
            postgresql_where=text("attention IS NOT NULL"),
        ),
        Index(
            "ix_orders_subscription_created",
            "subscription_id",
            "created_at",
            postgresql_where=text("subscription_id IS NOT NULL"),
        ),
    )

    user_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    email: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(32), default=OrderStatus.PENDING_PAYMENT.value)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = mapped_column(BigInteger)
    shipping_total: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: ``total`` = ``subtotal`` - ``discount_total`` + ``shipping_total`` + ``tax_total``.
    discount_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    discount_code: Mapped[str] = mapped_column(String(40), default="", server_default="")
    tax_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: The shipping rate the shopper picked ("Express"); empty for orders before rates.
    shipping_method: Mapped[str] = mapped_column(String(100), default="", server_default="")

    #: None for a subscription's delivery, which no checkout session made.
    checkout_session_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    reservation_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    cart_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    stripe_session_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: A guest's order opens with a random secret of ours (the mailed link's ``token``); only
    #: its SHA-256 rests here, and the link itself only sealed for the notifier, which alone can
    #: open it to mail it (``ember_shared.sealing``). Both None for a customer's order.
    guest_link_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sealed_order_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    payment_expires_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True
    )
    #: Set on a subscription's delivery: checkout's subscription id and the paid Stripe invoice.
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255), nullable=True)

    # The shipping address as it was when the shopper paid; later address edits do not touch it.
    shipping_name: Mapped[str] = mapped_column(String(200))
    shipping_phone: Mapped[str] = mapped_column(String(40), default="")
    shipping_address: Mapped[dict[str, Any]] = mapped_column(JSONB)

    paid_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True
    )
    fulfilled_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True
    )
    shipped_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True
    )
    delivered_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True
    )
    refunded_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True
    )

    carrier: Mapped[str | None] = mapped_column(String(40), nullable=True)
    tracking_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The provider's latest main status (17track: InfoReceived, InTransit, Delivered, ...).
    tracking_status: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: The provider's latest summary (latest event, carrier key), as it last answered.
    tracking_details: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    tracking_registered: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default="false"
    )
    tracking_last_sync: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True
    )
    tracking_error: Mapped[str | None] = mapped_column(String(500), nullable=True)

    notes: Mapped[str] = mapped_column(Text, default="", server_default="")
    #: Why staff should look before shipping, as checkout said when the payment came (a charge
    #: of another amount, money taken after the checkout closed); None for an ordinary payment.
    attention: Mapped[str | None] = mapped_column(String(1000), nullable=True)

    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order",
        order_by="OrderItem.position",
        lazy="raise",
        viewonly=True,
    )


class OrderItem(Base):
    """What was bought, frozen: name, slug, unit price and quantity at the time of purchase."""

    __tablename__ = "order_items"
    __table_args__ = (
        # One item per variant sold; an item from before variants (no variant) counts as its
        # product's default, so NULLs are not distinct.
        UniqueConstraint(
            "order_id",
            "product_id",
            "variant_id",
            name="uq_order_items_order_variant",
            postgresql_nulls_not_distinct=True,
        ),
        CheckConstraint("quantity > 0 AND quantity <= 10000", name="quantity_positive"),
        CheckConstraint("unit_price >= 0", name="unit_price_positive"),
        CheckConstraint("line_total = unit_price * quantity", name="line_total_consistent"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        CheckConstraint("discount >= 0 AND discount <= line_total", name="discount_within_line"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # No index of its own: uq_order_items_order_variant leads with it (one more index written
    # by every item for no read).
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.orders.id", ondelete="RESTRICT"))
    position: Mapped[int] = mapped_column(SmallInteger)
    product_id: Mapped[uuid.UUID]
    slug: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(300))
    image_url: Mapped[str] = mapped_column(String(1000), default="")
    unit_price: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(Integer)
    line_total: Mapped[int] = mapped_column(BigInteger)
    #: This line's share of the order's discount (``line_total`` is before it).
    discount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    currency: Mapped[str] = mapped_column(String(3))
    #: The variant sold, with its SKU, title ("Espresso / 1 kg") and option values at the
    #: sale; NULL on items from before variants (the product's default variant).
    variant_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    sku: Mapped[str | None] = mapped_column(String(120), default=None)
    variant_title: Mapped[str | None] = mapped_column(String(300), default=None)
    option_values: Mapped[list[str] | None] = mapped_column(ARRAY(String(100)), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now()
    )

    order: Mapped[Order] = relationship(back_populates="items", lazy="raise", viewonly=True)


@event.listens_for(OrderItem, "before_update")
def _refuse_item_update(mapper: Mapper[Any], connection: Any, target: OrderItem) -> None:
    raise ImmutableSnapshotError("order items are immutable snapshots; they cannot be changed")


@event.listens_for(OrderItem, "before_delete")
def _refuse_item_delete(mapper: Mapper[Any], connection: Any, target: OrderItem) -> None:
    raise ImmutableSnapshotError("order items are immutable snapshots; they cannot be deleted")


class OrderStatusChange(Base):
    """The order's history: every status move, why and by whom (an event, staff, the poller)."""

    __tablename__ = "order_status_changes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.orders.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    to_status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(300), default="")
    actor: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now()
    )


class TrackingEvent(Base):
    """One scan of the parcel, as the tracking provider reported it."""

    __tablename__ = "tracking_events"
    __table_args__ = (
        UniqueConstraint("order_id", "fingerprint", name="uq_tracking_events_order_fingerprint"),
        Index("ix_tracking_events_order_time", "order_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.orders.id", ondelete="CASCADE"))
    #: A digest of time, stage and text: the same scan reported twice is stored once.
    fingerprint: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    status: Mapped[str] = mapped_column(String(40))
    sub_status: Mapped[str] = mapped_column(String(80), default="")
    description: Mapped[str] = mapped_column(String(500))
    location: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now()
    )


class DeferredEvent(Base):
    """A payment outcome that arrived before the order it names (streams are not ordered
    across event types); it is applied as soon as the order is created."""

    __tablename__ = "deferred_events"

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(index=True)
    event_type: Mapped[str] = mapped_column(String(120))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now()
    )


class RefundRequest(Base):
    """A refund staff asked Stripe for. It changes nothing by itself: the order's refunded
    amount and status move when Stripe's ``charge.refunded`` comes back (as ``payment.refunded``),
    which is also when a chosen restock is announced. UNIQUE(order, idempotency key): a form
    sent twice asks once."""

    __tablename__ = "refund_requests"
    __table_args__ = (
        UniqueConstraint("order_id", "idempotency_key", name="uq_refund_requests_order_key"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('requested', 'refunded')", name="status_known"),
        Index("ix_refund_requests_order_created", "order_id", "created_at"),
        # At most one request per order puts its items back on the shelf.
        Index(
            "uq_refund_requests_one_restock",
            "order_id",
            unique=True,
            postgresql_where=text("restock"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.orders.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    amount: Mapped[int] = mapped_column(BigInteger)
    restock: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    reason: Mapped[str] = mapped_column(String(300), default="", server_default="")
    actor: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default="requested", server_default="requested")
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now()
    )
    refunded_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True
    )
