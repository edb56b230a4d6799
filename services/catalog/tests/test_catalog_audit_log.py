"""The audit log as admins read it: every admin write, newest first, filtered and paged."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from catalog.audit.controllers import AUDIT_LOG_PATH
from catalog_testkit import Kit, assert_problem, unique
from ember_devkit.testing.tokens import TokenFactory

Client = httpx.AsyncClient


async def _log(client: Client, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get(AUDIT_LOG_PATH, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _admin_writes(
    client: Client, tokens: TokenFactory
) -> tuple[dict[str, str], uuid.UUID, str]:
    """A new admin creates a product, changes its price and sets its stock, all over HTTP."""
    token, admin_id = tokens.admin(email=f"{unique('auditor')}@ember.test")
    headers = tokens.bearer(token)
    created = await client.post(
        "/api/admin/products",
        json={"name": unique("Logged"), "price": 1200, "on_hand": 5},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    product_id: str = created.json()["id"]
    changed = await client.patch(
        f"/api/admin/products/{product_id}", json={"price": 1350}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    stocked = await client.put(
        f"/api/admin/inventory/{product_id}", json={"on_hand": 9}, headers=headers
    )
    assert stocked.status_code == 200, stocked.text
    return headers, admin_id, product_id


async def test_admin_writes_appear_newest_first_with_before_and_after(
    client: Client, tokens: TokenFactory
) -> None:
    headers, admin_id, product_id = await _admin_writes(client, tokens)

    body = await _log(client, headers, entity_id=product_id)

    assert [e["action"] for e in body["items"]] == [
        "inventory.set",
        "product.updated",
        "product.created",
    ]
    assert body["total"] == 3
    assert (body["page"], body["pages"]) == (1, 1)
    stock, update, create = body["items"]
    for entry in body["items"]:
        assert entry["actor_id"] == str(admin_id)
        assert entry["entity_id"] == product_id
        uuid.UUID(entry["id"])
    assert stock["at"] >= update["at"] >= create["at"]
    assert (create["entity"], create["before"]) == ("product", None)
    assert create["after"]["price"] == 1200
    assert create["after"]["on_hand"] == 5
    assert update["entity"] == "product"
    assert (update["before"]["price"], update["after"]["price"]) == (1200, 1350)
    assert stock["entity"] == "inventory"
    assert stock["before"] == {"on_hand": 5, "reserved": 0}
    assert stock["after"] == {"on_hand": 9, "reserved": 0}


async def test_filters_narrow_the_log_and_combine(
    client: Client, kit: Kit, tokens: TokenFactory
) -> None:
    headers, admin_id, product_id = await _admin_writes(client, tokens)
    # Someone else's write to another product: never in this admin's or this product's entries.
    other = await kit.product()

    products_only = await _log(client, headers, entity="product", entity_id=product_id)
    assert [e["action"] for e in products_only["items"]] == ["product.updated", "product.created"]

    stock_only = await _log(client, headers, entity="inventory", entity_id=product_id)
    assert [e["action"] for e in stock_only["items"]] == ["inventory.set"]

    mine = await _log(client, headers, actor_id=str(admin_id))
    assert mine["total"] == 3
    assert {e["entity_id"] for e in mine["items"]} == {product_id}

    theirs = await _log(client, headers, entity_id=other["id"])
    assert [e["action"] for e in theirs["items"]] == ["product.created"]
    assert theirs["items"][0]["actor_id"] != str(admin_id)

    categories = await _log(client, headers, entity="category", page_size=100)
    assert all(e["entity"] == "category" for e in categories["items"])

    nobody = await _log(client, headers, actor_id=str(uuid.uuid4()))
    assert (nobody["items"], nobody["total"], nobody["pages"]) == ([], 0, 1)


async def test_the_log_pages_newest_first(client: Client, tokens: TokenFactory) -> None:
    headers, admin_id, _ = await _admin_writes(client, tokens)
    everything = await _log(client, headers, actor_id=str(admin_id))

    pages = [
        await _log(client, headers, actor_id=str(admin_id), page=n, page_size=2) for n in (1, 2, 3)
    ]

    assert [len(p["items"]) for p in pages] == [2, 1, 0]
    assert {(p["total"], p["pages"], p["page_size"]) for p in pages} == {(3, 2, 2)}
    assert [e["id"] for p in pages for e in p["items"]] == [e["id"] for e in everything["items"]]


async def test_only_admins_may_read_the_log(client: Client, tokens: TokenFactory) -> None:
    assert_problem(await client.get(AUDIT_LOG_PATH), 401)
    customer, _ = tokens.customer()
    assert_problem(
        await client.get(AUDIT_LOG_PATH, headers=tokens.bearer(customer)), 403, "forbidden"
    )
    expired = tokens.mint(roles=("admin",), expires_in=-60)
    assert_problem(
        await client.get(AUDIT_LOG_PATH, headers=tokens.bearer(expired)), 401, "token-expired"
    )


@pytest.mark.parametrize(
    "params",
    [
        {"entity_id": "not-a-uuid"},
        {"actor_id": "42"},
        {"entity": "order"},
        {"page_size": "0"},
        {"page_size": "10000"},
        {"page_size": "many"},
        {"page": "0"},
        {"page": "10001"},
    ],
)
async def test_bad_query_values_are_refused(
    client: Client, admin_headers: dict[str, str], params: dict[str, str]
) -> None:
    response = await client.get(AUDIT_LOG_PATH, params=params, headers=admin_headers)
    body = assert_problem(response, 400, "validation")
    assert body["errors"], body
