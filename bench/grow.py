"""Grow the benchmark's catalog to ``BENCH_PRODUCTS`` products, through the real schema.

Plain ``INSERT``s into ``catalog.products`` (so the triggers build each product's search vector
and the typo lexicon exactly as an admin's create does), plus a default variant (with the
product's id, as an admin's create makes it), its stock row and a primary image each. The new
products are variations of the demo ones (same categories, texts and pictures) with a made-up
farm word per product: about 8,000 distinct rare words, as a real catalog's
names and lots bring, so the typo lexicon grows too. Batches of ``BATCH`` rows keep each
transaction short. Growing is idempotent: it only adds what is missing to reach the target.
"""

from __future__ import annotations

import time

BATCH = 5_000

# 20 syllables -> 8,000 three-syllable farm words ("kalomi", "rasuvi", ...). The ids are drawn
# first so that one statement inserts the product, its stock and its picture.
_GROW = r"""
WITH templates AS (
    SELECT row_number() OVER (ORDER BY p.created_at, p.id) - 1 AS k, p.*
    FROM catalog.products AS p
    WHERE p.active AND p.slug NOT LIKE 'bench-%%'
),
size AS (SELECT count(*) AS n FROM templates),
made AS MATERIALIZED (
    SELECT gen_random_uuid() AS id, g AS n, t.id AS template_id,
           s[1 + g %% 20] || s[1 + (g / 20) %% 20] || s[1 + (g / 400) %% 20] AS farm
    FROM generate_series(%(start)s, %(stop)s - 1) AS g,
         (SELECT ARRAY['ka','lo','mi','ra','to','ne','su','vi','da','be',
                       'go','ri','ya','zu','fe','la','mo','ni','pa','te'] AS s) AS syllables,
         size, templates AS t
    WHERE t.k = g %% size.n
),
products AS (
    INSERT INTO catalog.products (
        id, created_at, updated_at, slug, name, summary, description, price, currency,
        category_id, origin, roast, process, tasting_notes, weight_grams
    )
    SELECT made.id, now() - make_interval(secs => made.n), now(),
           'bench-' || made.farm || '-' || made.n,
           t.name || ' ' || initcap(made.farm) || ' Lot ' || made.n,
           t.summary, t.description,
           greatest(100, t.price + (made.n * 37) %% 2000 - 1000), t.currency, t.category_id,
           t.origin, t.roast, t.process, t.tasting_notes, t.weight_grams
    FROM made JOIN templates AS t ON t.id = made.template_id
),
variants AS (
    -- Each product's default variant has its id, as an admin's create makes it.
    INSERT INTO catalog.variants (id, created_at, updated_at, product_id, sku, price, weight_grams)
    SELECT made.id, now(), now(), made.id, 'bench-' || made.farm || '-' || made.n,
           greatest(100, t.price + (made.n * 37) %% 2000 - 1000), t.weight_grams
    FROM made JOIN templates AS t ON t.id = made.template_id
),
stock AS (
    INSERT INTO catalog.inventory (variant_id, product_id, on_hand, reserved)
    SELECT made.id, made.id, 5 + made.n %% 200, 0 FROM made
)
INSERT INTO catalog.product_images (
    id, created_at, updated_at, product_id, url, storage_key, alt, position, is_primary
)
SELECT gen_random_uuid(), now(), now(), made.id, i.url, i.storage_key, i.alt, 0, true
FROM made JOIN catalog.product_images AS i ON i.product_id = made.template_id AND i.is_primary
"""


def grow(database_url: str, target: int) -> int:
    """Add products until the catalog holds ``target`` active ones; answers how many it has."""
    import psycopg

    with psycopg.connect(database_url.replace("+asyncpg", ""), autocommit=True) as db:
        have = int(db.execute("SELECT count(*) FROM catalog.products WHERE active").fetchone()[0])  # type: ignore[index]
        if have >= target:
            return have
        made = int(
            db.execute(
                "SELECT count(*) FROM catalog.products WHERE slug LIKE 'bench-%%'"
            ).fetchone()[0]  # type: ignore[index]
        )
        began = time.monotonic()
        start, stop = made, made + (target - have)
        print(f"growing the catalog from {have} to {target} products ...", flush=True)
        for first in range(start, stop, BATCH):
            db.execute(_GROW, {"start": first, "stop": min(stop, first + BATCH)})
            print(f"  {min(stop, first + BATCH) - start} added", flush=True)
        # Fresh statistics and visibility map: the plans (and index-only scans) a real,
        # autovacuumed catalog of this size gets.
        db.execute("VACUUM (ANALYZE) catalog.products")
        db.execute("VACUUM (ANALYZE) catalog.inventory")
        db.execute("VACUUM (ANALYZE) catalog.product_images")
        db.execute("VACUUM (ANALYZE) catalog.search_words")
        have = int(db.execute("SELECT count(*) FROM catalog.products WHERE active").fetchone()[0])  # type: ignore[index]
        print(f"catalog grown to {have} products in {time.monotonic() - began:.0f}s", flush=True)
        return have
