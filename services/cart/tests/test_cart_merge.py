"""Signing in merges the guest cart into the shopper's: added up, capped, once."""

from __future__ import annotations

import asyncio
import uuid

from cart_testkit import line_of, problem, set_cookie_headers


def quantities(cart):
    return {uuid.UUID(line["product_id"]): line["quantity"] for line in cart["lines"]}


async def guest_with(browsers, lines):
    guest = browsers()
    for product, quantity in lines:
        assert (await guest.add(product, quantity)).status_code == 201
    return guest


def sign_in(guest, token):
    """The same browser after sign-in: it keeps its cookies and now has a token."""
    guest.token = token
    return guest


async def test_sign_in_merges_guest_lines_into_the_shoppers_cart(browsers, catalog, tokens, db):
    a, b, c = catalog.add(), catalog.add(), catalog.add()
    token, user_id = tokens.customer()
    other_device = browsers(token)
    await other_device.add(a, 3)
    await other_device.add(c, 1)
    guest = await guest_with(browsers, [(a, 2), (b, 1)])
    guest_cart_id = uuid.UUID(guest.cart_cookie.split(".")[0])

    response = await sign_in(guest, token).get()
    assert response.status_code == 200
    cart = response.json()
    assert quantities(cart) == {a: 5, b: 1, c: 1}
    assert cart["merge"]["merged"] is True
    assert cart["merge"]["from_cart_id"] == str(guest_cart_id)
    assert cart["merge"]["lines_merged"] == 2
    assert cart["merge"]["adjustments"] == []
    (cleared,) = set_cookie_headers(response)
    assert "max-age=0" in cleared.lower()
    assert guest.cart_cookie is None
    # The shopper's other device sees the merged cart too.
    assert quantities((await other_device.get()).json()) == {a: 5, b: 1, c: 1}
    rows = await db.rows(
        "SELECT status, merged_into_id FROM cart.carts WHERE id = :id", id=guest_cart_id
    )
    assert rows[0].status == "merged"
    assert str(rows[0].merged_into_id) == cart["id"]
    assert (
        await db.value("SELECT count(*) FROM cart.cart_items WHERE cart_id = :id", id=guest_cart_id)
        == 0
    )
    assert (
        await db.value(
            "SELECT count(*) FROM cart.carts WHERE user_id = :u AND status = 'active'", u=user_id
        )
        == 1
    )


async def test_merge_into_a_shopper_without_a_cart(browsers, catalog, tokens):
    a = catalog.add()
    guest = await guest_with(browsers, [(a, 4)])
    token, _ = tokens.customer()
    cart = (await sign_in(guest, token).get()).json()
    assert quantities(cart) == {a: 4}
    assert cart["merge"]["merged"] is True


async def test_merge_caps_by_line_limit_and_stock_and_keeps_unsellable_lines_flagged(
    browsers, catalog, tokens
):
    limited = catalog.add(available=100)
    scarce = catalog.add(available=6)
    sold_out_later = catalog.add(available=5)
    archived_later = catalog.add()
    token, _ = tokens.customer()
    shopper = browsers(token)
    await shopper.add(limited, 5)
    await shopper.add(scarce, 3)
    await shopper.add(archived_later, 2)
    guest = await guest_with(
        browsers, [(limited, 8), (scarce, 4), (sold_out_later, 3), (archived_later, 1)]
    )
    catalog.update(sold_out_later, available=0)
    catalog.update(archived_later, active=False)

    response = await sign_in(guest, token).post("/api/cart/merge")
    assert response.status_code == 200, response.text
    cart = response.json()
    assert quantities(cart) == {limited: 10, scarce: 6, sold_out_later: 3, archived_later: 2}
    adjustments = {uuid.UUID(a["product_id"]): a for a in cart["merge"]["adjustments"]}
    assert adjustments[limited] == {
        "product_id": str(limited),
        "variant_id": str(limited),
        "requested": 8,
        "added": 5,
        "quantity": 10,
        "reason": "quantity-limit",
    }
    assert adjustments[scarce]["reason"] == "stock"
    assert adjustments[scarce]["added"] == 3
    assert adjustments[archived_later]["reason"] == "unavailable"
    assert adjustments[archived_later]["added"] == 0
    assert sold_out_later not in adjustments  # moved over whole, shown flagged
    assert line_of(cart, sold_out_later)["sold_out"] is True
    assert line_of(cart, archived_later)["archived"] is True
    assert cart["checkout_ready"] is False


