"""Staff set up a discount code (for one category) and a shipping rate on the staff pages, in
Chromium; a shopper then checks out with both, pays with 4242, and the order page, Stripe's
charge and the code's figures on the staff page agree."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest
from browser_testkit import Person, staff_sign_in
from playwright.async_api import expect
from storefront_testkit import CARD_OK, DEMO_SLUGS, Shop

pytestmark = [pytest.mark.stack, pytest.mark.browser]

CONFIRM_TIMEOUT_MS = 45_000


def dollars(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


async def test_staff_make_a_code_and_a_rate_that_a_shopper_then_uses(
    person: Person, browser_shop: Shop, screenshots: Path
) -> None:
    coffee = browser_shop.product(DEMO_SLUGS[0])
    assert coffee["category_id"]
    code = f"BEANS{uuid.uuid4().hex[:6].upper()}"
    rate_code = f"courier-{uuid.uuid4().hex[:6]}"
    page = person.page

    await staff_sign_in(person, browser_shop, "/admin/discount-codes")
    await page.get_by_test_id("new-discount-code").click()
    form = page.get_by_test_id("discount-code-form")
    await form.locator("#f-code").fill(code)
    await form.locator("#f-description").fill("Ten off single origins")
    await form.locator("#f-off").fill("ten")
    await form.locator(f'input[name="category_ids"][value="{coffee["category_id"]}"]').check()
    await form.locator("#f-max_uses").fill("3")
    await page.get_by_test_id("discount-code-save").click()
    # What cannot be read is said on the form, and what was typed stays.
    await expect(page.get_by_test_id("discount-code-error")).to_be_visible()
    await expect(page.locator("#e-off")).to_have_text("Give a whole percentage from 1 to 100.")
    await expect(form.locator("#f-code")).to_have_value(code)
    await form.locator("#f-off").fill("10")
    await page.get_by_test_id("discount-code-save").click()
    await expect(page.get_by_text("The discount code is saved.")).to_be_visible()
    await expect(page.get_by_test_id("code-remaining")).to_have_text("3")

    await page.get_by_role("link", name="Shipping", exact=True).click()
    form = page.get_by_test_id("shipping-rate-form")
    await form.locator("#f-code").fill(rate_code)
    await form.locator("#f-name").fill("Courier")
    await form.locator("#f-price").fill("9.00")
    await form.locator("#f-countries").fill("US, CA")
    await form.locator("#f-min_days").fill("1")
    await form.locator("#f-max_days").fill("2")
    # Last, so the shared stack's other checkouts keep their first choice.
    await form.locator("#f-position").fill("950")
    await page.get_by_test_id("shipping-rate-save").click()
    await expect(page.get_by_text("The shipping rate is saved.")).to_be_visible()
    await expect(
        page.get_by_test_id("admin-shipping-rate").filter(has_text=rate_code)
    ).to_contain_text("$9.00")
    await page.screenshot(path=str(screenshots / "admin-shipping-rates.png"), full_page=True)
    rate = next(
        r
        for r in browser_shop.http.get(
            "/api/checkout/admin/shipping-rates/", headers=browser_shop.admin
        ).json()
        if r["code"] == rate_code
    )

    try:
        await person.open("/account")
        await page.get_by_test_id("signout").click()
        await expect(page.get_by_test_id("signin-link")).to_be_visible()
        await person.open(f"/coffee/{coffee['slug']}")
        await page.get_by_test_id("add-to-cart").click()
        await expect(page.get_by_test_id("added")).to_be_visible()
        await person.open("/checkout")
        await page.fill("#f-email", f"offers-{uuid.uuid4().hex[:8]}@example.com")
        await page.fill("#f-name", "Katherine Johnson")
        await page.fill("#f-line1", "12 Roastery Lane")
        await page.fill("#f-city", "Portland")
        await page.fill("#f-state", "OR")
        await page.fill("#f-postal_code", "97201")
        await page.select_option("#f-country", "US")
        options = page.get_by_test_id("shipping-options")
        await expect(options).to_contain_text("Courier")
        await options.locator(f'input[value="{rate_code}"]').check()
        await page.get_by_test_id("discount-code").fill(code.lower())
        await page.get_by_test_id("apply-code").click()
        price = coffee["price"]
        discount = (2 * price * 10 + 100) // 200
        total = price - discount + 900
        await expect(page.get_by_test_id("discount")).to_have_text(
            "\N{MINUS SIGN}" + dollars(discount)
        )
        await expect(options.locator(f'input[value="{rate_code}"]')).to_be_checked()
        await expect(page.get_by_test_id("total")).to_have_text(dollars(total))
        await page.screenshot(path=str(screenshots / "offers-checkout.png"), full_page=True)
        await page.get_by_test_id("pay").click()

        await page.wait_for_url(re.compile(r".*/pay/cs_test_\w+$"))
        session_id = page.url.rsplit("/", 1)[-1]
        await page.fill("#cardNumber", CARD_OK)
        await page.click("#submit")
        await page.wait_for_url(re.compile(r".*/order/[0-9a-f-]{36}\?session_id=cs_test_\w+$"))
        await expect(page.get_by_test_id("order-status")).to_have_text(
            "Paid", timeout=CONFIRM_TIMEOUT_MS
        )
        await expect(page.get_by_test_id("order-discount")).to_have_text(
            "\N{MINUS SIGN}" + dollars(discount)
        )
        await expect(page.get_by_test_id("order-body")).to_contain_text("Shipping (Courier)")
        await expect(page.get_by_test_id("order-shipping")).to_have_text("$9.00")
        await expect(page.get_by_test_id("order-total")).to_have_text(dollars(total))
        # What Stripe (the stand-in) charged, read through its API as the SDK would.
        stack = browser_shop.stack
        async with httpx.AsyncClient(
            base_url=stack.env.get("STRIPE_API_BASE") or stack.service_url("stripe-standin"),
            headers={"Authorization": "Bearer sk_test_ember_browser"},
            timeout=10,
        ) as stripe:
            session = await stripe.get(f"/v1/checkout/sessions/{session_id}")
        assert session.status_code == 200, session.text
        charged = session.json()
        assert charged["payment_status"] == "paid"
        assert charged["amount_total"] == total
        assert charged["total_details"]["amount_discount"] == discount
        assert charged["total_details"]["amount_shipping"] == 900

        # The staff page counts the paid use (once the webhook has come).
        await staff_sign_in(person, browser_shop, "/admin/discount-codes")
        row = page.get_by_test_id("admin-discount-code").filter(has_text=code)
        await page.reload()
        await expect(row.get_by_test_id("code-uses")).to_have_text("1")
        await expect(row.get_by_test_id("code-holds")).to_have_text("0")
        await expect(row.get_by_test_id("code-remaining")).to_contain_text("2")
        await page.screenshot(path=str(screenshots / "admin-discount-codes.png"), full_page=True)
        assert person.csp_violations() == []
    finally:
        retired = browser_shop.http.patch(
            f"/api/checkout/admin/shipping-rates/{rate['id']}",
            json={"active": False},
            headers=browser_shop.admin,
        )
        assert retired.status_code == 200, retired.text
