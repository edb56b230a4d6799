"""order items keep the variant sold: variant id, SKU, title and option values

Revision ID: e4a9c7b2d5f1
Revises: d8b2f4a6c1e3
Create Date: 2026-12-06 08:30:00.000000

Order items are immutable (the order_items_immutable trigger refuses every UPDATE and DELETE,
whatever the columns), so the new columns are nullable and items from before stay NULL: the
product's default variant. The one-item-per-product key becomes one item per variant.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e4a9c7b2d5f1"
down_revision: str | Sequence[str] | None = "d8b2f4a6c1e3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("order_items", sa.Column("variant_id", sa.Uuid(), nullable=True), schema="orders")
    op.add_column("order_items", sa.Column("sku", sa.String(120), nullable=True), schema="orders")
    op.add_column(
        "order_items", sa.Column("variant_title", sa.String(300), nullable=True), schema="orders"
    )
    op.add_column(
        "order_items",
        sa.Column("option_values", postgresql.ARRAY(sa.String(100)), nullable=True),
        schema="orders",
    )
    op.drop_constraint("uq_order_items_order_product", "order_items", schema="orders")
    op.create_unique_constraint(
        "uq_order_items_order_variant",
        "order_items",
        ["order_id", "product_id", "variant_id"],
        schema="orders",
        postgresql_nulls_not_distinct=True,
    )


def downgrade() -> None:
    op.drop_constraint("uq_order_items_order_variant", "order_items", schema="orders")
    op.create_unique_constraint(
        "uq_order_items_order_product", "order_items", ["order_id", "product_id"], schema="orders"
    )
    for column in ("option_values", "variant_title", "sku", "variant_id"):
        op.drop_column("order_items", column, schema="orders")
