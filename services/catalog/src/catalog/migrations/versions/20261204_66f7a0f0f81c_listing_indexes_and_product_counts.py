"""listing indexes and product counts: a listing's cost no longer grows with the catalog

An index per listing order (whole catalog and per category, only what is sold), the
number of products sold, kept by statement triggers, so that a listing never counts its rows,
and an index of product names, so that a search's bounded ranking sees name matches first.

Revision ID: 66f7a0f0f81c
Revises: 9cd2bc2c63b7
Create Date: 2026-12-04 23:40:41.258796

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import advanced_alchemy.types


# revision identifiers, used by Alembic.
revision: str = '66f7a0f0f81c'
down_revision: Union[str, Sequence[str], None] = '9cd2bc2c63b7'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# Statement triggers with transition tables: one pass over the rows a statement changed, one
# upsert per scope (the nil UUID is the whole catalog), and no write at all when no product
# started or stopped being sold (an edit's deltas sum to zero), so edits never lock the counts.
# A transition table exists only for the events that have it, hence one query per event.
COUNT_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION catalog.product_counts_add(changed_category uuid[], delta int[])
RETURNS void LANGUAGE sql AS $$
    INSERT INTO catalog.product_counts AS c (scope, active)
    SELECT scope, sum(d)
    FROM (
        SELECT '00000000-0000-0000-0000-000000000000'::uuid AS scope, d
        FROM unnest(delta) AS d
        UNION ALL
        SELECT x.category_id, x.d
        FROM unnest(changed_category, delta) AS x (category_id, d)
        WHERE x.category_id IS NOT NULL
    ) AS scoped
    GROUP BY scope HAVING sum(d) <> 0 ORDER BY scope
    ON CONFLICT (scope) DO UPDATE SET active = c.active + EXCLUDED.active
$$

CREATE OR REPLACE FUNCTION catalog.product_counts_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    categories uuid[];
    deltas int[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM catalog.product_counts;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT array_agg(category_id), array_agg(1) INTO categories, deltas
        FROM new_rows WHERE active;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(category_id), array_agg(-1) INTO categories, deltas
        FROM old_rows WHERE active;
    ELSE
        SELECT array_agg(category_id), array_agg(d) INTO categories, deltas
        FROM (SELECT category_id, 1 AS d FROM new_rows WHERE active
              UNION ALL
              SELECT category_id, -1 FROM old_rows WHERE active) AS both_sides;
    END IF;
    IF deltas IS NOT NULL THEN
        PERFORM catalog.product_counts_add(categories, deltas);
    END IF;
    RETURN NULL;
END
$$

CREATE TRIGGER product_counts_insert AFTER INSERT ON catalog.products
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog.product_counts_apply()

CREATE TRIGGER product_counts_update AFTER UPDATE ON catalog.products
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog.product_counts_apply()

CREATE TRIGGER product_counts_delete AFTER DELETE ON catalog.products
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog.product_counts_apply()

CREATE TRIGGER product_counts_truncate AFTER TRUNCATE ON catalog.products
    FOR EACH STATEMENT EXECUTE FUNCTION catalog.product_counts_apply()

INSERT INTO catalog.product_counts (scope, active)
SELECT '00000000-0000-0000-0000-000000000000'::uuid, count(*) FROM catalog.products WHERE active
UNION ALL
SELECT category_id, count(*) FROM catalog.products
WHERE active AND category_id IS NOT NULL GROUP BY category_id
"""

DROP_COUNTS = r"""
DROP TRIGGER IF EXISTS product_counts_truncate ON catalog.products

DROP TRIGGER IF EXISTS product_counts_delete ON catalog.products

DROP TRIGGER IF EXISTS product_counts_update ON catalog.products

DROP TRIGGER IF EXISTS product_counts_insert ON catalog.products

DROP FUNCTION IF EXISTS catalog.product_counts_apply()

DROP FUNCTION IF EXISTS catalog.product_counts_add(uuid[], int[])
"""

ORDERS = {
    "newest": [sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    "price": ["price", "id"],
    "price_desc": [sa.literal_column("price DESC"), "id"],
    "name": [sa.literal_column("lower(name)"), "id"],
}


def _statements(script: str) -> list[str]:
    """Split on the blank-line-separated statements above (function bodies contain ';')."""
    return [part.strip() for part in script.split("\n\n") if part.strip()]


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('product_counts',
    sa.Column('scope', advanced_alchemy.types.guid.GUID(length=16), nullable=False),
    sa.Column('active', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('scope', name=op.f('pk_product_counts')),
    schema='catalog'
    )
    op.drop_index(op.f('ix_products_active_created'), table_name='products', schema='catalog')
    for order, columns in ORDERS.items():
        # An expression (lower(name)) is read from an index only if it holds the column too.
        include = ['name'] if order == 'name' else []
        op.create_index(f'ix_products_list_{order}', 'products', columns, unique=False, schema='catalog', postgresql_where=sa.text('active'), postgresql_include=include)
        op.create_index(f'ix_products_list_category_{order}', 'products', ['category_id', *columns], unique=False, schema='catalog', postgresql_where=sa.text('active'), postgresql_include=include)
    # A search ranks the products whose name matches first (a broad query has thousands).
    op.create_index('ix_products_search_name', 'products', [sa.literal_column("to_tsvector('english'::regconfig, name)")], unique=False, schema='catalog', postgresql_using='gin', postgresql_where=sa.text('active'))
    for statement in _statements(COUNT_FUNCTIONS):
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    for statement in _statements(DROP_COUNTS):
        op.execute(statement)
    op.drop_index('ix_products_search_name', table_name='products', schema='catalog')
    for order in ORDERS:
        op.drop_index(f'ix_products_list_category_{order}', table_name='products', schema='catalog')
        op.drop_index(f'ix_products_list_{order}', table_name='products', schema='catalog')
    op.create_index(op.f('ix_products_active_created'), 'products', ['active', 'created_at'], unique=False, schema='catalog')
    op.drop_table('product_counts', schema='catalog')
