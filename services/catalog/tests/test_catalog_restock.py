"""Returns: a refunded order's units that staff chose to restock (``order.refunded.v1``) go
back on the shelf once, audited, and shoppers see the product available again."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgspec
from catalog.audit.controllers import AUDIT_LOG_PATH
from catalog_testkit import Kit, query, stock
from ember_shared.events.contracts import OrderRefunded, RestockLine


def refunded(lines: list[tuple[str, int]], order_id: uuid.UUID | None = None) -> OrderRefunded:
    return OrderRefunded(
        order_id=order_id or uuid.uuid4(),
        email="shopper@example.com",
        amount=1500,
        amount_refunded=1500,
        total=3000,
        currency="USD",
        fully_refunded=False,
        restock=[RestockLine(product_id=uuid.UUID(p), quantity=q) for p, q in lines],
    )


async def test_a_refund_with_restock_puts_the_units_back_once(
    client: httpx.AsyncClient, kit: Kit, deliver: Any
) -> None:
    beans, mug = await kit.product(on_hand=0), await kit.product(on_hand=4)
    shown = await client.get(f"/api/products/{beans['slug']}")
    assert shown.json()["availability"] == "sold_out"
    event = refunded([(beans["id"], 2), (mug["id"], 1), (beans["id"], 1)])
    event_id = str(uuid.uuid4())

    assert await deliver(event, event_id=event_id)
    assert await stock(client, kit, beans["id"]) == (3, 0)
    assert await stock(client, kit, mug["id"]) == (5, 0)
    # The same event again changes nothing.
    assert not await deliver(event, event_id=event_id)
    assert await stock(client, kit, beans["id"]) == (3, 0)
    # The cached shopper page follows: back in stock.
    shown = await client.get(f"/api/products/{beans['slug']}")
    assert shown.json()["availability"] != "sold_out"

    log = await client.get(
        AUDIT_LOG_PATH, params={"entity": "inventory", "entity_id": beans["id"]}, headers=kit.admin
    )
    (entry,) = [e for e in log.json()["items"] if e["action"] == "inventory.restocked"]
    assert entry["after"]["quantity"] == 3
    assert entry["after"]["order_id"] == str(event.order_id)


async def test_a_refund_without_restock_or_of_an_unknown_product_changes_no_stock(
    client: httpx.AsyncClient, kit: Kit, deliver: Any
) -> None:
    beans = await kit.product(on_hand=5)
    assert await deliver(refunded([]))
    assert await deliver(refunded([(str(uuid.uuid4()), 2), (beans["id"], 1)]))
    assert await stock(client, kit, beans["id"]) == (6, 0)


async def test_a_restock_naming_a_variant_puts_the_units_back_on_that_variant(
    client: httpx.AsyncClient, kit: Kit, deliver: Any
) -> None:
    beans = await kit.product(price=1800, on_hand=10)
    sizes = await client.put(
        f"/api/admin/products/{beans['id']}/variants",
        json={
            "options": [{"name": "Size", "values": ["250 g", "1 kg"]}],
            "variants": [
                {
                    "id": beans["id"],
                    "sku": f"{beans['slug']}-250",
                    "price": 1800,
                    "option_values": ["250 g"],
                },
                {
                    "sku": f"{beans['slug']}-1kg",
                    "price": 5400,
                    "option_values": ["1 kg"],
                    "on_hand": 3,
                },
            ],
        },
        headers=kit.admin,
    )
    assert sizes.status_code == 200, sizes.text
    (kilo,) = [v["id"] for v in sizes.json()["variants"] if v["option_values"] == ["1 kg"]]

    async def on_hand() -> dict[str, int]:
        rows = await query(
            "SELECT variant_id, on_hand FROM catalog.inventory WHERE product_id = :p",
            p=uuid.UUID(beans["id"]),
        )
        return {str(row["variant_id"]): row["on_hand"] for row in rows}

    assert await on_hand() == {beans["id"]: 10, kilo: 3}
    product_id = uuid.UUID(beans["id"])
    event = msgspec.structs.replace(
        refunded([]),
        restock=[
            RestockLine(product_id=product_id, variant_id=uuid.UUID(kilo), quantity=2),
            # An item from before variants names none: the product's default variant.
            RestockLine(product_id=product_id, quantity=1),
        ],
    )
    assert await deliver(event)
    assert await on_hand() == {beans["id"]: 11, kilo: 5}
