"""variants: options on products, one row per variant sold; stock and reservations per variant

Every product gets its default variant, with the product's own id (an id a client or an order
line already holds names it still), its slug as SKU, its price and weight; its stock and held
lines move to that variant unchanged.

Revision ID: b7e3f1a9c4d2
Revises: 66f7a0f0f81c
Create Date: 2026-12-06 07:15:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision: str = 'b7e3f1a9c4d2'
down_revision: Union[str, Sequence[str], None] = '66f7a0f0f81c'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column(
        'products',
        sa.Column('options', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
        schema='catalog',
    )
    op.create_table('variants',
    sa.Column('product_id', sa.UUID(), nullable=False),
    sa.Column('sku', sa.String(length=120), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('weight_grams', sa.Integer(), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('position', sa.Integer(), server_default='0', nullable=False),
    sa.Column('option_values', postgresql.ARRAY(sa.String(length=60)), server_default=sa.text("'{}'::varchar[]"), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('price >= 0 AND price <= 100000000', name=op.f('ck_variants_price_range')),
    sa.ForeignKeyConstraint(['product_id'], ['catalog.products.id'], name=op.f('fk_variants_product_id_products'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_variants')),
    schema='catalog'
    )
    op.create_index('ix_variants_product', 'variants', ['product_id', 'position'], unique=False, schema='catalog')
    op.create_index('uq_variants_sku_lower', 'variants', [sa.literal_column('lower(sku)')], unique=True, schema='catalog')
    op.execute(
        """
        INSERT INTO catalog.variants
            (id, product_id, sku, price, weight_grams, active, position, option_values,
             created_at, updated_at)
        SELECT id, id, slug, price, weight_grams, true, 0, '{}', now(), now()
        FROM catalog.products
        """
    )

    op.add_column('inventory', sa.Column('variant_id', sa.UUID(), nullable=True), schema='catalog')
    op.execute("UPDATE catalog.inventory SET variant_id = product_id")
    op.alter_column('inventory', 'variant_id', nullable=False, schema='catalog')
    op.drop_constraint('pk_inventory', 'inventory', schema='catalog', type_='primary')
    op.create_primary_key('pk_inventory', 'inventory', ['variant_id'], schema='catalog')
    op.create_foreign_key(
        op.f('fk_inventory_variant_id_variants'), 'inventory', 'variants',
        ['variant_id'], ['id'], source_schema='catalog', referent_schema='catalog', ondelete='CASCADE',
    )
    op.create_index('ix_inventory_product', 'inventory', ['product_id'], unique=False, schema='catalog')

    op.add_column('reservation_lines', sa.Column('variant_id', sa.UUID(), nullable=True), schema='catalog')
    op.execute("UPDATE catalog.reservation_lines SET variant_id = product_id")
    op.alter_column('reservation_lines', 'variant_id', nullable=False, schema='catalog')
    op.drop_constraint('pk_reservation_lines', 'reservation_lines', schema='catalog', type_='primary')
    op.create_primary_key('pk_reservation_lines', 'reservation_lines', ['reservation_id', 'variant_id'], schema='catalog')
    op.create_foreign_key(
        op.f('fk_reservation_lines_variant_id_variants'), 'reservation_lines', 'variants',
        ['variant_id'], ['id'], source_schema='catalog', referent_schema='catalog', ondelete='RESTRICT',
    )


def downgrade() -> None:
    """Downgrade schema: each product's stock and held lines are the sums over its variants."""
    op.drop_constraint('fk_reservation_lines_variant_id_variants', 'reservation_lines', schema='catalog', type_='foreignkey')
    op.drop_constraint('pk_reservation_lines', 'reservation_lines', schema='catalog', type_='primary')
    op.execute(
        """
        CREATE TEMPORARY TABLE folded_lines ON COMMIT DROP AS
        SELECT reservation_id, product_id, sum(quantity)::integer AS quantity
        FROM catalog.reservation_lines GROUP BY reservation_id, product_id
        """
    )
    op.execute("DELETE FROM catalog.reservation_lines")
    op.drop_column('reservation_lines', 'variant_id', schema='catalog')
    op.execute(
        "INSERT INTO catalog.reservation_lines (reservation_id, product_id, quantity) "
        "SELECT reservation_id, product_id, quantity FROM folded_lines"
    )
    op.create_primary_key('pk_reservation_lines', 'reservation_lines', ['reservation_id', 'product_id'], schema='catalog')

    op.drop_index('ix_inventory_product', table_name='inventory', schema='catalog')
    op.drop_constraint('fk_inventory_variant_id_variants', 'inventory', schema='catalog', type_='foreignkey')
    op.drop_constraint('pk_inventory', 'inventory', schema='catalog', type_='primary')
    op.execute(
        """
        CREATE TEMPORARY TABLE folded_stock ON COMMIT DROP AS
        SELECT product_id, sum(on_hand)::integer AS on_hand, sum(reserved)::integer AS reserved,
               max(updated_at) AS updated_at
        FROM catalog.inventory GROUP BY product_id
        """
    )
    op.execute("DELETE FROM catalog.inventory")
    op.drop_column('inventory', 'variant_id', schema='catalog')
    op.execute(
        "INSERT INTO catalog.inventory (product_id, on_hand, reserved, updated_at) "
        "SELECT product_id, on_hand, reserved, updated_at FROM folded_stock"
    )
    op.create_primary_key('pk_inventory', 'inventory', ['product_id'], schema='catalog')

    op.drop_index('uq_variants_sku_lower', table_name='variants', schema='catalog')
    op.drop_index('ix_variants_product', table_name='variants', schema='catalog')
    op.drop_table('variants', schema='catalog')
    op.drop_column('products', 'options', schema='catalog')
