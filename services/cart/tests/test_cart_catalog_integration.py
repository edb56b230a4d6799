"""The cart against the real catalog service: its lookup route, products made by its admin API.

The other cart tests use ``FakeCatalog`` (conftest) for speed and for outages; this one checks
that the real catalog answers what the cart relies on: prices, availability, archived products.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from cart.catalog import CatalogClient
from cart_testkit import line_of, problem
from catalog.app import create_app as create_catalog_app
from ember_devkit.testing.apps import serve


@pytest.fixture(scope="module")
def real_catalog(ember_env: Any) -> Iterator[str]:
    with serve(create_catalog_app()) as url:
        yield url


@pytest.fixture
async def cart_on_real_catalog(cart_app, real_catalog) -> AsyncIterator[None]:
    original = cart_app.state.catalog
    client = CatalogClient(real_catalog, 3000)
    cart_app.state.catalog = client
    yield
    cart_app.state.catalog = original
    await client.aclose()


@pytest.fixture
async def admin(real_catalog, tokens) -> AsyncIterator[httpx.AsyncClient]:
    token, _ = tokens.admin()
    async with httpx.AsyncClient(
        base_url=real_catalog, headers=tokens.bearer(token), timeout=10
    ) as client:
        yield client


async def make_product(admin: httpx.AsyncClient, name: str, price: int, on_hand: int) -> str:
    response = await admin.post(
        "/api/admin/products", json={"name": name, "price": price, "on_hand": on_hand}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_cart_prices_and_checks_stock_with_the_real_catalog(
    cart_on_real_catalog, admin, browsers
):
    house = await make_product(admin, "House Blend Integration", 1800, 5)
    rare = await make_product(admin, "Rare Geisha Integration", 4200, 2)
    guest = browsers()

    cart = (await guest.add(house, 3)).json()
    line = line_of(cart, house)
    assert line["name"] == "House Blend Integration"
    assert line["unit_price"] == 1800
    assert line["currency"] == "USD"
    assert line["availability"] in {"in_stock", "low_stock"}
    assert line["purchasable"] is True

    body = problem(await guest.add(rare, 3), 409, "insufficient-stock")
    assert body["available"] == 2
    cart = (await guest.add(rare, 2)).json()
    assert cart["subtotal"] == 3 * 1800 + 2 * 4200

    # Staff sell out one and archive the other: the lines stay, flagged.
    assert (await admin.put(f"/api/admin/inventory/{rare}", json={"on_hand": 0})).status_code == 200
    assert (await admin.post(f"/api/admin/products/{house}/archive")).status_code == 200
    cart = (await guest.get()).json()
    assert cart["pricing_unavailable"] is False
    assert line_of(cart, rare)["sold_out"] is True
    assert line_of(cart, house)["archived"] is True
    assert cart["subtotal"] == 0
    assert cart["checkout_ready"] is False
    problem(await guest.add(rare, 1), 409, "sold-out")
    problem(await guest.add(house, 1), 409, "product-archived")


async def test_unknown_product_is_404_with_the_real_catalog(cart_on_real_catalog, browsers):
    import uuid

    problem(await browsers().add(uuid.uuid4(), 1), 404, "product-not-found")


async def test_cart_lines_of_variants_with_the_real_catalog(cart_on_real_catalog, admin, browsers):
    coffee = await make_product(admin, "Variant Blend Integration", 1500, 9)
    slug = f"vbi-{coffee[-8:]}"
    response = await admin.put(
        f"/api/admin/products/{coffee}/variants",
        json={
            "options": [{"name": "Size", "values": ["250 g", "1 kg"]}],
            "variants": [
                {"id": coffee, "sku": f"{slug}-250", "price": 1500, "option_values": ["250 g"]},
                {"sku": f"{slug}-1kg", "price": 5200, "option_values": ["1 kg"], "on_hand": 3},
            ],
        },
    )
    assert response.status_code == 200, response.text
    kilo = next(v["id"] for v in response.json()["variants"] if v["option_values"] == ["1 kg"])
    guest = browsers()
    await guest.add(coffee, 1)
    added = await guest.post(
        "/api/cart/items", {"product_id": coffee, "variant_id": kilo, "quantity": 3}
    )
    assert added.status_code == 201, added.text
    lines = {line["variant_id"]: line for line in added.json()["lines"]}
    assert (lines[kilo]["unit_price"], lines[kilo]["sku"], lines[kilo]["variant_title"]) == (
        5200,
        f"{slug}-1kg",
        "1 kg",
    )
    assert lines[coffee]["variant_title"] == "250 g"
    assert added.json()["subtotal"] == 1500 + 3 * 5200
    body = problem(
        await guest.post(
            "/api/cart/items", {"product_id": coffee, "variant_id": kilo, "quantity": 1}
        ),
        409,
        "insufficient-stock",
    )
    assert body["available"] == 3
