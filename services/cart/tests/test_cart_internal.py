"""``POST /internal/cart/resolve``: the lines checkout sells, behind the service credential."""

from __future__ import annotations

import os
import uuid

from cart_testkit import problem


def service_headers():
    return {"X-Service-Token": os.environ["INTERNAL_SERVICE_TOKEN"]}


async def resolve(browser, body, headers=None):
    return await browser.client.post(
        "/internal/cart/resolve", json=body, headers=headers or service_headers()
    )


async def test_resolve_needs_the_service_credential(browsers, tokens):
    anyone = browsers()
    problem(await anyone.client.post("/internal/cart/resolve", json={}), 401, "service-credential")
    problem(await resolve(anyone, {}, {"X-Service-Token": "guess"}), 401, "service-credential")
    # A shopper's token is not a service credential.
    token, _ = tokens.customer()
    problem(
        await anyone.client.post(
            "/internal/cart/resolve", json={}, headers={"Authorization": f"Bearer {token}"}
        ),
        401,
    )


async def test_resolve_a_guest_cart_by_its_cookie(browsers, catalog):
    a, b = catalog.add(), catalog.add()
    guest = browsers()
    cart_id = (await guest.add(a, 2)).json()["id"]
    await guest.add(b, 1)
    response = await resolve(browsers(), {"user_id": None, "cart_token": guest.cart_cookie})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "cart_id": cart_id,
        "lines": [
            # A product sold without options is its default variant, with its id.
            {"product_id": str(a), "variant_id": str(a), "quantity": 2},
            {"product_id": str(b), "variant_id": str(b), "quantity": 1},
        ],
    }


async def test_resolve_a_shoppers_cart_and_merge_their_guest_cart(browsers, catalog, tokens):
    a, b = catalog.add(), catalog.add()
    token, user_id = tokens.customer()
    shopper = browsers(token)
    cart_id = (await shopper.add(a, 1)).json()["id"]
    guest = browsers()
    await guest.add(a, 2)
    await guest.add(b, 1)
    body = (
        await resolve(browsers(), {"user_id": str(user_id), "cart_token": guest.cart_cookie})
    ).json()
    assert body["cart_id"] == cart_id
    assert {line["product_id"]: line["quantity"] for line in body["lines"]} == {
        str(a): 3,
        str(b): 1,
    }
    # Merged once: resolving again (or the shopper reading) adds nothing more.
    again = (
        await resolve(browsers(), {"user_id": str(user_id), "cart_token": guest.cart_cookie})
    ).json()
    assert again == body
    # And the guest cookie alone no longer names a cart.
    assert (await resolve(browsers(), {"cart_token": guest.cart_cookie})).json() == {
        "cart_id": None,
        "lines": [],
    }


async def test_resolve_without_cart_or_with_a_forged_token_is_empty(browsers, catalog, tokens):
    empty = {"cart_id": None, "lines": []}
    assert (await resolve(browsers(), {})).json() == empty
    assert (await resolve(browsers(), {"user_id": str(uuid.uuid4())})).json() == empty
    guest = browsers()
    await guest.add(catalog.add(), 1)
    cart_id = guest.cart_cookie.split(".")[0]
    for forged in (cart_id, f"{cart_id}.AAAA", "nonsense", "", "x" * 4096):
        assert (await resolve(browsers(), {"cart_token": forged})).json() == empty


async def test_resolve_rejects_bad_bodies(browsers):
    client = browsers()
    problem(await resolve(client, {"user_id": "not-a-uuid"}), 400)
    problem(await resolve(client, {"cart_token": "x" * 5000}), 400)
    problem(await resolve(client, {"cart_token": 5}), 400)
    problem(await resolve(client, {"surprise": True}), 400)
    problem(await resolve(client, [1]), 400)
