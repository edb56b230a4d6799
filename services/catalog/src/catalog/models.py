"""Tables of the catalog service, all in Postgres schema ``catalog``.

Search support that SQLAlchemy cannot describe (the trigram function, the triggers that keep
``products.search_vector`` and ``search_words`` current) lives in the migrations.
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
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

if TYPE_CHECKING:
    from sqlalchemy.orm import DeclarativeBase

    class Base(DeclarativeBase):
        """What ``service_base`` makes, spelled out for the type checker."""

else:
    Base = service_base("catalog")

RESERVATION_ACTIVE = "active"
RESERVATION_COMMITTED = "committed"
RESERVATION_RELEASED = "released"


class Category(EntityColumns, Base):
    __tablename__ = "categories"
    __table_args__ = (
        Index("uq_categories_slug_lower", func.lower(text("slug")), unique=True),
        Index("uq_categories_name_lower", func.lower(text("name")), unique=True),
    )

    slug: Mapped[str] = mapped_column(String(80), nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    display_order: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")


_LISTING_ORDERS: dict[str, tuple[Any, ...]] = {
    "newest": (text("created_at DESC"), text("id DESC")),
    "price": ("price", "id"),
    "price_desc": (text("price DESC"), "id"),
    "name": (func.lower(text("name")), "id"),
}


def _listing_indexes() -> list[Index]:
    where = text("active")
    indexes = []
    for order, columns in _LISTING_ORDERS.items():
        # Postgres reads an expression (lower(name)) from an index only if it also holds the
        # column itself.
        include = ["name"] if order == "name" else []
        for name, keys in (
            (f"ix_products_list_{order}", columns),
            (f"ix_products_list_category_{order}", ("category_id", *columns)),
        ):
            indexes.append(Index(name, *keys, postgresql_where=where, postgresql_include=include))
    return indexes


class Product(EntityColumns, Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price >= 0 AND price <= 100000000", name="price_range"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_code"),
        Index("uq_products_slug_lower", func.lower(text("slug")), unique=True),
        Index("ix_products_category", "category_id"),
        # One index per listing order, whole catalog and per category, holding only what is
        # sold: a page is read off the index (an index-only scan for its ids) whatever its depth
        # or the catalog's size. The columns follow ``ProductReads``' orderings exactly.
        *_listing_indexes(),
        Index("ix_products_search_vector", "search_vector", postgresql_using="gin"),
        # Name matches first: a broad search ranks the products named after it.
        Index(
            "ix_products_search_name",
            func.to_tsvector(text("'english'::regconfig"), text("name")),
            postgresql_using="gin",
            postgresql_where=text("active"),
        ),
    )

    slug: Mapped[str] = mapped_column(String(120), nullable=False)
    name: Mapped[str] = mapped_column(String(160), nullable=False)
    #: One or two sentences for listings.
    summary: Mapped[str] = mapped_column(String(300), nullable=False, server_default="")
    #: The long description for the product page.
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    price: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    category_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("catalog.categories.id", ondelete="RESTRICT"), nullable=True
    )
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    archived_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True
    )
    origin: Mapped[str] = mapped_column(String(80), nullable=False, server_default="")
    roast: Mapped[str] = mapped_column(String(20), nullable=False, server_default="")
    process: Mapped[str] = mapped_column(String(60), nullable=False, server_default="")
    tasting_notes: Mapped[list[str]] = mapped_column(
        ARRAY(String(40)), nullable=False, server_default=text("'{}'::varchar[]")
    )
    weight_grams: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The options a shopper picks among (``[{"name": "Grind", "values": [...]}, ...]``), in
    #: display order; empty for a product sold as one item (its default variant).
    options: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    #: Kept by a trigger from name, origin, notes, category, descriptions and the option values
    #: its active variants sell (weights A-C), and their SKUs (weight D, one "#sku" lexeme each).
    search_vector: Mapped[Any] = mapped_column(TSVECTOR, nullable=True)


class Variant(EntityColumns, Base):
    """One combination of a product's options that is sold, with its own SKU, price, weight
    and stock. A product's default variant has the product's id: what a product id names
    where a variant is meant (an order line from before variants, a client that knows none)."""

    __tablename__ = "variants"
    __table_args__ = (
        CheckConstraint("price >= 0 AND price <= 100000000", name="price_range"),
        Index("uq_variants_sku_lower", func.lower(text("sku")), unique=True),
        Index("ix_variants_product", "product_id", "position"),
    )

    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog.products.id", ondelete="CASCADE"), nullable=False
    )
    sku: Mapped[str] = mapped_column(String(120), nullable=False)
    price: Mapped[int] = mapped_column(BigInteger, nullable=False)
    weight_grams: Mapped[int | None] = mapped_column(Integer, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    position: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    #: One value per option of the product, in the options' order; empty for the default.
    option_values: Mapped[list[str]] = mapped_column(
        ARRAY(String(60)), nullable=False, server_default=text("'{}'::varchar[]")
    )


class ProductCount(Base):
    """How many products are sold, in the whole catalog (``scope`` = the nil UUID) and per
    category: a listing's total without counting its rows. Kept exactly by statement triggers
    on ``products`` (see the migration that made it)."""

    __tablename__ = "product_counts"

    scope: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    active: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")


class ProductImage(EntityColumns, Base):
    __tablename__ = "product_images"
    __table_args__ = (
        Index(
            "uq_product_images_primary",
            "product_id",
            unique=True,
            postgresql_where=text("is_primary"),
        ),
        Index("ix_product_images_product_position", "product_id", "position"),
    )

    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog.products.id", ondelete="CASCADE"), nullable=False
    )
    url: Mapped[str] = mapped_column(String(500), nullable=False)
    #: The media store's key (a path under MEDIA_ROOT, or a Cloudinary public id).
    storage_key: Mapped[str] = mapped_column(String(300), nullable=False, server_default="")
    alt: Mapped[str] = mapped_column(String(200), nullable=False, server_default="")
    position: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    is_primary: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))


class Inventory(Base):
    """Stock of one variant. ``on_hand - reserved`` is what can be sold now."""

    __tablename__ = "inventory"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_within_on_hand"),
        Index("ix_inventory_product", "product_id"),
    )

    variant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog.variants.id", ondelete="CASCADE"), primary_key=True
    )
    #: The variant's product (a product's stock is read without joining its variants).
    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog.products.id", ondelete="CASCADE"), nullable=False
    )
    on_hand: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    reserved: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), nullable=False, server_default=func.now()
    )


class Reservation(EntityColumns, Base):
    """Stock held for one order until it is paid (committed), released, or expires."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'committed', 'released')", name="status_known"),
        Index(
            "ix_reservations_active_expiry",
            "expires_at",
            postgresql_where=text("status = 'active'"),
        ),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(nullable=False, unique=True)
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, server_default=RESERVATION_ACTIVE
    )
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True), nullable=False)
    committed_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True
    )
    released_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True
    )
    release_reason: Mapped[str] = mapped_column(String(40), nullable=False, server_default="")


