"""The product page's variant picker (price and availability of the choice, each choice a deep
link ``?variant=<sku or id>``) and a chosen variant going into the cart as itself."""

from __future__ import annotations

import re

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
