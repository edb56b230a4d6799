"""A subscriber changes their delivery in a real browser through Caddy: the bags, the cadence
(shown once Stripe's webhook confirms; a new cadence bills its first delivery at once) and the
address, at desktop and phone widths; and subscribes to one variant ("Espresso / 1 kg") from
the product page's picker, then changes to another."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest
from browser_testkit import Person, staff_sign_in, subscribed
from playwright.async_api import Page, expect
from storefront_testkit import CARD_OK, Shop, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.browser]


async def _sign_in_to(person: Person, member: dict[str, str], path: str) -> None:
    await person.open(f"/signin?next={path}")
    await person.page.fill("#f-email", member["email"])
    await person.page.fill("#f-password", member["password"])
    await person.page.get_by_test_id("signin-submit").click()
    await person.page.wait_for_url(re.compile(rf".*{path}$"))


async def _reload_until_text(page: Page, test_id: str, text: str) -> None:
    # The change is Stripe's webhook's to make: the page shows it once it has arrived.
    for _ in range(60):
        found = page.get_by_test_id(test_id)
        if await found.count() > 0 and text in (await found.first.inner_text()):
            return
        await page.wait_for_timeout(500)
        await page.reload()
    raise AssertionError(f"{test_id} never said {text!r}")


async def _reload_until_count(page: Page, test_id: str, count: int) -> None:
    # The invoice becomes an order through Stripe's webhook, checkout's event and orders.
    for _ in range(60):
        if await page.get_by_test_id(test_id).count() >= count:
            break
        await page.wait_for_timeout(500)
        await page.reload()
    await expect(page.get_by_test_id(test_id)).to_have_count(count)


@pytest.mark.parametrize("width", ["desktop", "phone"])
async def test_a_subscriber_changes_bags_cadence_and_address(
    width: str, person: Person, phone: Person, browser_shop: Shop, screenshots: Path
) -> None:
    someone = person if width == "desktop" else phone
    page = someone.page
    member, detail, _ = await subscribed(browser_shop, f"Dorothy Vaughan {uuid.uuid4().hex[:4]}")
    await _sign_in_to(someone, member, detail)
    await _reload_until_text(page, "subscription-status-badge", "Active")
    await expect(page.get_by_test_id("subscription-cadence")).to_have_text("Every 2 weeks")

    await page.select_option("#p-quantity", "3")
    await page.select_option("#p-cadence", "1-month")
    await page.get_by_test_id("change-plan").click()
    await page.wait_for_url(re.compile(rf".*{detail}$"))
    await expect(
        page.get_by_text("your delivery changes as soon as Stripe confirms")
    ).to_be_visible()
    await _reload_until_text(page, "subscription-cadence", "Every month")
    await expect(page.get_by_test_id("subscription-bags")).to_contain_text("3 \u00d7")
    # Another cadence starts today: Stripe bills its first delivery at once (an order).
    await _reload_until_count(page, "subscription-invoice", 2)

    await page.fill("#f-line1", "")
    await page.get_by_test_id("change-address").click()
    await expect(page.get_by_text("Address is needed.")).to_be_visible()
    await page.fill("#f-line1", "9 Kettle Street")
    await page.fill("#f-city", "Salem")
    await page.get_by_test_id("change-address").click()
    await page.wait_for_url(re.compile(rf".*{detail}$"))
    await expect(page.get_by_test_id("subscription-address")).to_contain_text("9 Kettle Street")
    await expect(page.get_by_test_id("subscription-address")).to_contain_text("Salem")
    wide = await page.evaluate("document.documentElement.scrollWidth")
    assert wide <= (1280 if width == "desktop" else 390), wide
    await page.screenshot(path=screenshots / f"subscription-changed-{width}.png", full_page=True)
    assert someone.csp_violations() == []


def _variant_stock(browser_shop: Shop, product_id: str) -> dict[str, int]:
    response = browser_shop.http.get(
        f"/api/admin/products/{product_id}/variants", headers=browser_shop.admin
    )
    assert response.status_code == 200, response.text
    return {v["sku"]: v["on_hand"] for v in response.json()["variants"]}


def _stock_once(browser_shop: Shop, product_id: str, sku: str, on_hand: int) -> dict[str, int]:
    """Every variant's count, once ``sku``'s is ``on_hand`` (catalog takes a delivery from the
    paid invoice's event)."""

    def check() -> dict[str, int] | None:
        stock = _variant_stock(browser_shop, product_id)
        return stock if stock[sku] == on_hand else None

    return wait_for(check)


async def _order_variant(page: Page, row: int) -> str:
    """The variant named on the order of the subscription's ``row``-th invoice (newest first)."""
    link = page.get_by_test_id("subscription-invoice").nth(row).locator("a")
    await link.click()
    await page.wait_for_url(re.compile(r".*/order/[0-9a-f-]{36}$"))
    shown = await page.get_by_test_id("order-body").get_by_test_id("line-variant").inner_text()
    await page.go_back()
    return shown


async def test_a_shopper_subscribes_to_a_kilo_of_espresso_and_changes_the_grind(
    person: Person, phone: Person, browser_shop: Shop, screenshots: Path
) -> None:
    """Through Caddy in Chromium: the product page's variant picker feeds the subscribe form;
    Stripe's page bills the kilo; each delivery's order names its variant and takes its stock;
    the subscriber changes to another variant, shown once Stripe's webhook confirms it."""
    page = person.page
    coffee = browser_shop.coffee_with_variants(espresso_kilo=5)
    tag, variants = coffee["tag"], coffee["variants"]
    name = f"Hedy Lamarr {uuid.uuid4().hex[:4]}"
    member = browser_shop.register(name=name)
    await _sign_in_to(person, member, "/account")

    await person.open(f"/coffee/{coffee['slug']}?variant={tag}-es-1kg")
    form = page.get_by_test_id("subscribe-form")
    await expect(form.get_by_test_id("subscribe-variant")).to_have_text("Espresso / 1 kg")
    await form.get_by_test_id("subscribe").click()
    # No saved address: the form asks where to send it, still for the kilo of espresso.
    await expect(page.get_by_test_id("subscribe-notice")).to_contain_text("Where should we send")
    await expect(page.get_by_test_id("subscribe-variant")).to_contain_text("Espresso / 1 kg")
    await expect(page.locator("aside .price")).to_have_text("$56.00")
    await page.fill("#f-name", name)
    await page.fill("#f-line1", "3 Grinder Row")
    await page.fill("#f-city", "Portland")
    await page.fill("#f-postal_code", "97201")
    await page.select_option("#f-country", "US")
    await page.get_by_test_id("subscribe").click()

    await page.wait_for_url(re.compile(r".*/pay/cs_test_\w+$"))
    checkout_url = page.url
    await expect(page.locator("body")).to_contain_text("Espresso / 1 kg")
    await page.fill("#cardNumber", CARD_OK)
    await page.click("#submit")
    await page.wait_for_url(re.compile(r".*/account\?subscription=[0-9a-f-]{36}$"))
    subscription_id = page.url.rsplit("=", 1)[1]
    detail = f"/account/subscriptions/{subscription_id}"
    await person.open(detail)
    await _reload_until_text(page, "subscription-status-badge", "Active")
    await expect(page.get_by_test_id("subscription-variant")).to_contain_text("Espresso / 1 kg")
    await expect(page.get_by_test_id("subscription-variant")).to_contain_text(f"{tag}-es-1kg")
    await expect(page.get_by_test_id("subscription-bags")).to_have_text("1 \u00d7 $56.00")
    await _reload_until_count(page, "subscription-invoice", 1)
    assert await _order_variant(page, 0) == "Espresso / 1 kg"
    # The delivery took the kilo of espresso's stock, not the default bag's.
    stock = _stock_once(browser_shop, coffee["id"], f"{tag}-es-1kg", 4)
    assert stock[f"{tag}-wb-250"] == 40

    # Another grind and size, from the subscription's page.
    espresso_bag = variants[f"{tag}-es-250"]
    await page.select_option("#p-variant", espresso_bag["id"])
    await page.get_by_test_id("change-plan").click()
    await page.wait_for_url(re.compile(rf".*{detail}$"))
    await expect(
        page.get_by_text("your delivery changes as soon as Stripe confirms")
    ).to_be_visible()
    await _reload_until_text(page, "subscription-variant", "Espresso / 250 g")
    await expect(page.get_by_test_id("subscription-bags")).to_have_text("1 \u00d7 $16.50")
    await expect(page.locator("#p-variant option:checked")).to_contain_text("Espresso / 250 g")
    await page.screenshot(path=screenshots / "subscription-variant-changed.png", full_page=True)

    # The next delivery (Stripe's renewal) is the 250 g of espresso, by its own stock.
    _renew(browser_shop, checkout_url)
    await _reload_until_count(page, "subscription-invoice", 2)
    assert await _order_variant(page, 0) == "Espresso / 250 g"
    stock = _stock_once(browser_shop, coffee["id"], f"{tag}-es-250", 29)
    assert stock[f"{tag}-es-1kg"] == 4
    assert person.csp_violations() == []

    # Staff see which variant the customer subscribes to (on a phone, signed in as staff).
    await staff_sign_in(phone, browser_shop, f"/admin/customers/{member['id']}")
    await expect(phone.page.get_by_test_id("customer-subscription")).to_contain_text(
        f"Espresso / 250 g, SKU {tag}-es-250"
    )


def _renew(browser_shop: Shop, checkout_url: str) -> None:
    """The end of the period, now (Stripe's clock): the stand-in bills the next one."""
    control = browser_shop.stack.service_url("stripe-standin") + "/_standin"
    session_id = checkout_url.rsplit("/pay/", 1)[1]
    held = httpx.get(f"{control}/sessions/{session_id}", timeout=10)
    assert held.status_code == 200, held.text
    renewed = httpx.post(
        f"{control}/subscriptions/{held.json()['session']['subscription']}/renew", timeout=10
    )
    assert renewed.status_code == 201, renewed.text
