"""The product page's variant picker (price and availability of the choice, each choice a deep
link ``?variant=<sku or id>``) and a chosen variant going into the cart as itself."""

from __future__ import annotations

import html
import re
import uuid

from storefront_testkit import PASSWORD, Browser, Shop, csrf_of


async def test_the_picker_shows_the_choice_and_links_each_value(
    browser: Browser, shop: Shop
) -> None:
    coffee = shop.coffee_with_variants()
    tag = coffee["tag"]
    page = (await browser.get(f"/coffee/{coffee['slug']}")).text
    assert 'data-testid="variant-picker"' in page
    # Without a choice: the first variant (in stock), its price and its id in the add form.
    assert re.search(r'data-testid="price">\$16\.00<', page)
    assert f'name="variant_id" value="{coffee["id"]}"' in page
    # Each value links to the variant that changes only it.
    assert f'href="/coffee/{coffee["slug"]}?variant={tag}-es-250"' in page
    assert f'href="/coffee/{coffee["slug"]}?variant={tag}-wb-1kg"' in page

    kilo = (
        await browser.get(f"/coffee/{coffee['slug']}", params={"variant": f"{tag}-wb-1kg"})
    ).text
    assert re.search(r'data-testid="price">\$54\.00<', kilo)
    assert "Only a few left" in kilo
    kilo_id = coffee["variants"][f"{tag}-wb-1kg"]["id"]
    assert f'name="variant_id" value="{kilo_id}"' in kilo
    assert re.search(r'aria-current="true"[^>]*>1 kg<', kilo)

    # A deep link by id works as by SKU; a sold-out choice offers no add button.
    gone_id = coffee["variants"][f"{tag}-es-1kg"]["id"]
    gone = (await browser.get(f"/coffee/{coffee['slug']}", params={"variant": gone_id})).text
    assert re.search(r'data-testid="price">\$56\.00<', gone)
    assert "Sold out" in gone
    assert 'data-testid="add-to-cart"' not in gone
    assert "This choice has sold out" in gone


async def test_a_chosen_variant_goes_into_the_cart_as_itself(browser: Browser, shop: Shop) -> None:
    coffee = shop.coffee_with_variants()
    tag = coffee["tag"]
    espresso = coffee["variants"][f"{tag}-es-250"]
    added = await browser.form(
        f"/coffee/{coffee['slug']}?variant={tag}-es-250",
        "/cart/items",
        {"product_id": coffee["id"], "variant_id": espresso["id"], "quantity": "2"},
    )
    assert added.status_code in (302, 303), added.text
    cart = (await browser.get("/cart")).text
    assert 'data-testid="line-variant">Espresso / 250 g<' in cart
    assert "$33.00" in cart  # 2 x 16.50
    assert f"/cart/items/{espresso['id']}" in cart


async def test_staff_see_and_set_stock_per_variant(browser: Browser, shop: Shop) -> None:
    coffee = shop.coffee_with_variants()
    tag = coffee["tag"]
    staff = shop.register_admin()
    signin = (await browser.get("/signin")).text
    await browser.post(
        "/signin", {"email": staff["email"], "password": PASSWORD, "_csrf_token": csrf_of(signin)}
    )
    inventory = (await browser.get("/admin/inventory", params={"q": coffee["slug"]})).text
    assert inventory.count('data-testid="stock-row"') == 4
    assert 'data-testid="stock-variant">Espresso / 1 kg<' in inventory
    assert f'data-testid="stock-sku">{tag}-es-1kg<' in inventory
    kilo = coffee["variants"][f"{tag}-es-1kg"]["id"]
    row = await browser.post(
        f"/admin/inventory/{kilo}",
        {"on_hand": "7"},
        headers={"HX-Request": "true", "x-form-csrf": csrf_of(inventory)},
    )
    assert "Saved" in row.text
    variants = {v["id"]: v for v in shop.admin_product(coffee["id"])["variants"]}
    assert variants[kilo]["on_hand"] == 7
    # The bag's (the default variant's) count is its own, untouched.
    assert variants[coffee["id"]]["on_hand"] == 40


async def _staff(browser: Browser, shop: Shop) -> None:
    staff = shop.register_admin()
    signin = (await browser.get("/signin")).text
    await browser.post(
        "/signin", {"email": staff["email"], "password": PASSWORD, "_csrf_token": csrf_of(signin)}
    )


