"""Signed-in shoppers: their cart is theirs alone, whatever cookie or token anyone presents."""

from __future__ import annotations

import uuid

from cart_testkit import line_of, problem, set_cookie_headers


async def test_signed_in_cart_follows_the_shopper_across_devices(browsers, catalog, tokens, db):
    token, user_id = tokens.customer()
    product = catalog.add(price=990)
    phone, laptop = browsers(token), browsers(token)
    assert (await phone.get()).json()["id"] is None
    response = await phone.add(product, 2)
    assert response.status_code == 201
    assert set_cookie_headers(response) == []  # no guest cookie for a shopper
    cart = (await laptop.get()).json()
    assert cart["id"] == response.json()["id"]
    assert line_of(cart, product)["quantity"] == 2
    rows = await db.rows(
        "SELECT user_id, guest_token_hash FROM cart.carts WHERE id = :id", id=uuid.UUID(cart["id"])
    )
    assert rows[0].user_id == user_id
    assert rows[0].guest_token_hash is None


async def test_one_shopper_never_reaches_anothers_cart(browsers, catalog, tokens):
    (token_a, _), (token_b, _) = tokens.customer(), tokens.customer()
    product, other = catalog.add(), catalog.add()
    alice, bob = browsers(token_a), browsers(token_b)
    alice_cart = (await alice.add(product, 3)).json()
    assert (await bob.get()).json()["id"] is None
    problem(await bob.patch(f"/api/cart/items/{product}", {"quantity": 1}), 404, "not-in-cart")
    problem(await bob.delete(f"/api/cart/items/{product}"), 404, "not-in-cart")
    assert (await bob.delete()).json()["id"] is None
    bob_cart = (await bob.add(other, 1)).json()
    assert bob_cart["id"] != alice_cart["id"]
    assert [line["product_id"] for line in bob_cart["lines"]] == [str(other)]
    alice_now = (await alice.get()).json()
    assert alice_now["id"] == alice_cart["id"]
    assert [(line["product_id"], line["quantity"]) for line in alice_now["lines"]] == [
        (str(product), 3)
    ]


async def test_two_guests_never_reach_each_others_cart(browsers, catalog):
    product = catalog.add()
    first, second = browsers(), browsers()
    first_cart = (await first.add(product, 2)).json()
    assert (await second.get()).json()["id"] is None
    problem(await second.delete(f"/api/cart/items/{product}"), 404, "not-in-cart")
    second_cart = (await second.add(product, 1)).json()
    assert second_cart["id"] != first_cart["id"]
    assert line_of((await first.get()).json(), product)["quantity"] == 2


async def test_forged_or_tampered_cookies_are_no_cart(browsers, catalog, cart_app):
    product = catalog.add()
    owner = browsers()
    real = (await owner.add(product, 2)).json()
    genuine = owner.cart_cookie
    cart_id, _, signature = genuine.partition(".")
    other_id = str(uuid.uuid4())
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    forgeries = [
        f"{cart_id}.{flipped}",  # tampered signature
        f"{cart_id}.",  # no signature
        cart_id,  # bare id
        f"{other_id}.{signature}",  # someone else's signature
        f"{cart_id.upper()}.{signature}",  # the same id spelled differently
        f"{genuine}.extra",
        "x" * 4000,
        '%00;,\\"',
        "",
    ]
    for forged in forgeries:
        thief = browsers()
        thief.client.cookies.set("ember_cart", forged, domain="shop.test")
        response = await thief.get()
        assert response.status_code == 200, (forged, response.text)
        assert response.json()["id"] is None
        assert response.json()["lines"] == []
        problem(await thief.delete(f"/api/cart/items/{product}"), 404, "not-in-cart")
        if forged:
            # The bad cookie is expired, and a write makes the thief a cart of their own.
            assert any("max-age=0" in h.lower() for h in set_cookie_headers(response))
        own = (await thief.add(product, 1)).json()
        assert own["id"] != real["id"]
    assert line_of((await owner.get()).json(), product)["quantity"] == 2


