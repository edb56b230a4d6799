"""A subscriber changes their delivery in a real browser through Caddy: the bags, the cadence
(shown once Stripe's webhook confirms; a new cadence bills its first delivery at once) and the
address, at desktop and phone widths."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from browser_testkit import Person, subscribed
from playwright.async_api import Page, expect
from storefront_testkit import Shop

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
