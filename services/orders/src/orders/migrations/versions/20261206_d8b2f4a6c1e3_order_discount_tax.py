"""discount, tax and shipping method on orders; each item's share of the discount

Revision ID: d8b2f4a6c1e3
Revises: 5a7284a0f052
Create Date: 2026-12-06 07:40:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d8b2f4a6c1e3"
down_revision: str | Sequence[str] | None = "5a7284a0f052"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("discount_total", sa.BigInteger(), server_default="0", nullable=False),
        schema="orders",
    )
    op.add_column(
        "orders",
        sa.Column("discount_code", sa.String(40), server_default="", nullable=False),
        schema="orders",
    )
    op.add_column(
        "orders",
        sa.Column("tax_total", sa.BigInteger(), server_default="0", nullable=False),
        schema="orders",
    )
    op.add_column(
        "orders",
        sa.Column("shipping_method", sa.String(100), server_default="", nullable=False),
        schema="orders",
    )
    op.create_check_constraint(
        op.f("ck_orders_discount_and_tax"),
        "orders",
        "discount_total >= 0 AND discount_total <= subtotal AND tax_total >= 0",
        schema="orders",
    )
    op.add_column(
        "order_items",
        sa.Column("discount", sa.BigInteger(), server_default="0", nullable=False),
        schema="orders",
    )
    op.create_check_constraint(
        op.f("ck_order_items_discount_within_line"),
        "order_items",
        "discount >= 0 AND discount <= line_total",
        schema="orders",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_order_items_discount_within_line"), "order_items", schema="orders")
    op.drop_column("order_items", "discount", schema="orders")
    op.drop_constraint(op.f("ck_orders_discount_and_tax"), "orders", schema="orders")
    for name in ("shipping_method", "tax_total", "discount_code", "discount_total"):
        op.drop_column("orders", name, schema="orders")
