"""Search over what variants sell: a variant's exact SKU finds its product first (naming the
variant, for a deep link), an option value finds the products that sell it, and neither a
deactivated variant's SKU nor a retired option value finds anything any more."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from catalog_testkit import Kit

Client = httpx.AsyncClient


async def _sell(
    client: Client, kit: Kit, product: dict[str, Any], grinds: list[str], tag: str
) -> dict[str, Any]:
    """``product`` sold in each grind: the first keeps the default variant's id."""
    variants = [
        {
            "sku": f"{tag}-{n}-1KG",
            "price": 5000 + n,
            "option_values": [grind],
            **({"id": product["id"]} if n == 0 else {"on_hand": 5}),
        }
        for n, grind in enumerate(grinds)
    ]
    response = await client.put(
        f"/api/admin/products/{product['id']}/variants",
        json={"options": [{"name": "Grind", "values": grinds}], "variants": variants},
        headers=kit.admin,
    )
    assert response.status_code == 200, response.text
    return {v["sku"]: v for v in response.json()["variants"]}


async def _search(client: Client, q: str) -> list[dict[str, Any]]:
    response = await client.get("/api/products/search", params={"q": q})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_variants_sku_finds_its_product_first_and_names_the_variant(
    client: Client, kit: Kit
) -> None:
    tag = f"ZQ{uuid.uuid4().hex[:8].upper()}"
    product = await kit.product(name=f"Sku Coffee {tag}")
    # Another product whose text has the SKU's words: it matches them, but ranks below.
    other = await kit.product(name=f"Other {tag}", description=f"Not {tag} 1 1kg, of course.")
    await _sell(client, kit, product, ["Whole bean", "Espresso"], tag)

    for typed in (f"{tag}-1-1KG", f"  {tag.lower()}-1-1kg "):
        items = await _search(client, typed)
        assert items[0]["id"] == product["id"], typed
        assert items[0]["variant_sku"] == f"{tag}-1-1kg".lower()
        assert all(i["variant_sku"] is None for i in items[1:])
    # The same words, not as one SKU: no variant is named.
    words = await _search(client, f"{tag} 1 1kg")
    assert other["id"] in [i["id"] for i in words]
    assert all(i["variant_sku"] is None for i in words)
    # A listing names none.
    listing = (await client.get("/api/products", params={"page_size": 5})).json()
    assert all(i["variant_sku"] is None for i in listing["items"])


async def test_an_option_value_finds_the_products_that_sell_it(client: Client, kit: Kit) -> None:
    grind = f"Kyoto{uuid.uuid4().hex[:8]}"
    tag = f"ZQ{uuid.uuid4().hex[:8].upper()}"
    seller = await kit.product(name=f"Drip Coffee {tag}")
    await kit.product(name=f"Plain Coffee {tag}")
    assert await _search(client, grind) == []
    await _sell(client, kit, seller, ["Whole bean", grind], tag)
    assert [i["id"] for i in await _search(client, grind)] == [seller["id"]]
    # Found with the product's other words too, and through a typo of the value.
    assert [i["id"] for i in await _search(client, f"drip {grind}")] == [seller["id"]]
    assert [i["id"] for i in await _search(client, grind[:-1] + "x")] == [seller["id"]]

    # The grind stops being sold: the product no longer matches it.
    response = await client.put(
        f"/api/admin/products/{seller['id']}/variants",
        json={
            "options": [{"name": "Grind", "values": ["Whole bean"]}],
            "variants": [
                {
                    "id": seller["id"],
                    "sku": f"{tag}-0-1KG",
                    "price": 5000,
                    "option_values": ["Whole bean"],
                }
            ],
        },
        headers=kit.admin,
    )
    assert response.status_code == 200, response.text
    assert await _search(client, grind) == []


async def test_a_deactivated_variants_sku_finds_nothing(client: Client, kit: Kit) -> None:
    tag = f"ZQ{uuid.uuid4().hex[:8].upper()}"
    product = await kit.product(name=f"Retired Coffee {tag}")
    sold = await _sell(client, kit, product, ["Whole bean", "Filter", "Espresso"], tag)
    retired = f"{tag}-2-1KG"
    assert (await _search(client, retired))[0]["id"] == product["id"]

    kept = [v for sku, v in sold.items() if sku != retired]
    response = await client.put(
        f"/api/admin/products/{product['id']}/variants",
        json={
            "options": [{"name": "Grind", "values": ["Whole bean", "Filter", "Espresso"]}],
            "variants": [
                {
                    "id": v["id"],
                    "sku": v["sku"],
                    "price": v["price"],
                    "option_values": v["option_values"],
                }
                for v in kept
            ],
        },
        headers=kit.admin,
    )
    assert response.status_code == 200, response.text
    retired_row = next(v for v in response.json()["variants"] if v["sku"] == retired)
    assert retired_row["active"] is False
    assert await _search(client, retired) == []
    # Its siblings' SKUs still find the product.
    assert (await _search(client, f"{tag}-1-1KG"))[0]["id"] == product["id"]