def _field(page: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', page)
    assert found, name
    return html.unescape(found.group(1))


async def test_staff_set_options_and_variants_on_the_product_page(
    browser: Browser, shop: Shop
) -> None:
    response = shop.http.post(
        "/api/admin/products",
        json={"name": f"Options Coffee {uuid.uuid4().hex[:8]}", "price": 1800, "on_hand": 9},
        headers=shop.admin,
    )
    assert response.status_code == 201, response.text
    made = response.json()
    await _staff(browser, shop)
    path = f"/admin/products/{made['id']}"
    page = (await browser.get(path)).text
    # A product without options: one row, its default variant, then empty rows for new ones.
    assert _field(page, "v-0-id") == made["id"]
    assert _field(page, "v-0-price") == "18.00"
    assert _field(page, "v-0-on_hand") == "9"
    sku = f"{made['slug']}-es".upper()
    saved = await browser.form(
        path,
        f"{path}/variants",
        {
            "rows": "3",
            "option-0-name": "Grind",
            "option-0-values": "Whole bean, Espresso",
            "v-0-id": made["id"],
            "v-0-sku": made["slug"],
            "v-0-values": "Whole bean",
            "v-0-price": "18.00",
            "v-0-on_hand": "9",
            "v-0-active": "1",
            "v-1-sku": sku,
            "v-1-values": "Espresso",
            "v-1-price": "19.50",
            "v-1-weight": "250",
            "v-1-on_hand": "4",
            "v-1-active": "1",
        },
    )
    assert saved.status_code == 303, saved.text[:800]
    variants = {v["sku"]: v for v in shop.admin_product(made["id"])["variants"]}
    assert variants[sku]["option_values"] == ["Espresso"]
    assert variants[sku]["price"] == 1950
    assert variants[sku]["on_hand"] == 4
    assert variants[made["slug"]]["option_values"] == ["Whole bean"]
    again = (await browser.get(path)).text
    assert _field(again, "option-0-values") == "Whole bean, Espresso"
    assert _field(again, "v-1-values") == "Espresso"
    assert _field(again, "v-1-weight") == "250"


async def test_a_refused_variant_shows_catalogs_reason_and_keeps_what_was_typed(
    browser: Browser, shop: Shop
) -> None:
    coffee = shop.coffee_with_variants()
    tag = coffee["tag"]
    await _staff(browser, shop)
    path = f"/admin/products/{coffee['id']}"
    page = (await browser.get(path)).text
    rows = int(_field(page, "rows"))
    assert rows == 6  # four variants and two empty rows
    typed = {"rows": str(rows)}
    for name in ("option-0-name", "option-0-values", "option-1-name", "option-1-values"):
        typed[name] = _field(page, name)
    for j in range(4):
        for part in ("id", "sku", "values", "price", "weight", "on_hand"):
            typed[f"v-{j}-{part}"] = _field(page, f"v-{j}-{part}")
        typed[f"v-{j}-active"] = "1"
    cases = {
        "duplicate SKU": (
            {"v-1-sku": typed["v-0-sku"].upper()},
            f"Two variants have the SKU {typed['v-0-sku'].upper()!r}",
        ),
        "duplicate choice": (
            {"v-4-sku": f"{tag}-again", "v-4-values": "Espresso / 1 kg", "v-4-price": "60.00"},
            "Two variants are 'Espresso / 1 kg'",
        ),
        "negative price": ({"v-1-price": "-2.00"}, ">= 0"),
        "no such value": (
            {"v-4-sku": f"{tag}-decaf", "v-4-values": "Decaf / 1 kg", "v-4-price": "20.00"},
            "'Decaf' is not a value of 'Grind'",
        ),
    }
    before = shop.admin_product(coffee["id"])["variants"]
    for case, (changes, reason) in cases.items():
        refused = await browser.form(path, f"{path}/variants", {**typed, **changes})
        assert refused.status_code == 400, case
        error = re.search(r'data-testid="variants-error">([^<]*)<', refused.text)
        assert error, case
        assert reason in html.unescape(error.group(1)), (case, error.group(1))
        for name, value in {**typed, **changes}.items():
            if name.startswith(("option-", "v-")) and not name.endswith("-active"):
                assert _field(refused.text, name) == value, (case, name)
    assert shop.admin_product(coffee["id"])["variants"] == before


async def test_a_search_for_a_sku_opens_the_product_on_that_variant(
    browser: Browser, shop: Shop
) -> None:
    coffee = shop.coffee_with_variants()
    tag = coffee["tag"]
    found = (await browser.get("/search", params={"q": f"{tag}-es-1kg".upper()})).text
    links = re.findall(r'class="product-card__link" href="([^"]+)"', found)
    assert links[0] == f"/coffee/{coffee['slug']}?variant={tag}-es-1kg"
    # Searched by its name, the same coffee opens on its first choice.
    by_name = (await browser.get("/search", params={"q": coffee["name"]})).text
    assert f'href="/coffee/{coffee["slug"]}"' in by_name