class ReservationLine(Base):
    __tablename__ = "reservation_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog.reservations.id", ondelete="CASCADE"), primary_key=True
    )
    variant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog.variants.id", ondelete="RESTRICT"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("catalog.products.id", ondelete="RESTRICT"), nullable=False
    )
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)


class SubscriptionDelivery(Base):
    """Stock taken for one subscription delivery (a paid Stripe invoice): the row is claimed
    before any stock moves, so one order, or one invoice, takes stock once however often and
    under whatever event id it arrives."""

    __tablename__ = "subscription_deliveries"

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    stripe_invoice_id: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    #: Units paid for that the stock did not have, or that named an archived or unknown
    #: product (each is in the audit log too, so staff know what to roast).
    short: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), nullable=False, server_default=func.now()
    )


class AuditEntry(Base):
    """Who changed what in the catalog, with the state before and after (one row per admin write)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity", "entity", "entity_id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), nullable=False, server_default=func.now()
    )
    actor_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    actor_email: Mapped[str] = mapped_column(String(320), nullable=False, server_default="")
    action: Mapped[str] = mapped_column(String(60), nullable=False)
    entity: Mapped[str] = mapped_column(String(40), nullable=False)
    entity_id: Mapped[str] = mapped_column(String(64), nullable=False)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)


class SearchWord(Base):
    """Every word of the catalog's searchable text with its trigrams: the typo-tolerance lexicon.

    A misspelt query word is matched to the closest words here (trigram similarity), and those
    are searched with full text. Kept by a trigger on ``products``.
    """

    __tablename__ = "search_words"
    __table_args__ = (Index("ix_search_words_trigrams", "trigrams", postgresql_using="gin"),)

    word: Mapped[str] = mapped_column(String(64), primary_key=True)
    trigrams: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
