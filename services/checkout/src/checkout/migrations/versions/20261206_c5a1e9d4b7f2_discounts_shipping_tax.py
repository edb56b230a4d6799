"""discounts, shipping rates and tax: the tables, and a checkout's discount, tax and rate

Revision ID: c5a1e9d4b7f2
Revises: e3a992826723
Create Date: 2026-12-06 07:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c5a1e9d4b7f2"
down_revision: str | Sequence[str] | None = "e3a992826723"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TOTALS = "subtotal >= 0 AND shipping >= 0 AND total = subtotal + shipping"
NEW_TOTALS = (
    "subtotal >= 0 AND shipping >= 0 AND discount >= 0 AND discount <= subtotal "
    "AND tax >= 0 AND total = subtotal - discount + shipping + tax"
)


def _entity() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", DateTimeUTC(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", DateTimeUTC(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    ]


def upgrade() -> None:
    for name, column in (
        ("discount", sa.Column("discount", sa.BigInteger(), server_default="0", nullable=False)),
        (
            "discount_code",
            sa.Column("discount_code", sa.String(40), server_default="", nullable=False),
        ),
        ("tax", sa.Column("tax", sa.BigInteger(), server_default="0", nullable=False)),
        (
            "shipping_rate",
            sa.Column("shipping_rate", sa.String(40), server_default="", nullable=False),
        ),
        (
            "shipping_name",
            sa.Column("shipping_name", sa.String(100), server_default="", nullable=False),
        ),
    ):
        del name
        op.add_column("checkout_sessions", column, schema="checkout")
    op.drop_constraint(op.f("ck_checkout_sessions_totals"), "checkout_sessions", schema="checkout")
    op.create_check_constraint(
        op.f("ck_checkout_sessions_totals"), "checkout_sessions", NEW_TOTALS, schema="checkout"
    )

    op.create_table(
        "shipping_rates",
        *_entity(),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("free_over", sa.BigInteger(), nullable=True),
        sa.Column("countries", postgresql.ARRAY(sa.String(2)), server_default="{}", nullable=False),
        sa.Column("min_days", sa.Integer(), nullable=True),
        sa.Column("max_days", sa.Integer(), nullable=True),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.CheckConstraint(
            "price >= 0 AND price <= 1000000", name=op.f("ck_shipping_rates_price_range")
        ),
        sa.CheckConstraint(
            "free_over IS NULL OR free_over > 0", name=op.f("ck_shipping_rates_free_over_positive")
        ),
        sa.CheckConstraint(
            "code ~ '^[a-z0-9][a-z0-9-]{0,39}$'", name=op.f("ck_shipping_rates_code_format")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipping_rates")),
        sa.UniqueConstraint("code", name=op.f("uq_shipping_rates_code")),
        schema="checkout",
    )
    op.create_table(
        "discount_codes",
        *_entity(),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("description", sa.String(200), server_default="", nullable=False),
        sa.Column("percent_off", sa.Integer(), nullable=True),
        sa.Column("amount_off", sa.BigInteger(), nullable=True),
        sa.Column("min_subtotal", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("starts_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("ends_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("max_uses_per_customer", sa.Integer(), nullable=True),
        sa.Column(
            "first_order_only", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("product_ids", postgresql.ARRAY(sa.Uuid()), server_default="{}", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("uses", sa.Integer(), server_default="0", nullable=False),
        sa.Column("holds", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "(percent_off IS NULL) <> (amount_off IS NULL)",
            name=op.f("ck_discount_codes_one_kind_of_discount"),
        ),
        sa.CheckConstraint(
            "percent_off IS NULL OR percent_off BETWEEN 1 AND 100",
            name=op.f("ck_discount_codes_percent"),
        ),
        sa.CheckConstraint(
            "amount_off IS NULL OR amount_off > 0", name=op.f("ck_discount_codes_amount_positive")
        ),
        sa.CheckConstraint(
            "min_subtotal >= 0", name=op.f("ck_discount_codes_min_subtotal_positive")
        ),
        sa.CheckConstraint(
            "uses >= 0 AND holds >= 0 AND (max_uses IS NULL OR uses + holds <= max_uses)",
            name=op.f("ck_discount_codes_uses_within_limit"),
        ),
        sa.CheckConstraint(
            "code ~ '^[A-Z0-9][A-Z0-9_-]{0,39}$'", name=op.f("ck_discount_codes_code_format")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discount_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_discount_codes_code")),
        schema="checkout",
    )
    op.create_table(
        "discount_holds",
        *_entity(),
        sa.Column("code_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("customer", sa.String(330), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", DateTimeUTC(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('held', 'used', 'released')", name=op.f("ck_discount_holds_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["code_id"],
            ["checkout.discount_codes.id"],
            name=op.f("fk_discount_holds_code_id_discount_codes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discount_holds")),
        sa.UniqueConstraint("order_id", name=op.f("uq_discount_holds_order_id")),
        schema="checkout",
    )
    op.create_index(
        "ix_discount_holds_customer",
        "discount_holds",
        ["code_id", "customer"],
        schema="checkout",
    )
    op.create_index(
        "ix_discount_holds_lapsing",
        "discount_holds",
        ["expires_at"],
        schema="checkout",
        postgresql_where=sa.text("status = 'held'"),
    )


def downgrade() -> None:
    op.drop_table("discount_holds", schema="checkout")
    op.drop_table("discount_codes", schema="checkout")
    op.drop_table("shipping_rates", schema="checkout")
    op.drop_constraint(op.f("ck_checkout_sessions_totals"), "checkout_sessions", schema="checkout")
    op.create_check_constraint(
        op.f("ck_checkout_sessions_totals"), "checkout_sessions", OLD_TOTALS, schema="checkout"
    )
    for name in ("shipping_name", "shipping_rate", "tax", "discount_code", "discount"):
        op.drop_column("checkout_sessions", name, schema="checkout")
