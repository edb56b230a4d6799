"""Tables of the cart service, all in Postgres schema ``cart``.

A cart belongs either to a signed-in shopper (``user_id``) or to a guest, who proves it with the
signed ``ember_cart`` cookie (its hash is kept in ``guest_token_hash``). Prices are never stored:
they are looked up from catalog whenever a cart is shown.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import TYPE_CHECKING

from advanced_alchemy.types import DateTimeUTC
from ember_shared.db import EntityColumns, service_base
from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, func, text
from sqlalchemy.orm import Mapped, mapped_column

from cart.settings import HARD_MAX_QUANTITY_PER_LINE

if TYPE_CHECKING:
    from sqlalchemy.orm import DeclarativeBase

    class Base(DeclarativeBase):
        """What ``service_base`` makes, spelled out for the type checker."""

else:
    Base = service_base("cart")


class CartStatus(enum.StrEnum):
    ACTIVE = "active"
    #: A guest cart whose lines moved into a shopper's cart at sign-in.
    MERGED = "merged"
    #: Paid for (``payment.succeeded.v1``); its lines are gone.
    CONVERTED = "converted"


class Cart(EntityColumns, Base):
    __tablename__ = "carts"
    __table_args__ = (
        # One active cart per shopper; converted ones stay behind as history.
        Index(
            "uq_carts_active_user",
            "user_id",
            unique=True,
            postgresql_where=text("user_id IS NOT NULL AND status = 'active'"),
        ),
        Index("ix_carts_last_activity_at", "last_activity_at"),
        # The sweeper deletes old carts; their ON DELETE SET NULL must not scan the table.
        Index(
            "ix_carts_merged_into_id",
            "merged_into_id",
            postgresql_where=text("merged_into_id IS NOT NULL"),
        ),
        CheckConstraint("status IN ('active', 'merged', 'converted')", name="status_known"),
        CheckConstraint(
            "(user_id IS NULL) <> (guest_token_hash IS NULL)", name="owner_user_xor_guest"
        ),
    )

    user_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=CartStatus.ACTIVE, nullable=False)
    #: SHA-256 (hex) of the guest cookie's value; ``None`` for a shopper's cart.
    guest_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("cart.carts.id", ondelete="SET NULL"), nullable=True
    )
    converted_order_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    last_activity_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now(), nullable=False
    )


class CartItem(EntityColumns, Base):
    __tablename__ = "cart_items"
    __table_args__ = (
        UniqueConstraint("cart_id", "variant_id", name="uq_cart_items_cart_variant"),
        CheckConstraint(
            f"quantity BETWEEN 1 AND {HARD_MAX_QUANTITY_PER_LINE}", name="quantity_in_range"
        ),
    )

    cart_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("cart.carts.id", ondelete="CASCADE"), nullable=False
    )
    product_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    #: What the line holds: one variant of the product (its default variant has its id).
    variant_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    quantity: Mapped[int] = mapped_column(nullable=False)
