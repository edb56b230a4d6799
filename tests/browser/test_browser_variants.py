"""A shopper picks a variant in Chromium: "Espresso" then "1 kg" on the picker, the price and
availability follow the choice and the address deep-links it; the cart and Stripe's page
charge that variant, not the bag the product page opened on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_testkit import Person
from playwright.async_api import expect
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
