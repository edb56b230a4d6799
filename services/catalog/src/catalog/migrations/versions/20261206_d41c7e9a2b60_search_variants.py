"""search variants: a product's search vector holds what its variants sell

Active variants' option values join the product's facets (weight B, and the typo lexicon), and
each active variant's SKU is one whole lexeme ("#" and the SKU, lowercased; weight D) that only
a search for that very SKU matches: no query word is stemmed or prefixed into a "#" lexeme, so
neither a SKU's parts nor a deactivated variant's SKU find the product. A change to a product's
variants refreshes its vector through the products trigger, as a category's rename does.

Revision ID: d41c7e9a2b60
Revises: b7e3f1a9c4d2
Create Date: 2026-12-06 11:20:00.000000

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = 'd41c7e9a2b60'
down_revision: Union[str, Sequence[str], None] = 'b7e3f1a9c4d2'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


SEARCH_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION catalog.products_search_refresh() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    category_name text := '';
    choices text := '';
    skus text[] := '{}';
    facets text;
    body text;
BEGIN
    IF NEW.category_id IS NOT NULL THEN
        SELECT c.name INTO category_name FROM catalog.categories AS c WHERE c.id = NEW.category_id;
    END IF;
    SELECT coalesce(array_agg(DISTINCT '#' || lower(v.sku)), '{}') INTO skus
    FROM catalog.variants AS v WHERE v.product_id = NEW.id AND v.active;
    SELECT coalesce(string_agg(DISTINCT o.value, ' '), '') INTO choices
    FROM catalog.variants AS v, unnest(v.option_values) AS o (value)
    WHERE v.product_id = NEW.id AND v.active;
    facets := concat_ws(' ', NEW.origin, category_name, array_to_string(NEW.tasting_notes, ' '),
                        NEW.roast, NEW.process, choices);
    body := concat_ws(' ', NEW.summary, NEW.description);
    NEW.search_vector :=
        setweight(to_tsvector('english', coalesce(NEW.name, '')), 'A')
        || setweight(to_tsvector('english', coalesce(facets, '')), 'B')
        || setweight(to_tsvector('english', coalesce(body, '')), 'C')
        || setweight(array_to_tsvector(skus), 'D');
    INSERT INTO catalog.search_words (word, trigrams)
    SELECT w, catalog.word_trigrams(w)
    FROM unnest(tsvector_to_array(to_tsvector('simple', concat_ws(' ', NEW.name, facets, body)))) AS w
    WHERE length(w) BETWEEN 3 AND 64 AND w ~ '^[[:alpha:]][[:alnum:]]*$'
    ON CONFLICT (word) DO NOTHING;
    RETURN NEW;
END
$$

CREATE OR REPLACE FUNCTION catalog.variants_search_refresh() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Touching the name runs products_search_refresh, which reads the variants as they are now.
    IF TG_OP = 'UPDATE' THEN
        UPDATE catalog.products SET name = name WHERE id IN (OLD.product_id, NEW.product_id);
    ELSE
        -- Once per statement: a bulk insert (bench/grow.py) refreshes each product once.
        UPDATE catalog.products SET name = name
        WHERE id IN (SELECT DISTINCT product_id FROM changed_variants);
    END IF;
    RETURN NULL;
END
$$
"""

SEARCH_TRIGGERS = r"""
CREATE TRIGGER variants_search_insert AFTER INSERT ON catalog.variants
    REFERENCING NEW TABLE AS changed_variants
    FOR EACH STATEMENT EXECUTE FUNCTION catalog.variants_search_refresh()

CREATE TRIGGER variants_search_delete AFTER DELETE ON catalog.variants
    REFERENCING OLD TABLE AS changed_variants
    FOR EACH STATEMENT EXECUTE FUNCTION catalog.variants_search_refresh()

CREATE TRIGGER variants_search_update AFTER UPDATE OF sku, option_values, active, product_id
    ON catalog.variants
    FOR EACH ROW WHEN (
        OLD.sku IS DISTINCT FROM NEW.sku
        OR OLD.option_values IS DISTINCT FROM NEW.option_values
        OR OLD.active IS DISTINCT FROM NEW.active
        OR OLD.product_id IS DISTINCT FROM NEW.product_id
    )
    EXECUTE FUNCTION catalog.variants_search_refresh()
"""

#: The products trigger as it was before (c2a97e18dc85), for the downgrade.
PREVIOUS_FUNCTION = r"""
CREATE OR REPLACE FUNCTION catalog.products_search_refresh() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    category_name text := '';
    facets text;
    body text;
BEGIN
    IF NEW.category_id IS NOT NULL THEN
        SELECT c.name INTO category_name FROM catalog.categories AS c WHERE c.id = NEW.category_id;
    END IF;
    facets := concat_ws(' ', NEW.origin, category_name, array_to_string(NEW.tasting_notes, ' '),
                        NEW.roast, NEW.process);
    body := concat_ws(' ', NEW.summary, NEW.description);
    NEW.search_vector :=
        setweight(to_tsvector('english', coalesce(NEW.name, '')), 'A')
        || setweight(to_tsvector('english', coalesce(facets, '')), 'B')
        || setweight(to_tsvector('english', coalesce(body, '')), 'C');
    INSERT INTO catalog.search_words (word, trigrams)
    SELECT w, catalog.word_trigrams(w)
    FROM unnest(tsvector_to_array(to_tsvector('simple', concat_ws(' ', NEW.name, facets, body)))) AS w
    WHERE length(w) BETWEEN 3 AND 64 AND w ~ '^[[:alpha:]][[:alnum:]]*$'
    ON CONFLICT (word) DO NOTHING;
    RETURN NEW;
END
$$
"""

DROP_VARIANT_TRIGGERS = r"""
DROP TRIGGER IF EXISTS variants_search_update ON catalog.variants

DROP TRIGGER IF EXISTS variants_search_delete ON catalog.variants

DROP TRIGGER IF EXISTS variants_search_insert ON catalog.variants

DROP FUNCTION IF EXISTS catalog.variants_search_refresh()
"""

#: Every product's vector built again by its trigger.
REFRESH = "UPDATE catalog.products SET name = name"


def _statements(script: str) -> list[str]:
    """Split on the blank-line-separated statements above (function bodies contain ';')."""
    return [part.strip() for part in script.split("\n\n") if part.strip()]


def upgrade() -> None:
    """Upgrade schema."""
    for statement in _statements(SEARCH_FUNCTIONS + SEARCH_TRIGGERS):
        op.execute(statement)
    op.execute(REFRESH)


def downgrade() -> None:
    """Downgrade schema."""
    for statement in _statements(DROP_VARIANT_TRIGGERS + PREVIOUS_FUNCTION):
        op.execute(statement)
    op.execute(REFRESH)
