"""A guest's cart: the signed cookie, lines priced from catalog, limits, flags, bad input."""

from __future__ import annotations

import uuid

from cart_testkit import line_of, problem, set_cookie_headers


async def test_guest_get_without_cart_answers_empty_and_makes_nothing(browsers, db):
    guest = browsers()
    before = await db.value("SELECT count(*) FROM cart.carts")
    response = await guest.get()
    assert response.status_code == 200
    body = response.json()
    assert body["id"] is None
    assert body["lines"] == []
    assert body["item_count"] == 0
    assert body["subtotal"] == 0
    assert body["limits"] == {"max_quantity_per_line": 10, "max_lines": 50}
    assert set_cookie_headers(response) == []
    assert response.headers["cache-control"] == "no-store"
    assert await db.value("SELECT count(*) FROM cart.carts") == before


async def test_guest_first_add_makes_cart_and_signed_cookie(browsers, catalog, db):
    product = catalog.add(price=1450, name="Ethiopia Guji")
    guest = browsers()
    response = await guest.add(product, 2)
    assert response.status_code == 201, response.text
    cart = response.json()
    (header,) = set_cookie_headers(response)
    lowered = header.lower()
    assert "httponly" in lowered
    assert "samesite=lax" in lowered
    assert "path=/" in lowered
    assert f"max-age={30 * 86400}" in lowered
    assert "secure" not in lowered  # local mode: plain HTTP
    value = guest.cart_cookie
    cart_id, _, signature = value.partition(".")
    assert cart_id == cart["id"]
    assert len(signature) == 43  # base64url of a SHA-256 HMAC
    line = line_of(cart, product)
    assert line["quantity"] == 2
    assert line["name"] == "Ethiopia Guji"
    assert line["slug"].startswith("coffee-")
    assert line["image_url"].startswith("/media/")
    assert line["unit_price"] == 1450
    assert line["price"] == 1450
    assert line["line_total"] == 2900
    assert line["currency"] == "USD"
    assert line["availability"] == "in_stock"
    assert line["purchasable"] is True
    assert not any(
        line[f] for f in ("unavailable", "archived", "sold_out", "quantity_exceeds_stock")
    )
    assert cart["subtotal"] == 2900
    assert cart["currency"] == "USD"
    assert cart["item_count"] == 2
    assert cart["checkout_ready"] is True
    # The row keeps only a hash of the cookie, and no price at all.
    stored = await db.rows(
        "SELECT user_id, status, guest_token_hash FROM cart.carts WHERE id = :id",
        id=uuid.UUID(cart["id"]),
    )
    assert stored[0].user_id is None
    assert stored[0].status == "active"
    assert len(stored[0].guest_token_hash) == 64
    assert value not in stored[0].guest_token_hash
    columns = await db.rows(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'cart' "
        "AND table_name = 'cart_items'"
    )
    assert not any("price" in c.column_name for c in columns)


async def test_adding_a_line_asks_catalog_once_per_variant(browsers, catalog):
    """The cart the add answers with shows what the add checked: no second lookup of the same
    variant in one request; the line already in the cart is looked up once too."""
    first, second = catalog.add(price=900), catalog.add(price=1200)
    guest = browsers()
    await guest.add(first, 1)
    catalog.calls.clear()

    cart = (await guest.add(second, 2)).json()

    assert cart["subtotal"] == 900 + 2 * 1200
    asked = [id_ for call in catalog.calls for id_ in call["ids"]]
    assert sorted(map(str, asked)) == sorted([str(first), str(second)])


async def test_guest_cart_follows_its_cookie(browsers, catalog):
    a, b = catalog.add(price=1000), catalog.add(price=2000)
    guest = browsers()
    await guest.add(a, 1)
    response = await guest.add(b, 3)
    assert response.status_code == 201
    cart = (await guest.get()).json()
    assert [line["product_id"] for line in cart["lines"]] == [str(a), str(b)]
    assert cart["subtotal"] == 1000 + 3 * 2000
    assert cart["item_count"] == 4
    assert cart["line_count"] == 2
    items = (await guest.get("/api/cart/items")).json()
    assert [line["product_id"] for line in items["lines"]] == [str(a), str(b)]
    assert items["pricing_unavailable"] is False


async def test_adding_again_adds_to_the_line(browsers, catalog):
    product = catalog.add()
    guest = browsers()
    await guest.add(product, 2)
    cart = (await guest.add(product, 3)).json()
    assert line_of(cart, product)["quantity"] == 5
    assert cart["line_count"] == 1


