"""The subscription variants migration: every subscription from before variants delivers its
product's default variant (the one with the product's id), no subscription is left without a
variant, and the way down gives the table back as it was."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic import command
from ember_devkit.testing.plugin import database_beside, drop_database
from ember_shared.ids import new_id
from ember_shared.migrations import alembic_config, upgrade
from ember_shared.settings import with_driver

if TYPE_CHECKING:
    from ember_devkit.testing.plugin import TestEnv

BEFORE_VARIANTS = "7b3e5f1a9c24"


@pytest.fixture
def database(ember_env: TestEnv) -> Iterator[str]:
    url = database_beside(ember_env.database_url, "_subscription_variants")
    yield url
    drop_database(url)


def _insert(connection: sa.Connection, **extra: Any) -> uuid.UUID:
    row_id = new_id()
    columns = {
        "id": row_id,
        "user_id": new_id(),
        "email": "ada@example.com",
        "status": "active",
        "product_id": new_id(),
        "product_slug": "ethiopia-guji",
        "product_name": "Ethiopia Guji",
        "unit_price": 1600,
        "quantity": 2,
        "currency": "USD",
        "interval": "week",
        "interval_count": 2,
        "shipping_address": '{"name": "Ada", "country": "GB"}',
        "stripe_checkout_session_id": f"cs_test_{row_id.hex}",
        "checkout_url": "https://stripe.test/pay",
        **extra,
    }
    names = ", ".join(columns)
    values = ", ".join(
        f"CAST(:{k} AS jsonb)" if k == "shipping_address" else f":{k}" for k in columns
    )
    connection.execute(
        sa.text(
            f"INSERT INTO checkout.subscriptions ({names}, created_at, updated_at)"
            f" VALUES ({values}, now(), now())"
        ),
        columns,
    )
    return row_id


def test_existing_subscriptions_deliver_their_default_variant_and_back(database: str) -> None:
    engine = sa.create_engine(with_driver(database, "psycopg"))
    try:
        upgrade("checkout", database, BEFORE_VARIANTS)
        with engine.begin() as connection:
            old = [_insert(connection), _insert(connection, status="canceled", quantity=1)]
            products = dict(
                connection.execute(
                    sa.text("SELECT id, product_id FROM checkout.subscriptions")
                ).all()
            )

        upgrade("checkout", database)

        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT id, product_id, variant_id, sku, variant_title, option_values,"
                    " quantity, unit_price FROM checkout.subscriptions"
                )
            ).all()
        assert sorted(r.id for r in rows) == sorted(old)
        for row in rows:
            assert row.variant_id == row.product_id == products[row.id]
            assert (row.sku, row.variant_title, row.option_values) == ("", "", [])
            assert row.unit_price == 1600
        # From now on a subscription always names its variant.
        with pytest.raises(sa.exc.IntegrityError, match="variant_id"), engine.begin() as c:
            _insert(c)
        with engine.begin() as connection:
            variant_id = new_id()
            kilo = _insert(
                connection,
                variant_id=variant_id,
                sku="guji-es-1kg",
                variant_title="Espresso / 1 kg",
            )
            found = connection.execute(
                sa.text(
                    "SELECT variant_id, option_values FROM checkout.subscriptions WHERE id = :i"
                ),
                {"i": kilo},
            ).one()
        assert (found.variant_id, found.option_values) == (variant_id, [])

        command.downgrade(alembic_config("checkout", database), BEFORE_VARIANTS)
        with engine.connect() as connection:
            columns = {
                c["name"] for c in sa.inspect(connection).get_columns("subscriptions", "checkout")
            }
            count = connection.execute(sa.text("SELECT count(*) FROM checkout.subscriptions"))
            assert count.scalar_one() == 3
        assert not columns & {"variant_id", "sku", "variant_title", "option_values"}
        assert {"product_id", "product_slug", "quantity"} <= columns
    finally:
        engine.dispose()
