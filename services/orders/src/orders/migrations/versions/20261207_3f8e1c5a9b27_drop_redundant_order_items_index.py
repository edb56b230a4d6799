"""order items: drop ix_orders_order_items_order_id, which uq_order_items_order_variant makes redundant

Revision ID: 3f8e1c5a9b27
Revises: e4a9c7b2d5f1
Create Date: 2026-12-07 06:40:00.000000

The unique key (order_id, product_id, variant_id) leads with order_id: it serves every read of
an order's items (and the foreign key's checks) that the plain order_id index served, and each
item written wrote both.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3f8e1c5a9b27"
down_revision: str | Sequence[str] | None = "e4a9c7b2d5f1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_orders_order_items_order_id", table_name="order_items", schema="orders")


def downgrade() -> None:
    op.create_index(
        "ix_orders_order_items_order_id", "order_items", ["order_id"], unique=False, schema="orders"
    )