async def test_guest_writes_renew_the_cookie(browsers, catalog):
    product = catalog.add()
    guest = browsers()
    first = await guest.add(product, 1)
    cookie = guest.cart_cookie
    again = await guest.patch(f"/api/cart/items/{product}", {"quantity": 2})
    assert again.status_code == 200
    (header,) = set_cookie_headers(again)
    assert header.startswith(f"ember_cart={cookie};")
    assert set_cookie_headers(first)


async def test_quantity_limit_per_line(browsers, catalog):
    product = catalog.add(available=100)
    guest = browsers()
    body = problem(await guest.add(product, 11), 422, "quantity-limit")
    assert body["max_quantity"] == 10
    assert guest.cart_cookie is None  # a refused first add makes no cart
    assert (await guest.add(product, 8)).status_code == 201
    body = problem(await guest.add(product, 3), 422, "quantity-limit")
    assert body["in_cart"] == 8
    assert (await guest.add(product, 2)).status_code == 201
    problem(
        await guest.patch(f"/api/cart/items/{product}", {"quantity": 11}), 422, "quantity-limit"
    )
    cart = (await guest.get()).json()
    assert line_of(cart, product)["quantity"] == 10
    assert line_of(cart, product)["max_quantity"] == 10


async def test_limit_follows_the_setting(browsers, catalog, limits):
    limits(max_quantity_per_line=3)
    product = catalog.add()
    guest = browsers()
    problem(await guest.add(product, 4), 422, "quantity-limit")
    cart = (await guest.add(product, 3)).json()
    assert cart["limits"]["max_quantity_per_line"] == 3


