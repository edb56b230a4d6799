"""Variants: a product's options and the variants it sells, each with its own SKU, price,
weight and stock; reservations per variant (never oversold), the product page's picker data,
the lookup other services read, and the default variant that keeps product ids working."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from catalog_testkit import Kit, assert_problem, query, race_watched

Client = httpx.AsyncClient

GRIND = {"name": "Grind", "values": ["Whole bean", "Filter", "Espresso"]}
SIZE = {"name": "Size", "values": ["250 g", "1 kg"]}


def coffee_variants(product: dict[str, Any], *, kilo_espresso_stock: int = 5) -> dict[str, Any]:
    """Whole bean 250 g keeps the default variant's id; four more combinations are new."""
    tag = product["slug"]
    return {
        "options": [GRIND, SIZE],
        "variants": [
            {
                "id": product["id"],
                "sku": f"{tag}-wb-250",
                "price": 1600,
                "weight_grams": 250,
                "option_values": ["Whole bean", "250 g"],
            },
            {
                "sku": f"{tag}-fi-250",
                "price": 1600,
                "weight_grams": 250,
                "option_values": ["Filter", "250 g"],
                "on_hand": 8,
            },
            {
                "sku": f"{tag}-es-250",
                "price": 1600,
                "weight_grams": 250,
                "option_values": ["Espresso", "250 g"],
                "on_hand": 0,
            },
            {
                "sku": f"{tag}-wb-1kg",
                "price": 5400,
                "weight_grams": 1000,
                "option_values": ["Whole bean", "1 kg"],
                "on_hand": 40,
            },
            {
                "sku": f"{tag}-es-1kg",
                "price": 5600,
                "weight_grams": 1000,
                "option_values": ["Espresso", "1 kg"],
                "on_hand": kilo_espresso_stock,
            },
        ],
    }


