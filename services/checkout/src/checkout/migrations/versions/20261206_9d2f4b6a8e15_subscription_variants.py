"""subscription variants: the variant a subscription delivers (existing ones: the default)

Revision ID: 9d2f4b6a8e15
Revises: 7b3e5f1a9c24
Create Date: 2026-12-06 11:20:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "9d2f4b6a8e15"
down_revision: str | Sequence[str] | None = "7b3e5f1a9c24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "subscriptions", sa.Column("variant_id", sa.Uuid(), nullable=True), schema="checkout"
    )
    # A product's default variant has the product's id (catalog's variants migration made it
    # so): every subscription from before variants delivers that one. Its SKU and option
    # values were never recorded here; they stay empty, as an order item from before variants.
    op.execute("UPDATE checkout.subscriptions SET variant_id = product_id")
    op.alter_column("subscriptions", "variant_id", nullable=False, schema="checkout")
    op.add_column(
        "subscriptions",
        sa.Column("sku", sa.String(length=120), server_default="", nullable=False),
        schema="checkout",
    )
    op.add_column(
        "subscriptions",
        sa.Column("variant_title", sa.String(length=300), server_default="", nullable=False),
        schema="checkout",
    )
    op.add_column(
        "subscriptions",
        sa.Column(
            "option_values",
            postgresql.ARRAY(sa.String(length=100)),
            server_default="{}",
            nullable=False,
        ),
        schema="checkout",
    )


def downgrade() -> None:
    op.drop_column("subscriptions", "option_values", schema="checkout")
    op.drop_column("subscriptions", "variant_title", schema="checkout")
    op.drop_column("subscriptions", "sku", schema="checkout")
    op.drop_column("subscriptions", "variant_id", schema="checkout")