async def test_merge_respects_the_line_count_limit(browsers, catalog, tokens, limits):
    limits(max_lines=3)
    mine = [catalog.add() for _ in range(2)]
    theirs = [catalog.add() for _ in range(2)]
    token, _ = tokens.customer()
    shopper = browsers(token)
    for product in mine:
        await shopper.add(product, 1)
    guest = await guest_with(browsers, [(p, 1) for p in theirs])
    cart = (await sign_in(guest, token).get()).json()
    assert cart["line_count"] == 3
    assert set(quantities(cart)) == {*mine, theirs[0]}
    (full,) = cart["merge"]["adjustments"]
    assert full["product_id"] == str(theirs[1])
    assert full["reason"] == "cart-full"
    assert full["added"] == 0


async def test_merge_happens_once_even_when_the_cookie_comes_back(browsers, catalog, tokens):
    a = catalog.add()
    guest = await guest_with(browsers, [(a, 2)])
    cookie = guest.cart_cookie
    token, _ = tokens.customer()
    first = (await sign_in(guest, token).post("/api/cart/merge")).json()
    assert first["merge"]["merged"] is True
    assert quantities(first) == {a: 2}
    # A replayed (or still-held) cookie of the merged cart merges nothing more.
    guest.client.cookies.set("ember_cart", cookie, domain="shop.test")
    again = await guest.post("/api/cart/merge")
    assert again.status_code == 200
    assert again.json()["merge"] == {
        "merged": False,
        "from_cart_id": None,
        "lines_merged": 0,
        "adjustments": [],
    }
    assert any("max-age=0" in h.lower() for h in set_cookie_headers(again))
    guest.client.cookies.set("ember_cart", cookie, domain="shop.test")
    assert quantities((await guest.get()).json()) == {a: 2}
    # With no guest cookie at all there is nothing to merge either.
    plain = browsers(token)
    assert (await plain.post("/api/cart/merge")).json()["merge"]["merged"] is False


async def test_concurrent_requests_merge_once(browsers, catalog, tokens, db):
    a, b = catalog.add(available=100), catalog.add(available=100)
    token, user_id = tokens.customer()
    shopper = browsers(token)
    await shopper.add(a, 1)
    guest = await guest_with(browsers, [(a, 2), (b, 3)])
    cookie = guest.cart_cookie
    racers = []
    for index in range(8):
        racer = browsers(token)
        racer.client.cookies.set("ember_cart", cookie, domain="shop.test")
        racers.append(racer.post("/api/cart/merge") if index % 2 else racer.get())
    answers = await asyncio.gather(*racers)
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
    merged = [answer.json()["merge"] for answer in answers if answer.json()["merge"]]
    assert sum(1 for m in merged if m["merged"]) == 1
    assert quantities((await shopper.get()).json()) == {a: 3, b: 3}
    assert await db.value("SELECT count(*) FROM cart.carts WHERE user_id = :u", u=user_id) == 1


async def test_first_sign_in_races_make_one_shopper_cart(browsers, catalog, tokens, db):
    a = catalog.add()
    token, user_id = tokens.customer()
    answers = await asyncio.gather(*(browsers(token).add(a, 1) for _ in range(6)))
    assert all(answer.status_code == 201 for answer in answers), [a.text for a in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert await db.value("SELECT count(*) FROM cart.carts WHERE user_id = :u", u=user_id) == 1
    assert quantities((await browsers(token).get()).json()) == {a: 6}


async def test_merge_waits_while_catalog_is_down(browsers, catalog, tokens, db):
    a = catalog.add()
    guest = await guest_with(browsers, [(a, 2)])
    guest_cart_id = uuid.UUID(guest.cart_cookie.split(".")[0])
    token, _ = tokens.customer()
    sign_in(guest, token)
    catalog.mode = "error"
    response = await guest.get()
    assert response.status_code == 200
    assert response.json()["merge"] is None
    assert set_cookie_headers(response) == []  # the guest cookie stays for a later merge
    assert guest.cart_cookie is not None
    assert (
        await db.value("SELECT status FROM cart.carts WHERE id = :id", id=guest_cart_id) == "active"
    )
    problem(await guest.post("/api/cart/merge"), 503, "catalog-unavailable")
    catalog.mode = "ok"
    cart = (await guest.get()).json()
    assert cart["merge"]["merged"] is True
    assert quantities(cart) == {a: 2}


async def test_an_empty_guest_cart_merges_without_catalog(browsers, catalog, tokens, db):
    guest = browsers()
    assert (await guest.post("/api/cart")).status_code == 201
    guest_cart_id = uuid.UUID(guest.cart_cookie.split(".")[0])
    token, _ = tokens.customer()
    catalog.mode = "error"
    response = await sign_in(guest, token).get()
    assert response.json()["merge"]["merged"] is True
    assert (
        await db.value("SELECT status FROM cart.carts WHERE id = :id", id=guest_cart_id) == "merged"
    )
