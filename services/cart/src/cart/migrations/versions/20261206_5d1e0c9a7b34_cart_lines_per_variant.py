"""cart lines per variant: a line holds one variant of a product; existing lines hold their
product's default variant (which has the product's id)

Revision ID: 5d1e0c9a7b34
Revises: ae9d77a925ce
Create Date: 2026-12-06 07:45:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '5d1e0c9a7b34'
down_revision: Union[str, Sequence[str], None] = 'ae9d77a925ce'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('cart_items', sa.Column('variant_id', sa.UUID(), nullable=True), schema='cart')
    op.execute("UPDATE cart.cart_items SET variant_id = product_id")
    op.alter_column('cart_items', 'variant_id', nullable=False, schema='cart')
    op.drop_constraint('uq_cart_items_cart_product', 'cart_items', schema='cart', type_='unique')
    op.create_unique_constraint('uq_cart_items_cart_variant', 'cart_items', ['cart_id', 'variant_id'], schema='cart')


def downgrade() -> None:
    """Downgrade schema: a cart keeps one line per product (the largest of its variants')."""
    op.execute(
        """
        DELETE FROM cart.cart_items AS i USING cart.cart_items AS j
        WHERE i.cart_id = j.cart_id AND i.product_id = j.product_id
          AND (i.quantity, i.id) < (j.quantity, j.id)
        """
    )
    op.drop_constraint('uq_cart_items_cart_variant', 'cart_items', schema='cart', type_='unique')
    op.create_unique_constraint('uq_cart_items_cart_product', 'cart_items', ['cart_id', 'product_id'], schema='cart')
    op.drop_column('cart_items', 'variant_id', schema='cart')
