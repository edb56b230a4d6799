"""The variants migration on a copy of the demo data: every product becomes its default
variant (its own id, its slug as SKU, its price and weight) with its stock and held lines
unchanged, the no-oversell CHECKs hold per variant, and the way down gives it all back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic import command
from ember_devkit.testing.plugin import database_beside, drop_database
from ember_shared.ids import new_id
from ember_shared.migrations import alembic_config, upgrade
from ember_shared.settings import with_driver

if TYPE_CHECKING:
    from ember_devkit.testing.plugin import TestEnv

BEFORE_VARIANTS = "66f7a0f0f81c"


@pytest.fixture
def database(ember_env: TestEnv) -> Iterator[str]:
    url = database_beside(ember_env.database_url, "_variants_migration")
    yield url
    drop_database(url)


def _demo_products() -> list[dict[str, object]]:
    raw = resources.files("catalog.demo").joinpath("catalog.json").read_text()
    products: list[dict[str, object]] = json.loads(raw)["products"]
    return products


def _load_demo_before_variants(engine: sa.Engine) -> dict[str, uuid.UUID]:
    """The demo catalog as the schema before variants holds it, with two held orders."""
    ids: dict[str, uuid.UUID] = {}
    with engine.begin() as connection:
        for raw in _demo_products():
            product_id = new_id()
            ids[str(raw["slug"])] = product_id
            connection.execute(
                sa.text(
                    "INSERT INTO catalog.products (id, slug, name, summary, description, price,"
                    " currency, origin, roast, process, weight_grams, created_at, updated_at)"
                    " VALUES (:id, :slug, :name, :summary, :description, :price, 'USD',"
                    " :origin, :roast, :process, :weight, now(), now())"
                ),
                {
                    "id": product_id,
                    "slug": raw["slug"],
                    "name": raw["name"],
                    "summary": raw["summary"],
                    "description": raw["description"],
                    "price": raw["price"],
                    "origin": raw["origin"],
                    "roast": raw["roast"],
                    "process": raw["process"],
                    "weight": raw["weight_grams"],
                },
            )
            connection.execute(
                sa.text(
                    "INSERT INTO catalog.inventory (product_id, on_hand, reserved)"
                    " VALUES (:p, :n, 0)"
                ),
                {"p": product_id, "n": raw["on_hand"]},
            )
        held = [("ethiopia-yirgacheffe", 3), ("kenya-nyeri-aa", 2), ("ethiopia-yirgacheffe", 1)]
        for slug, quantity in held:
            reservation_id = new_id()
            connection.execute(
                sa.text(
                    "INSERT INTO catalog.reservations (id, order_id, status, expires_at,"
                    " created_at, updated_at) VALUES (:id, :o, 'active',"
                    " now() + interval '10 minutes', now(), now())"
                ),
                {"id": reservation_id, "o": new_id()},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO catalog.reservation_lines (reservation_id, product_id, quantity)"
                    " VALUES (:r, :p, :q)"
                ),
                {"r": reservation_id, "p": ids[slug], "q": quantity},
            )
            connection.execute(
                sa.text(
                    "UPDATE catalog.inventory SET reserved = reserved + :q WHERE product_id = :p"
                ),
                {"p": ids[slug], "q": quantity},
            )
    return ids


def _stock_by_product(connection: sa.Connection) -> dict[uuid.UUID, tuple[int, int]]:
    rows = connection.execute(
        sa.text("SELECT product_id, on_hand, reserved FROM catalog.inventory")
    ).all()
    return {row.product_id: (row.on_hand, row.reserved) for row in rows}


def test_demo_data_migrates_to_default_variants_and_back(database: str) -> None:
    engine = sa.create_engine(with_driver(database, "psycopg"))
    try:
        upgrade("catalog", database, BEFORE_VARIANTS)
        ids = _load_demo_before_variants(engine)
        with engine.connect() as connection:
            stock_before = _stock_by_product(connection)
            lines_before = connection.execute(
                sa.text(
                    "SELECT reservation_id, product_id, quantity FROM catalog.reservation_lines"
                )
            ).all()
        assert stock_before[ids["ethiopia-yirgacheffe"]] == (48, 4)

        upgrade("catalog", database)

        with engine.connect() as connection:
            variants = connection.execute(
                sa.text(
                    "SELECT v.id, v.product_id, v.sku, v.price, v.weight_grams, v.active,"
                    " v.option_values, p.slug, p.price AS product_price,"
                    " p.weight_grams AS product_weight, p.options"
                    " FROM catalog.variants v JOIN catalog.products p ON p.id = v.product_id"
                )
            ).all()
            assert len(variants) == len(ids) == len(_demo_products())
            for variant in variants:
                assert variant.id == variant.product_id == ids[variant.slug]
                assert variant.sku == variant.slug
                assert (variant.price, variant.weight_grams) == (
                    variant.product_price,
                    variant.product_weight,
                )
                assert variant.active is True
                assert variant.option_values == []
                assert variant.options == []
            stock = connection.execute(
                sa.text("SELECT variant_id, product_id, on_hand, reserved FROM catalog.inventory")
            ).all()
            assert {row.variant_id: (row.on_hand, row.reserved) for row in stock} == stock_before
            assert all(row.variant_id == row.product_id for row in stock)
            lines = connection.execute(
                sa.text(
                    "SELECT reservation_id, variant_id, product_id, quantity"
                    " FROM catalog.reservation_lines"
                )
            ).all()
            assert sorted((r.reservation_id, r.variant_id, r.quantity) for r in lines) == sorted(
                lines_before
            )
        # The no-oversell CHECKs guard each variant's row.
        with (
            pytest.raises(sa.exc.IntegrityError, match="ck_inventory_reserved_within_on_hand"),
            engine.begin() as connection,
        ):
            connection.execute(
                sa.text(
                    "UPDATE catalog.inventory SET reserved = on_hand + 1 WHERE variant_id = :v"
                ),
                {"v": ids["kenya-nyeri-aa"]},
            )
        # A second variant of a product, with stock held, then the way down: the product's
        # stock and held lines are the sums over its variants.
        kenya = ids["kenya-nyeri-aa"]
        kilo = new_id()
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO catalog.variants (id, product_id, sku, price, option_values)"
                    " VALUES (:v, :p, 'kenya-1kg', 5000, '{1 kg}')"
                ),
                {"v": kilo, "p": kenya},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO catalog.inventory (variant_id, product_id, on_hand, reserved)"
                    " VALUES (:v, :p, 10, 1)"
                ),
                {"v": kilo, "p": kenya},
            )
            reservation = connection.execute(
                sa.text(
                    "SELECT reservation_id FROM catalog.reservation_lines WHERE product_id = :p"
                ),
                {"p": kenya},
            ).scalar_one()
            connection.execute(
                sa.text(
                    "INSERT INTO catalog.reservation_lines"
                    " (reservation_id, variant_id, product_id, quantity) VALUES (:r, :v, :p, 1)"
                ),
                {"r": reservation, "v": kilo, "p": kenya},
            )
        command.downgrade(alembic_config("catalog", database), BEFORE_VARIANTS)
        with engine.connect() as connection:
            stock_after = _stock_by_product(connection)
            assert stock_after == {**stock_before, kenya: (30 + 10, 2 + 1)}
            kenya_lines = connection.execute(
                sa.text("SELECT quantity FROM catalog.reservation_lines WHERE product_id = :p"),
                {"p": kenya},
            ).scalars()
            assert list(kenya_lines) == [3]
            columns = connection.execute(
                sa.text(
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = 'catalog' AND table_name = 'variants'"
                )
            ).all()
            assert columns == []
    finally:
        engine.dispose()
