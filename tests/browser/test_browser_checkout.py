"""The buying path past the cart: the trip to Stripe's page and back, sold-out lines, a declined
card, and the same path at phone width."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_testkit import Person
from playwright.async_api import expect
from storefront_testkit import CARD_DECLINED, DEMO_SLUGS, Shop

pytestmark = [pytest.mark.stack, pytest.mark.browser]


async def _fill_address(person: Person) -> None:
    page = person.page
    await page.fill("#f-name", "Ada Lovelace")
    await page.fill("#f-line1", "12 Roastery Lane")
    await page.fill("#f-city", "Portland")
    await page.fill("#f-state", "OR")
    await page.fill("#f-postal_code", "97201")


async def test_back_from_stripe_returns_to_the_host_the_shopper_used(
    person: Person, browser_shop: Shop, screenshots: Path
) -> None:
    """A shop opened on 127.0.0.1 (PUBLIC_URL says localhost) comes back from Stripe on
    127.0.0.1, where the shopper's cart and sign-in cookies are."""
    browser_shop.product(DEMO_SLUGS[1])
    shopper = browser_shop.register(name="Dorothy Vaughan")
    other = person.base_url.replace("://localhost:", "://127.0.0.1:")
    assert other != person.base_url
    page = person.page
    await page.goto(f"{other}/signin?next=/coffee/{DEMO_SLUGS[1]}")
    await page.fill("#f-email", shopper["email"])
    await page.fill("#f-password", shopper["password"])
    await page.get_by_test_id("signin-submit").click()
    await page.get_by_test_id("add-to-cart").click()
    await expect(page.get_by_test_id("added")).to_be_visible()
    await page.goto(f"{other}/checkout")
    await _fill_address(person)
    await page.get_by_test_id("pay").click()
    await page.wait_for_url(re.compile(r".*/pay/cs_test_\w+$"))
    await page.fill("#cardNumber", CARD_DECLINED)
    await page.click("#submit")
    await expect(page.locator("#card-errors")).to_have_text("Your card was declined.")
    await page.click("#cancel")
    await page.wait_for_url(f"{other}/cart")
    await expect(page.get_by_test_id("cart-line")).to_have_count(1)
    await expect(page.get_by_test_id("signin-link")).to_have_count(0)
    await page.goto(f"{other}/account")
    await expect(page.get_by_test_id("account-heading")).to_have_text("Hello, Dorothy Vaughan")
    assert person.csp_violations() == []


async def test_a_line_that_sold_out_is_named_in_the_cart_and_at_checkout(
    person: Person, browser_shop: Shop, screenshots: Path
) -> None:
    page = person.page
    kept = browser_shop.product(DEMO_SLUGS[0])
    gone = browser_shop.product(DEMO_SLUGS[2])
    try:
        for product, quantity in ((kept, "1"), (gone, "2")):
            await person.open(f"/coffee/{product['slug']}")
            await page.select_option("#quantity", quantity)
            await page.get_by_test_id("add-to-cart").click()
            await expect(page.get_by_test_id("added")).to_be_visible()
        browser_shop.set_stock(gone["id"], 0)

        await person.open("/cart")
        problems = page.get_by_test_id("cart-problems")
        await expect(problems).to_contain_text(f"{gone['name']} has sold out since you added it.")
        # Its $-amount is shown struck out and said to be left out, beside a subtotal of what
        # can be bought (never a bare "Subtotal $0.00" beside it).
        left_out = page.get_by_test_id("line-left-out")
        await expect(left_out).to_have_count(1)
        await expect(left_out).to_contain_text("not in the subtotal")
        await expect(left_out.locator("del")).to_have_text(f"${gone['price'] * 2 / 100:.2f}")
        await expect(page.get_by_test_id("left-out-count")).to_have_text("2")
        await expect(page.locator("dt.totals__grand")).to_have_text("Subtotal of what you can buy")
        await expect(page.get_by_test_id("subtotal")).to_have_text(f"${kept['price'] / 100:.2f}")
        await page.screenshot(path=screenshots / "cart-sold-out.png", full_page=True)

        await person.open("/checkout")
        await expect(page.get_by_test_id("unavailable-lines")).to_contain_text(
            f"{gone['name']}: sold out"
        )
        await expect(page.get_by_test_id("summary-unavailable")).to_contain_text(
            f"Nothing can be paid until your cart changes: {gone['name']} has sold out."
        )
        await expect(page.get_by_text("We could not price your cart")).to_have_count(0)
        await page.screenshot(path=screenshots / "checkout-sold-out.png", full_page=True)
        assert person.csp_violations() == []
    finally:
        browser_shop.set_stock(gone["id"], 500)
