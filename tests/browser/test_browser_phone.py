"""The shop at phone width (390 CSS pixels): no page wider than the screen, the admin usable, and
the buying path laid out for a thumb; the same pages at 1280 keep their desktop layout."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from browser_testkit import Person
from playwright.async_api import Page, expect
from storefront_testkit import DEMO_SLUGS, Shop

pytestmark = [pytest.mark.stack, pytest.mark.browser]

PHONE_WIDTH = 390


async def _overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than its viewport (0 when it fits)."""
    width: int = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return width


async def _sign_in(person: Person, email: str, password: str, next_path: str) -> None:
    page = person.page
    await person.open(f"/signin?next={next_path}")
    await page.fill("#f-email", email)
    await page.fill("#f-password", password)
    await page.get_by_test_id("signin-submit").click()
    await page.wait_for_url(re.compile(rf".*{re.escape(next_path)}$"))


async def test_no_page_is_wider_than_a_phone_and_the_admin_is_usable_there(
    phone: Person, browser_shop: Shop, screenshots: Path
) -> None:
    page = phone.page
    coffee = browser_shop.product(DEMO_SLUGS[0])
    customer = f"narrow-{uuid.uuid4().hex[:8]}-with-a-rather-long-address@example.com"
    order_id, session_id = browser_shop.buy(coffee["id"], email=customer, quantity=2)
    browser_shop.wait_paid(order_id)
    staff = browser_shop.register_admin()
    wide: dict[str, int] = {}

    async def measure(path: str, name: str) -> None:
        response = await phone.open(path)
        assert response is not None
        assert response.status < 400, (path, response.status)
        await page.screenshot(path=screenshots / f"phone-{name}.png", full_page=True)
        if overflow := await _overflow(page):
            wide[path] = overflow

    # The shopper's pages, a guest's order page included.
    for path in (
        "/",
        "/shop",
        f"/coffee/{coffee['slug']}",
        "/search?q=coffee",
        "/signin",
        "/register",
        "/forgot-password",
        f"/order/{order_id}?session_id={session_id}",
    ):
        await measure(path, path.strip("/").split("?")[0].replace("/", "-") or "home")
    await page.goto(f"{phone.base_url}/coffee/{coffee['slug']}")
    await page.get_by_test_id("add-to-cart").click()
    await expect(page.get_by_test_id("added")).to_be_visible()
    await measure("/cart", "cart")
    await measure("/checkout", "checkout")

    # Staff: every page the admin's menu leads to, and one of each kind of detail page.
    await _sign_in(phone, staff["email"], staff["password"], "/admin")
    admin_pages = {
        str(href)
        for href in await page.locator("nav.admin-nav a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
    }
    assert {"/admin", "/admin/orders", "/admin/products", "/admin/inventory"} <= admin_pages
    admin_pages |= {f"/admin/orders/{order_id}", "/admin/products/new"}
    for path in sorted(admin_pages):
        await measure(path, path.strip("/").replace("/", "-"))
    await measure("/account", "account")

    assert wide == {}, f"pages wider than {PHONE_WIDTH}px (by how much): {wide}"

    # The orders list at phone width still shows what staff decide on: status and total.
    await phone.open(f"/admin/orders?q={customer}")
    row = page.get_by_test_id("admin-order")
    await expect(row).to_have_count(1)
    for cell in (row.get_by_test_id("order-status"), row.get_by_test_id("admin-order-total")):
        box = await cell.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= PHONE_WIDTH, await cell.inner_text()
    assert phone.csp_violations() == []


async def _per_row(page: Page) -> int:
    """Product cards on the listing's first row."""
    tops = await page.locator(".product-grid .product-card").evaluate_all(
        "cards => cards.map(c => Math.round(c.getBoundingClientRect().top))"
    )
    return sum(1 for top in tops if top == tops[0])


async def test_the_buying_path_on_a_phone_and_on_a_desktop(
    phone: Person, person: Person, browser_shop: Shop, screenshots: Path
) -> None:
    coffees = [browser_shop.product(slug) for slug in DEMO_SLUGS]
    for who, name in ((phone, "phone"), (person, "desktop")):
        page = who.page
        viewport = page.viewport_size
        assert viewport is not None
        await who.open("/shop")
        per_row = await _per_row(page)
        assert per_row == 2 if who is phone else per_row >= 3, (name, per_row)
        await page.screenshot(path=screenshots / f"{name}-shop.png")

        # A coffee's price and "Add to cart" are on the first screen, without scrolling.
        await who.open(f"/coffee/{coffees[1]['slug']}")
        for test_id in ("price", "add-to-cart"):
            box = await page.get_by_test_id(test_id).bounding_box()
            assert box is not None
            assert box["y"] + box["height"] <= viewport["height"], (name, test_id, box)
        await page.screenshot(path=screenshots / f"{name}-product.png")
        await page.get_by_test_id("add-to-cart").click()
        await expect(page.get_by_test_id("added")).to_be_visible()

        # The order summary is read before "Pay": above it on a phone, beside it on a desktop.
        await who.open("/checkout")
        summary = await page.get_by_test_id("order-summary").bounding_box()
        pay = await page.get_by_test_id("pay").bounding_box()
        assert summary is not None
        assert pay is not None
        if who is phone:
            assert summary["y"] + summary["height"] <= pay["y"], (summary, pay)
        else:
            assert summary["x"] >= pay["x"] + pay["width"], (summary, pay)
        assert await _overflow(page) == 0
        await page.screenshot(path=screenshots / f"{name}-checkout.png", full_page=True)
        assert who.csp_violations() == []
