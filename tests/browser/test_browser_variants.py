"""A shopper picks a variant in Chromium: "Espresso" then "1 kg" on the picker, the price and
availability follow the choice and the address deep-links it; the cart and Stripe's page
charge that variant, not the bag the product page opened on. Staff add a grind on a product's
page, and a shopper picks it on the picker and finds it by its SKU."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from browser_testkit import Person
from playwright.async_api import Browser, expect
from storefront_testkit import Shop

pytestmark = [pytest.mark.stack, pytest.mark.browser]


async def test_a_shopper_picks_one_kilo_of_espresso_grind(
    person: Person, browser_shop: Shop, screenshots: Path
) -> None:
    coffee = browser_shop.coffee_with_variants(espresso_kilo=5)
    tag = coffee["tag"]
    page = person.page
    await person.open(f"/coffee/{coffee['slug']}")
    await expect(page.get_by_test_id("price")).to_have_text("$16.00")
    picker = page.get_by_test_id("variant-picker")
    await expect(picker).to_be_visible()

    await picker.get_by_role("link", name="Espresso").click()
    await page.wait_for_url(re.compile(rf".*\?variant={tag}-es-250$"))
    await expect(page.get_by_test_id("price")).to_have_text("$16.50")
    await picker.get_by_role("link", name="1 kg").click()
    await page.wait_for_url(re.compile(rf".*\?variant={tag}-es-1kg$"))
    await expect(page.get_by_test_id("price")).to_have_text("$56.00")
    await expect(page.locator(".product__buy")).to_contain_text("Only a few left")
    await expect(picker.locator('[aria-current="true"]')).to_have_text(["Espresso", "1 kg"])
    await page.screenshot(path=str(screenshots / "variant-picker.png"))

    await page.get_by_test_id("add-to-cart").click()
    await expect(page.get_by_test_id("added")).to_be_visible()
    await person.open("/cart")
    line = page.get_by_test_id("cart-line")
    await expect(line).to_have_count(1)
    await expect(line.get_by_test_id("line-variant")).to_have_text("Espresso / 1 kg")
    await expect(line).to_contain_text("$56.00")

    # The deep link opens the choice as it was (a sold-out one offers no button).
    await person.open(f"/coffee/{coffee['slug']}?variant={tag}-es-1kg")
    await expect(page.get_by_test_id("price")).to_have_text("$56.00")
    assert person.csp_violations() == []


async def test_staff_add_a_grind_and_a_shopper_picks_it(
    person: Person, chromium: Browser, browser_shop: Shop, screenshots: Path
) -> None:
    made = browser_shop.http.post(
        "/api/admin/products",
        json={"name": f"Staff Grind {uuid.uuid4().hex[:8]}", "price": 1800, "on_hand": 10},
        headers=browser_shop.admin,
    )
    assert made.status_code == 201, made.text
    coffee = made.json()
    staff = browser_shop.register_admin()
    page = person.page
    product_path = f"/admin/products/{coffee['id']}"
    await person.open(f"/signin?next={product_path}")
    await page.fill("#f-email", staff["email"])
    await page.fill("#f-password", staff["password"])
    await page.get_by_test_id("signin-submit").click()
    await page.wait_for_url(re.compile(rf".*{re.escape(product_path)}$"))

    # Sold as one bag so far: one variant row, its default, then empty rows.
    panel = page.get_by_test_id("variants-panel")
    await expect(panel.locator("#v-0-sku")).to_have_value(coffee["slug"])
    await panel.locator("#option-0-name").fill("Grind")
    await panel.locator("#option-0-values").fill("Whole bean, Espresso")
    await panel.locator("#v-0-values").fill("Whole bean")
    sku = f"{coffee['slug']}-esp"
    await panel.locator("#v-1-sku").fill(sku)
    await panel.locator("#v-1-values").fill("Espresso")
    await panel.locator("#v-1-price").fill("19.50")
    await panel.locator("#v-1-on_hand").fill("6")
    # A price catalog refuses: its reason is shown and nothing typed is lost.
    await panel.locator("#v-1-price").fill("-1")
    await panel.get_by_test_id("variants-save").click()
    await expect(page.get_by_test_id("variants-error")).to_contain_text(">= 0")
    panel = page.get_by_test_id("variants-panel")
    await expect(panel.locator("#v-1-sku")).to_have_value(sku)
    await expect(panel.locator("#option-0-values")).to_have_value("Whole bean, Espresso")
    await panel.locator("#v-1-price").fill("19.50")
    await panel.get_by_test_id("variants-save").click()
    await expect(page.get_by_test_id("variants-error")).to_have_count(0)
    await expect(panel.locator("#v-1-sku")).to_have_value(sku)
    await expect(panel.locator("#v-1-on_hand")).to_have_value("6")
    await page.screenshot(path=str(screenshots / "staff-variants.png"), full_page=True)

    # A shopper, in a window of their own, sees the new grind and picks it.
    context = await chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(15_000)
    try:
        shopper = Person(context, await context.new_page(), person.base_url)
        await shopper.open(f"/coffee/{coffee['slug']}")
        picker = shopper.page.get_by_test_id("variant-picker")
        await expect(picker).to_be_visible()
        await expect(shopper.page.get_by_test_id("price")).to_have_text("$18.00")
        await picker.get_by_role("link", name="Espresso").click()
        await shopper.page.wait_for_url(re.compile(rf".*\?variant={re.escape(sku)}$"))
        await expect(shopper.page.get_by_test_id("price")).to_have_text("$19.50")
        await shopper.page.get_by_test_id("add-to-cart").click()
        await expect(shopper.page.get_by_test_id("added")).to_be_visible()
        await shopper.open("/cart")
        line = shopper.page.get_by_test_id("cart-line")
        await expect(line.get_by_test_id("line-variant")).to_have_text("Espresso")
        await expect(line).to_contain_text("$19.50")
        # Searched by its SKU, the new grind is what the result opens.
        await shopper.open("/search")
        await shopper.page.fill("#page-search", sku.upper())
        await shopper.page.press("#page-search", "Enter")
        card = shopper.page.get_by_test_id("product-card").first
        await expect(card).to_contain_text(coffee["name"])
        await card.get_by_role("link").click()
        await shopper.page.wait_for_url(re.compile(rf".*\?variant={re.escape(sku)}$"))
        await expect(shopper.page.get_by_test_id("price")).to_have_text("$19.50")
        assert shopper.csp_violations() == []
    finally:
        await context.close()
