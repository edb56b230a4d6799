"""Checkout sells variants: each line is priced, held and named as the variant the cart holds
(its own price and stock, its option values on Stripe's line item), never as its product's
default variant."""

from __future__ import annotations

import uuid
from typing import Any

from checkout_testkit import World


async def with_kilo(world: World, *, kilo_stock: int) -> tuple[uuid.UUID, str]:
    """A coffee by the bag (its default variant, 1800) or by the kilo (5400)."""
    product_id = await world.product(price=1800, on_hand=20)
    tag = product_id.hex[-10:]
    response = await world.http.put(
        f"{world.catalog_url}/api/admin/products/{product_id}/variants",
        json={
            "options": [{"name": "Size", "values": ["250 g", "1 kg"]}],
            "variants": [
                {
                    "id": str(product_id),
                    "sku": f"v-{tag}-250",
                    "price": 1800,
                    "option_values": ["250 g"],
                },
                {
                    "sku": f"v-{tag}-1kg",
                    "price": 5400,
                    "option_values": ["1 kg"],
                    "on_hand": kilo_stock,
                    "weight_grams": 1000,
                },
            ],
        },
        headers=world.admin_headers(),
    )
    assert response.status_code == 200, response.text
    kilo = next(v for v in response.json()["variants"] if v["option_values"] == ["1 kg"])
    return product_id, str(kilo["id"])


async def test_a_variant_is_priced_held_and_named_as_itself(world: World) -> None:
    product_id, kilo = await with_kilo(world, kilo_stock=4)
    shopper = world.guest()
    await shopper.add(product_id, 1)
    added = await shopper.http.post(
        f"{world.cart_url}/api/cart/items",
        json={"product_id": str(product_id), "variant_id": kilo, "quantity": 3},
    )
    assert added.status_code == 201, added.text

    response = await shopper.checkout()
    assert response.status_code == 201, response.text
    body = response.json()
    lines: dict[str, Any] = {line["variant_id"]: line for line in body["lines"]}
    assert (lines[kilo]["unit_price"], lines[kilo]["quantity"]) == (5400, 3)
    assert lines[kilo]["variant_title"] == "1 kg"
    assert lines[kilo]["sku"] == f"v-{product_id.hex[-10:]}-1kg"
    assert lines[str(product_id)]["unit_price"] == 1800
    assert body["subtotal"] == 1800 + 3 * 5400

    # Catalog holds the kilo's own stock, not the bag's.
    reservation = await world.reservation(body["order_id"])
    assert reservation is not None
    held = {line["variant_id"]: line["quantity"] for line in reservation["lines"]}
    assert held == {kilo: 3, str(product_id): 1}

    # Stripe's line items charge and name the variant.
    row = await world.row(body["order_id"])
    stripe = await world.stripe_session(row["stripe_session_id"])
    charged = sorted((i["price"]["unit_amount"], i["quantity"]) for i in stripe["line_items"])
    assert charged == [(1800, 1), (5400, 3)]
    names = " | ".join(str(i) for i in stripe["line_items"])
    assert " - 1 kg" in names, names

    # Stripe lets the session lapse: the variants' stock comes back (and the suite's budget of
    # open checkouts per client is not spent on this one).
    await world.control("POST", f"/sessions/{row['stripe_session_id']}/expire")
    await world.checkout_status(body["order_id"], "expired")
    released = await world.reservation_status(body["order_id"], "released")
    assert {line["variant_id"] for line in released["lines"]} == {kilo, str(product_id)}


async def test_a_short_variant_is_refused_by_itself(world: World) -> None:
    product_id, kilo = await with_kilo(world, kilo_stock=2)
    shopper = world.guest()
    added = await shopper.http.post(
        f"{world.cart_url}/api/cart/items",
        json={"product_id": str(product_id), "variant_id": kilo, "quantity": 2},
    )
    assert added.status_code == 201, added.text
    # The kilo sells out after it went in the cart; the bag is plentiful.
    sold = await world.http.put(
        f"{world.catalog_url}/api/admin/inventory/variants/{kilo}",
        json={"on_hand": 1},
        headers=world.admin_headers(),
    )
    assert sold.status_code == 200, sold.text
    response = await shopper.checkout()
    assert response.status_code == 409, response.text
    assert (await world.stock(product_id))["available"] == 20