async def test_a_validly_signed_cookie_still_cannot_reach_a_shoppers_cart(
    browsers, catalog, tokens, cart_app
):
    """Even with the signing key (say it leaked), a cookie reaches only the guest cart whose
    hash is on record: a shopper's cart has none."""
    token, _ = tokens.customer()
    product = catalog.add()
    shopper = browsers(token)
    cart_id = uuid.UUID((await shopper.add(product, 4)).json()["id"])
    forged = cart_app.state.cart_signer.sign(cart_id)
    thief = browsers()
    thief.client.cookies.set("ember_cart", forged, domain="shop.test")
    assert (await thief.get()).json()["id"] is None
    problem(await thief.patch(f"/api/cart/items/{product}", {"quantity": 1}), 404, "not-in-cart")
    # Nor does a signed-in thief merge it into their own cart.
    thief_token, _ = tokens.customer()
    signed_thief = browsers(thief_token)
    signed_thief.client.cookies.set("ember_cart", forged, domain="shop.test")
    assert (await signed_thief.get()).json()["id"] is None
    assert line_of((await shopper.get()).json(), product)["quantity"] == 4


async def test_failed_credentials_are_refused_not_served_as_a_guest(browsers, catalog, tokens):
    product = catalog.add()
    expired = browsers(tokens.mint(expires_in=-60))
    problem(await expired.get(), 401, "token-expired")
    problem(await expired.add(product, 1), 401, "token-expired")
    garbage = browsers("not.a.token")
    problem(await garbage.get(), 401, "unauthenticated")
    wrong_audience = browsers(tokens.mint(aud="someone-else"))
    problem(await wrong_audience.add(product, 1), 401)


async def test_revoked_session_is_refused(browsers, catalog, tokens, cart_app):
    session_id = uuid.uuid4().hex
    token = tokens.mint(session_id=session_id)
    shopper = browsers(token)
    assert (await shopper.get()).status_code == 200
    await cart_app.state.redis.set(f"auth:revoked-session:{session_id}", "1", ex=60)
    problem(await shopper.get(), 401)


async def test_csrf_cookie_authenticated_writes_need_the_header_bearer_does_not(
    browsers, catalog, tokens
):
    token, _ = tokens.customer()
    csrf = tokens.csrf(token)
    product = catalog.add()
    browser = browsers()
    browser.client.cookies.set("ember_access", token, domain="shop.test")
    browser.client.cookies.set("ember_csrf", csrf, domain="shop.test")
    # Reading needs no CSRF header.
    assert (await browser.get()).status_code == 200
    body = problem(await browser.add(product, 1), 403, "csrf")
    assert "CSRF" in body["detail"]
    problem(
        await browser.post(
            "/api/cart/items",
            {"product_id": str(product), "quantity": 1},
            headers={"X-CSRF-Token": "wrong"},
        ),
        403,
        "csrf",
    )
    problem(await browser.delete(), 403, "csrf")
    # A cookie and header pair planted by someone else (equal, but not this session's token).
    planted = browsers()
    planted.client.cookies.set("ember_access", token, domain="shop.test")
    planted.client.cookies.set("ember_csrf", "planted-value", domain="shop.test")
    problem(await planted.delete(headers={"X-CSRF-Token": "planted-value"}), 403, "csrf")
    assert browser.cart_cookie is None  # refused, not turned into a guest cart
    ok = await browser.post(
        "/api/cart/items",
        {"product_id": str(product), "quantity": 1},
        headers={"X-CSRF-Token": csrf},
    )
    assert ok.status_code == 201
    # The same shopper by bearer token: no CSRF header needed, same cart.
    bearer = browsers(token)
    response = await bearer.add(product, 1)
    assert response.status_code == 201
    assert response.json()["id"] == ok.json()["id"]
    assert line_of(response.json(), product)["quantity"] == 2


async def test_merge_route_needs_a_signed_in_shopper(browsers):
    problem(await browsers().post("/api/cart/merge"), 401, "unauthenticated")