async def with_variants(client: Client, kit: Kit, **extra: Any) -> dict[str, Any]:
    product = await kit.product(price=1500, on_hand=30)
    response = await client.put(
        f"/api/admin/products/{product['id']}/variants",
        json=coffee_variants(product, **extra),
        headers=kit.admin,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    by_values = {tuple(v["option_values"]): v for v in body["variants"]}
    return {**product, "variants": by_values, "admin": body}


async def test_options_and_variants_are_set_and_shown(client: Client, kit: Kit) -> None:
    product = await with_variants(client, kit)
    admin = product["admin"]
    assert admin["options"] == [GRIND, SIZE]
    assert [v["title"] for v in admin["variants"]] == [
        "Whole bean / 250 g",
        "Filter / 250 g",
        "Espresso / 250 g",
        "Whole bean / 1 kg",
        "Espresso / 1 kg",
    ]
    default = product["variants"][("Whole bean", "250 g")]
    # The default variant kept its id and its stock; the new ones got theirs.
    assert (default["id"], default["on_hand"], default["price"]) == (product["id"], 30, 1600)
    assert product["variants"][("Filter", "250 g")]["on_hand"] == 8

    page = (await client.get(f"/api/products/{product['slug']}")).json()
    assert page["options"] == [GRIND, SIZE]
    # The listing's and the page's price is the lowest of the variants on sale.
    assert page["price"] == 1600
    shown = {tuple(v["option_values"]): v for v in page["variants"]}
    assert set(shown) == set(product["variants"])
    kilo = shown[("Espresso", "1 kg")]
    assert kilo == {
        "id": product["variants"][("Espresso", "1 kg")]["id"],
        "sku": f"{product['slug']}-es-1kg",
        "option_values": ["Espresso", "1 kg"],
        "title": "Espresso / 1 kg",
        "price": 5600,
        "weight_grams": 1000,
        "availability": "low_stock",
    }
    assert shown[("Espresso", "250 g")]["availability"] == "sold_out"
    assert shown[("Whole bean", "1 kg")]["availability"] == "in_stock"

    whole = (await client.get(f"/api/admin/products/{product['id']}", headers=kit.admin)).json()
    assert len(whole["variants"]) == 5
    assert whole["stock"]["on_hand"] == 30 + 8 + 0 + 40 + 5


async def test_a_product_without_options_has_its_default_variant(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    product = await kit.product(price=1250, on_hand=7, weight_grams=340)
    page = (await client.get(f"/api/products/{product['slug']}")).json()
    assert page["options"] == []
    assert [(v["id"], v["sku"], v["price"], v["weight_grams"]) for v in page["variants"]] == [
        (product["id"], product["slug"], 1250, 340)
    ]
    # A price or weight change of such a product is its default variant's.
    patched = await client.patch(
        f"/api/admin/products/{product['id']}",
        json={"price": 1300, "weight_grams": 300},
        headers=kit.admin,
    )
    assert patched.status_code == 200, patched.text
    looked = await client.post(
        "/internal/catalog/products/lookup",
        json={"product_ids": [product["id"]], "variant_ids": [product["id"]]},
        headers=service_headers,
    )
    body = looked.json()
    assert [(p["price"], p["weight_grams"]) for p in body["products"]] == [(1300, 300)]
    assert body["variants"] == body["products"]


async def test_reservations_and_lookup_are_per_variant(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    product = await with_variants(client, kit)
    kilo = product["variants"][("Espresso", "1 kg")]
    filter_bag = product["variants"][("Filter", "250 g")]
    other = await kit.product(on_hand=5)

    def line(variant: dict[str, Any], quantity: int) -> dict[str, Any]:
        return {"product_id": product["id"], "variant_id": variant["id"], "quantity": quantity}

    async def reserve_lines(lines: list[dict[str, Any]]) -> httpx.Response:
        return await client.post(
            "/internal/catalog/reservations",
            json={"order_id": str(uuid.uuid4()), "lines": lines, "ttl_seconds": 600},
            headers=service_headers,
        )

    held = await reserve_lines([line(kilo, 3), line(filter_bag, 2), line(kilo, 1)])
    assert held.status_code == 201, held.text
    assert sorted((x["variant_id"], x["quantity"]) for x in held.json()["lines"]) == sorted(
        [(kilo["id"], 4), (filter_bag["id"], 2)]
    )
    # Only the kilo of espresso is short: the request is refused whole, naming it.
    refused = await reserve_lines([line(kilo, 2), line(filter_bag, 1)])
    body = assert_problem(refused, 409, "insufficient-stock")
    assert body["unavailable"] == [
        {"product_id": product["id"], "variant_id": kilo["id"], "requested": 2, "available": 1}
    ]
    # A variant named with another product is not that product's.
    wrong = await reserve_lines(
        [{"product_id": other["id"], "variant_id": kilo["id"], "quantity": 1}]
    )
    assert_problem(wrong, 409, "insufficient-stock")

    looked = await client.post(
        "/internal/catalog/products/lookup",
        json={"product_ids": [product["id"]], "variant_ids": [kilo["id"], str(uuid.uuid4())]},
        headers=service_headers,
    )
    answer = looked.json()
    assert [(p["variant_id"], p["price"]) for p in answer["products"]] == [(product["id"], 1600)]
    [variant] = answer["variants"]
    assert variant["id"] == product["id"]
    assert (variant["variant_id"], variant["sku"], variant["variant_title"]) == (
        kilo["id"],
        f"{product['slug']}-es-1kg",
        "Espresso / 1 kg",
    )
    assert (variant["price"], variant["available"], variant["weight_grams"]) == (5600, 1, 1000)
    rows = await query(
        "SELECT variant_id, on_hand, reserved FROM catalog.inventory WHERE product_id = :p",
        p=uuid.UUID(product["id"]),
    )
    stock = {str(r["variant_id"]): (r["on_hand"], r["reserved"]) for r in rows}
    assert stock[kilo["id"]] == (5, 4)
    assert stock[filter_bag["id"]] == (8, 2)
    assert stock[product["id"]] == (30, 0)


async def test_two_hundred_buyers_race_for_fifty_units_of_one_variant(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    product = await with_variants(client, kit, kilo_espresso_stock=50)
    kilo = product["variants"][("Espresso", "1 kg")]

    async def buy() -> httpx.Response:
        return await client.post(
            "/internal/catalog/reservations",
            json={
                "order_id": str(uuid.uuid4()),
                "lines": [{"product_id": product["id"], "variant_id": kilo["id"], "quantity": 1}],
                "ttl_seconds": 600,
            },
            headers=service_headers,
        )

    answers, lowest = await race_watched(
        kilo["id"], lambda: asyncio.gather(*(buy() for _ in range(200)))
    )
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 50
    assert statuses.count(409) == 150
    assert min(lowest) >= 0
    assert len(lowest) > 1
    granted = await query(
        "SELECT count(*) AS n, sum(quantity) AS q FROM catalog.reservation_lines"
        " WHERE variant_id = :v",
        v=uuid.UUID(kilo["id"]),
    )
    assert (granted[0]["n"], granted[0]["q"]) == (50, 50)
    rows = await query(
        "SELECT variant_id, on_hand, reserved FROM catalog.inventory WHERE product_id = :p",
        p=uuid.UUID(product["id"]),
    )
    stock = {str(r["variant_id"]): (r["on_hand"], r["reserved"]) for r in rows}
    assert stock[kilo["id"]] == (50, 50)
    # The other variants of the product were not touched.
    assert sum(reserved for variant, (_, reserved) in stock.items() if variant != kilo["id"]) == 0
    page = (await client.get(f"/api/products/{product['slug']}")).json()
    shown = {v["id"]: v["availability"] for v in page["variants"]}
    assert shown[kilo["id"]] == "sold_out"
    assert page["availability"] == "in_stock"


async def test_variant_edits_are_checked_and_retire_what_is_not_listed(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    product = await with_variants(client, kit)
    path = f"/api/admin/products/{product['id']}/variants"
    current = [
        {
            "id": v["id"],
            "sku": v["sku"],
            "price": v["price"],
            "option_values": v["option_values"],
        }
        for v in product["admin"]["variants"]
    ]
    # A value that is not one of the option's, a repeated combination, a repeated SKU, a
    # variant of another product, a second variant without options: each refused.
    bad = [
        {**current[0], "option_values": ["Cold brew", "250 g"]},
        {**current[1], "option_values": current[0]["option_values"]},
        {**current[1], "sku": current[0]["sku"].upper()},
        {**current[1], "id": str(uuid.uuid4())},
    ]
    for index, changed in enumerate(bad):
        variants = [changed if i == (0 if index == 0 else 1) else v for i, v in enumerate(current)]
        response = await client.put(
            path, json={"options": [GRIND, SIZE], "variants": variants}, headers=kit.admin
        )
        assert response.status_code == 400, (index, response.text)
    no_options = await client.put(
        path, json={"options": [], "variants": current[:2]}, headers=kit.admin
    )
    assert_problem(no_options, 400, "invalid-variants")
    other = await kit.product()
    taken = await client.put(
        f"/api/admin/products/{other['id']}/variants",
        json={"options": [], "variants": [{"sku": current[0]["sku"], "price": 100}]},
        headers=kit.admin,
    )
    assert_problem(taken, 409, "duplicate-sku")
    # A product with variants has no price of its own to set.
    assert_problem(
        await client.patch(
            f"/api/admin/products/{product['id']}", json={"price": 99}, headers=kit.admin
        ),
        409,
        "price-per-variant",
    )

    # Drop the 1 kg size; swap two SKUs in passing.
    kept = [v for v in current if v["option_values"][1] == "250 g"]
    kept[1]["sku"], kept[2]["sku"] = kept[2]["sku"], kept[1]["sku"]
    response = await client.put(
        path,
        json={"options": [GRIND, {"name": "Size", "values": ["250 g"]}], "variants": kept},
        headers=kit.admin,
    )
    assert response.status_code == 200, response.text
    after = response.json()["variants"]
    assert [(v["sku"], v["active"]) for v in after[:3]] == [(v["sku"], True) for v in kept]
    assert {v["active"] for v in after[3:]} == {False}
    page = (await client.get(f"/api/products/{product['slug']}")).json()
    assert len(page["variants"]) == 3
    retired = product["variants"][("Whole bean", "1 kg")]["id"]
    refused = await client.post(
        "/internal/catalog/reservations",
        json={
            "order_id": str(uuid.uuid4()),
            "lines": [{"product_id": product["id"], "variant_id": retired, "quantity": 1}],
            "ttl_seconds": 600,
        },
        headers=service_headers,
    )
    assert_problem(refused, 409, "insufficient-stock")


async def test_stock_is_set_per_variant(client: Client, kit: Kit) -> None:
    product = await with_variants(client, kit)
    kilo = product["variants"][("Espresso", "1 kg")]
    one = await client.put(
        f"/api/admin/inventory/variants/{kilo['id']}", json={"on_hand": 12}, headers=kit.admin
    )
    assert one.status_code == 200, one.text
    assert (one.json()["variant_id"], one.json()["on_hand"], one.json()["sku"]) == (
        kilo["id"],
        12,
        kilo["sku"],
    )
    many = await client.put(
        "/api/admin/inventory",
        json={
            "items": [
                {"product_id": product["id"], "variant_id": kilo["id"], "on_hand": 3},
                {"product_id": product["id"], "on_hand": 11},
            ]
        },
        headers=kit.admin,
    )
    assert many.status_code == 200, many.text
    assert {(r["variant_id"], r["on_hand"]) for r in many.json()["items"]} == {
        (kilo["id"], 3),
        (product["id"], 11),
    }
    other = await kit.product()
    mismatched = await client.put(
        "/api/admin/inventory",
        json={"items": [{"product_id": other["id"], "variant_id": kilo["id"], "on_hand": 1}]},
        headers=kit.admin,
    )
    assert_problem(mismatched, 404)
    listing = await client.get(
        "/api/admin/inventory", params={"q": product["slug"]}, headers=kit.admin
    )
    rows = listing.json()["items"]
    assert {r["variant_id"] for r in rows} == {v["id"] for v in product["variants"].values()}
