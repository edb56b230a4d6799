"""The cart app as a whole: probes, its OpenAPI document, settings, the sweeper."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
from cart.settings import CartSettings, SettingsError
from cart.sweeper import sweep_once


async def test_probes(browsers):
    client = browsers()
    assert (await client.get("/api/health/cart/live")).json()["status"] == "ok"
    ready = await client.get("/api/health/cart/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_openapi_documents_every_route_and_problem_answers(browsers):
    document = (await browsers().get("/api/docs/cart/openapi.json")).json()
    paths = document["paths"]
    assert set(paths["/api/cart"]) >= {"get", "post", "patch", "delete"}
    assert set(paths["/api/cart/items"]) >= {"get", "post"}
    assert set(paths["/api/cart/items/{product_id}"]) >= {"patch", "delete"}
    assert "post" in paths["/api/cart/merge"]
    # Checkout's route is in the full document only, served to the service credential.
    assert "/internal/cart/resolve" not in paths
    full = await browsers().get(
        "/internal/docs/openapi.json",
        headers={"X-Service-Token": os.environ["INTERNAL_SERVICE_TOKEN"]},
    )
    assert "post" in full.json()["paths"]["/internal/cart/resolve"]
    add = paths["/api/cart/items"]["post"]
    assert add["summary"]
    for status in ("400", "404", "409", "422", "503"):
        assert "application/problem+json" in add["responses"][status]["content"]
    schemas = document["components"]["schemas"]
    add_item = next(v for k, v in schemas.items() if k.endswith("AddItem"))
    quantity = add_item["properties"]["quantity"]
    assert quantity["minimum"] == 1
    assert quantity["maximum"] == 99


@pytest.mark.parametrize(
    ("values", "local"),
    [
        ({"max_quantity_per_line": 0}, True),
        ({"max_quantity_per_line": 100}, True),
        ({"max_lines": 0}, True),
        ({"max_lines": 101}, True),
        ({"catalog_timeout_ms": 10}, True),
        ({"cookie_secret": ""}, False),
        ({"cookie_secret": "short"}, False),
    ],
)
def test_bad_settings_stop_the_service(values, local):
    with pytest.raises(SettingsError):
        CartSettings(**values).validate(local=local)


def test_production_takes_a_long_enough_secret():
    CartSettings(cookie_secret="s" * 32).validate(local=False)


async def test_sweeper_deletes_only_carts_nothing_can_reach(
    browsers, catalog, tokens, cart_app, db
):
    product = catalog.add()
    old_guest, fresh_guest = browsers(), browsers()
    old_id = uuid.UUID((await old_guest.add(product, 1)).json()["id"])
    fresh_id = uuid.UUID((await fresh_guest.add(product, 1)).json()["id"])
    token, _ = tokens.customer()
    old_shopper_id = uuid.UUID((await browsers(token).add(product, 1)).json()["id"])
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=45)
    for cart_id in (old_id, old_shopper_id):
        await db.execute(
            "UPDATE cart.carts SET last_activity_at = :t WHERE id = :id", t=long_ago, id=cart_id
        )
    deleted = await sweep_once(cart_app.state.db_engine, cart_app.state.cart_settings)
    assert deleted >= 1
    remaining = {
        row.id
        for row in await db.rows(
            "SELECT id FROM cart.carts WHERE id IN (:a, :b, :c)",
            a=old_id,
            b=fresh_id,
            c=old_shopper_id,
        )
    }
    # A shopper's active cart is kept however old; an idle guest cart (cookie expired) is not.
    assert remaining == {fresh_id, old_shopper_id}
    assert (
        await db.value("SELECT count(*) FROM cart.cart_items WHERE cart_id = :id", id=old_id) == 0
    )