async def test_bad_quantities_and_bodies_are_problems(browsers, catalog):
    product = catalog.add()
    guest = browsers()
    for bad in (0, -1, 100, "two", 1.5, None, True):
        problem(
            await guest.post("/api/cart/items", {"product_id": str(product), "quantity": bad}), 400
        )
    problem(await guest.post("/api/cart/items", {"product_id": "not-a-uuid", "quantity": 1}), 400)
    problem(await guest.post("/api/cart/items", {"quantity": 1}), 400)
    problem(await guest.post("/api/cart/items", [1, 2]), 400)
    problem(
        await guest.client.post(
            "/api/cart/items", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
    )
    # A price from the client is refused outright, never used.
    body = problem(
        await guest.post(
            "/api/cart/items", {"product_id": str(product), "quantity": 1, "price": 1}
        ),
        400,
    )
    assert "price" in str(body["errors"])
    await guest.add(product, 1)
    problem(await guest.patch(f"/api/cart/items/{product}", {"quantity": -1}), 400)
    problem(await guest.patch(f"/api/cart/items/{product}", {}), 400)
    problem(await guest.patch("/api/cart/items/not-a-uuid", {"quantity": 1}), 404)
    problem(await guest.delete("/api/cart/items/12345"), 404)
    problem(await guest.patch("/api/cart", {"lines": []}), 400)
    problem(await guest.client.put("/api/cart"), 405)
    cart = (await guest.get()).json()
    assert line_of(cart, product)["quantity"] == 1
    assert line_of(cart, product)["unit_price"] == 1250


async def test_unknown_archived_sold_out_and_short_products_are_refused(browsers, catalog):
    guest = browsers()
    problem(await guest.add(uuid.uuid4(), 1), 404, "product-not-found")
    archived = catalog.add(active=False)
    problem(await guest.add(archived, 1), 409, "product-archived")
    sold_out = catalog.add(available=0)
    problem(await guest.add(sold_out, 1), 409, "sold-out")
    short = catalog.add(available=3)
    body = problem(await guest.add(short, 4), 409, "insufficient-stock")
    assert body["available"] == 3
    assert body["requested"] == 4
    assert guest.cart_cookie is None
    assert (await guest.add(short, 2)).status_code == 201
    body = problem(await guest.add(short, 2), 409, "insufficient-stock")
    assert body["in_cart"] == 2


async def test_lines_flag_archived_sold_out_and_short_stock_instead_of_dropping(browsers, catalog):
    keep, archive, sell_out, shrink, vanish = (
        catalog.add(price=p) for p in (500, 600, 700, 800, 900)
    )
    guest = browsers()
    for product in (keep, archive, sell_out, shrink, vanish):
        assert (await guest.add(product, 4)).status_code == 201
    catalog.update(archive, active=False)
    catalog.update(sell_out, available=0)
    catalog.update(shrink, available=2)
    del catalog.products[vanish]
    cart = (await guest.get()).json()
    assert cart["line_count"] == 5
    flags = {
        line["product_id"]: (
            line["purchasable"],
            line["unavailable"],
            line["archived"],
            line["sold_out"],
            line["quantity_exceeds_stock"],
        )
        for line in cart["lines"]
    }
    assert flags[str(keep)] == (True, False, False, False, False)
    assert flags[str(archive)] == (False, True, True, False, False)
    assert flags[str(sell_out)] == (False, True, False, True, False)
    assert flags[str(shrink)] == (False, False, False, False, True)
    assert flags[str(vanish)] == (False, True, False, False, False)
    assert line_of(cart, shrink)["max_quantity"] == 2
    assert line_of(cart, sell_out)["availability"] == "sold_out"
    assert line_of(cart, vanish)["name"] is None
    assert cart["subtotal"] == 4 * 500  # only what can be bought
    assert cart["item_count"] == 20
    assert cart["checkout_ready"] is False
    # Less of an unavailable product is always allowed; more is not.
    assert (await guest.patch(f"/api/cart/items/{shrink}", {"quantity": 2})).status_code == 200
    problem(
        await guest.patch(f"/api/cart/items/{archive}", {"quantity": 5}), 409, "product-archived"
    )
    assert (await guest.patch(f"/api/cart/items/{archive}", {"quantity": 1})).status_code == 200
    assert (await guest.delete(f"/api/cart/items/{sell_out}")).status_code == 200
    cart = (await guest.get()).json()
    assert line_of(cart, shrink)["purchasable"] is True
    assert cart["subtotal"] == 4 * 500 + 2 * 800


async def test_patch_delete_and_clear(browsers, catalog):
    a, b = catalog.add(), catalog.add()
    guest = browsers()
    problem(await guest.patch(f"/api/cart/items/{a}", {"quantity": 1}), 404, "not-in-cart")
    problem(await guest.delete(f"/api/cart/items/{a}"), 404, "not-in-cart")
    await guest.add(a, 1)
    await guest.add(b, 1)
    cart = (await guest.patch(f"/api/cart/items/{a}", {"quantity": 4})).json()
    assert line_of(cart, a)["quantity"] == 4
    cart = (await guest.patch(f"/api/cart/items/{a}", {"quantity": 0})).json()
    assert [line["product_id"] for line in cart["lines"]] == [str(b)]
    problem(await guest.delete(f"/api/cart/items/{a}"), 404, "not-in-cart")
    cart = (await guest.delete(f"/api/cart/items/{b}")).json()
    assert cart["lines"] == []
    assert cart["id"] is not None
    await guest.add(a, 2)
    cleared = await guest.delete()
    assert cleared.status_code == 200
    assert cleared.json()["lines"] == []
    assert (await guest.get()).json()["item_count"] == 0


async def test_clear_without_cart_makes_nothing(browsers):
    guest = browsers()
    response = await guest.delete()
    assert response.status_code == 200
    assert response.json()["id"] is None
    assert set_cookie_headers(response) == []


async def test_post_cart_makes_one_cart_once(browsers):
    guest = browsers()
    first = await guest.post("/api/cart")
    assert first.status_code == 201
    cart_id = first.json()["id"]
    assert guest.cart_cookie.startswith(cart_id + ".")
    again = await guest.post("/api/cart")
    assert again.status_code == 200
    assert again.json()["id"] == cart_id


async def test_set_many_lines_at_once_all_or_nothing(browsers, catalog):
    a, b, c = catalog.add(), catalog.add(available=2), catalog.add()
    guest = browsers()
    await guest.add(a, 1)
    await guest.add(c, 5)
    body = problem(
        await guest.patch(
            "/api/cart",
            {
                "lines": [
                    {"product_id": str(a), "quantity": 3},
                    {"product_id": str(b), "quantity": 5},
                ]
            },
        ),
        409,
        "insufficient-stock",
    )
    assert body["unavailable"] == [
        {
            "product_id": str(b),
            "variant_id": str(b),
            "requested": 5,
            "available": 2,
            "reason": "stock",
        }
    ]
    assert line_of((await guest.get()).json(), a)["quantity"] == 1  # nothing changed
    cart = (
        await guest.patch(
            "/api/cart",
            {
                "lines": [
                    {"product_id": str(a), "quantity": 3},
                    {"product_id": str(b), "quantity": 2},
                    {"product_id": str(c), "quantity": 0},
                ]
            },
        )
    ).json()
    assert {line["product_id"]: line["quantity"] for line in cart["lines"]} == {
        str(a): 3,
        str(b): 2,
    }
    problem(
        await guest.patch(
            "/api/cart",
            {
                "lines": [
                    {"product_id": str(a), "quantity": 1},
                    {"product_id": str(a), "quantity": 2},
                ]
            },
        ),
        422,
        "duplicate-line",
    )


async def test_cart_holds_a_bounded_number_of_lines(browsers, catalog, limits):
    limits(max_lines=3)
    products = [catalog.add() for _ in range(4)]
    guest = browsers()
    for product in products[:3]:
        assert (await guest.add(product, 1)).status_code == 201
    body = problem(await guest.add(products[3], 1), 409, "cart-full")
    assert body["max_lines"] == 3
    # More of a product already there is still fine.
    assert (await guest.add(products[0], 1)).status_code == 201
    problem(
        await guest.patch(
            "/api/cart", {"lines": [{"product_id": str(products[3]), "quantity": 1}]}
        ),
        409,
        "cart-full",
    )
    cart = (
        await guest.patch(
            "/api/cart",
            {
                "lines": [
                    {"product_id": str(products[0]), "quantity": 0},
                    {"product_id": str(products[3]), "quantity": 1},
                ]
            },
        )
    ).json()
    assert cart["line_count"] == 3


async def test_concurrent_adds_of_one_guest_never_pass_the_limit(browsers, catalog):
    import asyncio

    product = catalog.add(available=100)
    guest = browsers()
    await guest.add(product, 1)
    answers = await asyncio.gather(*(guest.add(product, 3) for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [201, 201, 201, 422, 422, 422]
    assert line_of((await guest.get()).json(), product)["quantity"] == 10


async def test_catalog_is_asked_with_the_service_credential_and_correlation_id(browsers, catalog):
    product = catalog.add()
    guest = browsers()
    response = await guest.add(product, 1)
    assert response.status_code == 201
    assert catalog.calls, "the cart asked catalog"
    assert all(call["correlation_id"] for call in catalog.calls)
    assert response.headers["x-correlation-id"] == catalog.calls[-1]["correlation_id"]


async def test_each_variant_of_a_product_is_a_line_of_its_own(browsers, catalog):
    coffee = catalog.add(price=1600, available=30)
    kilo = catalog.add_variant(coffee, "Espresso / 1 kg", price=5600, available=2)
    guest = browsers()
    await guest.add(coffee, 2)
    response = await guest.post(
        "/api/cart/items",
        {"product_id": str(coffee), "variant_id": str(kilo), "quantity": 2},
    )
    assert response.status_code == 201, response.text
    cart = response.json()
    lines = {line["variant_id"]: line for line in cart["lines"]}
    assert set(lines) == {str(coffee), str(kilo)}
    assert {line["product_id"] for line in cart["lines"]} == {str(coffee)}
    assert (lines[str(kilo)]["unit_price"], lines[str(kilo)]["variant_title"]) == (
        5600,
        "Espresso / 1 kg",
    )
    assert lines[str(kilo)]["option_values"] == ["Espresso", "1 kg"]
    assert cart["subtotal"] == 2 * 1600 + 2 * 5600
    # Each variant's own stock bounds its line.
    problem(
        await guest.post(
            "/api/cart/items",
            {"product_id": str(coffee), "variant_id": str(kilo), "quantity": 1},
        ),
        409,
        "insufficient-stock",
    )
    # A variant named with another product is no product sold here.
    other = catalog.add()
    problem(
        await guest.post(
            "/api/cart/items",
            {"product_id": str(other), "variant_id": str(kilo), "quantity": 1},
        ),
        404,
        "product-not-found",
    )
    # The line's variant id names it for changes.
    cart = (await guest.patch(f"/api/cart/items/{kilo}", {"quantity": 1})).json()
    assert {line["variant_id"]: line["quantity"] for line in cart["lines"]} == {
        str(coffee): 2,
        str(kilo): 1,
    }
    cart = (await guest.delete(f"/api/cart/items/{kilo}")).json()
    assert [line["variant_id"] for line in cart["lines"]] == [str(coffee)]
