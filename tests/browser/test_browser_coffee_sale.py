"""Issue 15's sale, end to end in Chromium: a kilo of espresso grind, a discount code, Express
shipping and Stripe Tax at a California address, paid with 4242 on the Stripe stand-in's page.
The order page and the confirmation mail show the same subtotal, discount, shipping, tax and
total, and those are what the stand-in charged."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_testkit import Person
from ember_devkit.testing.stack import RunningStack
from playwright.async_api import expect
from storefront_testkit import CARD_OK, Shop, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.browser]

CONFIRM_TIMEOUT_MS = 45_000

# The figures, worked out by hand: Espresso / 1 kg is $56.00; 10 % off is $5.60; Express is
# $15.00 (no free-shipping threshold); California's 7.25 % in the stand-in's table, rounded half
# up per line on the discounted amount and on shipping: 5040 -> 365.4 -> 365, 1500 -> 108.75 -> 109.
SUBTOTAL, DISCOUNT, SHIPPING, TAX = 5600, 560, 1500, 365 + 109
TOTAL = SUBTOTAL - DISCOUNT + SHIPPING + TAX


@pytest.fixture
def taxed(stack: RunningStack) -> Iterator[None]:
    """Checkout with Stripe Tax on, for this test only (the shared stack runs without)."""
    with stack.configured("checkout", CHECKOUT_TAX="true"):
        yield


@pytest.fixture
def express(browser_shop: Shop) -> Iterator[dict[str, Any]]:
    """An Express rate of this test's own, retired after it so other tests' checkouts keep
    the options they expect."""
    made = browser_shop.http.post(
        "/api/checkout/admin/shipping-rates",
        json={
            "code": f"express-{uuid.uuid4().hex[:8]}",
            "name": "Express",
            "price": SHIPPING,
            "countries": ["CA", "GB", "US"],
            "min_days": 1,
            "max_days": 2,
            "position": 1,
        },
        headers=browser_shop.admin,
    )
    assert made.status_code == 201, made.text
    try:
        yield dict(made.json())
    finally:
        retired = browser_shop.http.patch(
            f"/api/checkout/admin/shipping-rates/{made.json()['id']}",
            json={"active": False},
            headers=browser_shop.admin,
        )
        assert retired.status_code == 200, retired.text


@pytest.fixture
def code(browser_shop: Shop) -> str:
    text = f"BEANS{uuid.uuid4().hex[:6].upper()}"
    made = browser_shop.http.post(
        "/api/checkout/admin/discount-codes",
        json={"code": text, "description": "10 % off", "percent_off": 10},
        headers=browser_shop.admin,
    )
    assert made.status_code == 201, made.text
    return text


def cents(shown: str) -> int:
    """'$70.14' (or a discount's '-$5.60', shown with a minus sign) as 7014; anything else
    fails the test."""
    found = re.fullmatch(r"[\u2212-]?\$(\d+)\.(\d{2})", shown.strip())
    assert found, f"not a dollar amount: {shown!r}"
    return int(found.group(1)) * 100 + int(found.group(2))


def mailed_figure(text: str, label: str) -> int:
    found = re.search(rf"^\s*{label}[^\n$]*?\s([\u2212-]?\$\d+\.\d{{2}})\s*$", text, re.MULTILINE)
    assert found, f"no {label} in the mail:\n{text}"
    return cents(found.group(1))


async def test_a_shopper_buys_a_kilo_of_espresso_with_a_code_express_shipping_and_tax(
    person: Person,
    browser_shop: Shop,
    taxed: None,
    express: dict[str, Any],
    code: str,
    screenshots: Path,
) -> None:
    stack = browser_shop.stack
    coffee = browser_shop.coffee_with_variants(espresso_kilo=5)
    email = f"kilo-{uuid.uuid4().hex[:8]}@example.com"
    page = person.page

    await person.open(f"/coffee/{coffee['slug']}")
    picker = page.get_by_test_id("variant-picker")
    await picker.get_by_role("link", name="1 kg").click()
    await picker.get_by_role("link", name="Espresso").click()
    await page.wait_for_url(re.compile(rf".*\?variant={coffee['tag']}-es-1kg$"))
    await expect(picker.locator('[aria-current="true"]')).to_have_text(["Espresso", "1 kg"])
    await expect(page.get_by_test_id("price")).to_have_text("$56.00")
    await page.get_by_test_id("add-to-cart").click()
    await expect(page.get_by_test_id("added")).to_be_visible()

    await person.open("/checkout")
    await page.fill("#f-email", email)
    await page.fill("#f-name", "Ada Lovelace")
    await page.fill("#f-line1", "1 Market Street")
    await page.fill("#f-city", "San Francisco")
    await page.fill("#f-state", "CA")
    await page.fill("#f-postal_code", "94105")
    await page.select_option("#f-country", "US")
    options = page.get_by_test_id("shipping-options")
    await options.locator(f'input[value="{express["code"]}"]').check()
    await page.get_by_test_id("discount-code").fill(code.lower())  # typed in any case
    await page.get_by_test_id("apply-code").click()
    await expect(page.get_by_test_id("discount")).to_have_text("\N{MINUS SIGN}$5.60")
    await expect(options.locator(f'input[value="{express["code"]}"]')).to_be_checked()
    # Before tax: Stripe Tax computes it on Stripe's page, at the address.
    await expect(page.get_by_test_id("total")).to_have_text("$65.40")
    await page.screenshot(path=str(screenshots / "coffee-sale-checkout.png"), full_page=True)
    await page.get_by_test_id("pay").click()

    await page.wait_for_url(re.compile(r".*/pay/cs_test_\w+$"))
    session_id = page.url.rsplit("/", 1)[-1]
    await page.fill("#cardNumber", CARD_OK)
    await page.click("#submit")
    await page.wait_for_url(re.compile(r".*/order/[0-9a-f-]{36}\?session_id=cs_test_\w+$"))
    found = re.search(r"/order/([0-9a-f-]{36})", page.url)
    assert found is not None
    order_id = found.group(1)
    await expect(page.get_by_test_id("order-status")).to_have_text(
        "Paid", timeout=CONFIRM_TIMEOUT_MS
    )
    await page.screenshot(path=str(screenshots / "coffee-sale-order.png"), full_page=True)

    totals = page.get_by_test_id("order-body").locator("dl.totals")
    subtotal_shown = await totals.locator("dt:text-is('Subtotal') + dd").inner_text()
    shown = {
        "subtotal": cents(subtotal_shown),
        "discount": cents(await page.get_by_test_id("order-discount").inner_text()),
        "shipping": cents(await page.get_by_test_id("order-shipping").inner_text()),
        "tax": cents(await page.get_by_test_id("order-tax").inner_text()),
        "total": cents(await page.get_by_test_id("order-total").inner_text()),
    }
    expected = {
        "subtotal": SUBTOTAL,
        "discount": DISCOUNT,
        "shipping": SHIPPING,
        "tax": TAX,
        "total": TOTAL,
    }
    assert shown == expected
    await expect(totals).to_contain_text(f"Discount ({code})")
    await expect(totals).to_contain_text("Shipping (Express)")
    await expect(page.get_by_test_id("order-body").get_by_test_id("line-variant")).to_have_text(
        "Espresso / 1 kg"
    )

    def confirmation() -> dict[str, Any] | None:
        for mail in browser_shop.emails_to(email):
            if order_id[-8:].upper() in str(mail.get("text") or ""):
                return mail
        return None

    mail = wait_for(confirmation, timeout=60)
    text = str(mail["text"])
    mailed = {
        "subtotal": mailed_figure(text, "Subtotal"),
        "discount": mailed_figure(text, "Discount"),
        "shipping": mailed_figure(text, "Shipping"),
        "tax": mailed_figure(text, "Tax"),
        "total": mailed_figure(text, "Total"),
    }
    assert mailed == expected
    assert f"Discount ({code})" in text
    assert "Shipping (Express)" in text
    assert f"{coffee['name']} (Espresso / 1 kg) x 1" in text

    # What Stripe (the stand-in) charged, read through its API as the SDK would.
    env = stack.env
    stripe = httpx.AsyncClient(
        base_url=env.get("STRIPE_API_BASE") or stack.service_url("stripe-standin"),
        # Any test key: the stand-in stands in for the account the stack has no key of.
        headers={"Authorization": "Bearer sk_test_ember_browser"},
        timeout=10,
    )
    async with stripe:
        session = await stripe.get(f"/v1/checkout/sessions/{session_id}")
        assert session.status_code == 200, session.text
        charged = session.json()
        intent = await stripe.get(f"/v1/payment_intents/{charged['payment_intent']}")
        assert intent.status_code == 200, intent.text
    assert charged["payment_status"] == "paid"
    assert charged["automatic_tax"]["enabled"] is True
    assert {
        "subtotal": charged["amount_subtotal"],
        "discount": charged["total_details"]["amount_discount"],
        "shipping": charged["total_details"]["amount_shipping"],
        "tax": charged["total_details"]["amount_tax"],
        "total": charged["amount_total"],
    } == expected
    assert charged["shipping_cost"]["amount_subtotal"] == SHIPPING
    assert intent.json()["amount"] == TOTAL
    assert intent.json()["amount_received"] == TOTAL
    assert person.csp_violations() == []
