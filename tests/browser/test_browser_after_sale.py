"""After the sale, in a real browser through Caddy: a guest's orders follow them into the account
they make later, a Google account sets a password, staff refund, customers and subscriptions."""

from __future__ import annotations

import functools
import re
import uuid
from pathlib import Path

import httpx
import pytest
from browser_testkit import Person, staff_sign_in, subscribed
from playwright.async_api import Page, expect
from storefront_testkit import DEMO_SLUGS, PASSWORD, Shop, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.browser]


async def test_a_guests_order_appears_in_the_account_made_later_with_that_address(
    person: Person, browser_shop: Shop
) -> None:
    page = person.page
    coffee = browser_shop.product(DEMO_SLUGS[1])
    email = f"later-{uuid.uuid4().hex[:8]}@example.com"
    order_id, _ = browser_shop.buy(coffee["id"], email=email, quantity=1)
    browser_shop.wait_paid(order_id)

    await person.open("/register")
    await page.fill("#f-name", "Mary Jackson")
    await page.fill("#f-email", email)
    await page.fill("#f-password", PASSWORD)
    await page.get_by_test_id("register-submit").click()
    await expect(page.get_by_test_id("register-sent")).to_contain_text(email)
    token = browser_shop.stack.mailed_token(email, "/verify-email")
    await person.open(f"/verify-email?token={token}")
    await page.get_by_test_id("verify-submit").click()
    await expect(page.get_by_test_id("account-heading")).to_have_text("Hello, Mary Jackson")

    mine = page.get_by_test_id("my-order")
    await expect(mine).to_have_count(1)
    await expect(mine).to_contain_text(order_id[-8:].upper())
    await mine.get_by_role("link").click()
    await page.wait_for_url(re.compile(rf".*/order/{order_id}$"))
    await expect(page.get_by_test_id("order-status")).to_have_text("Paid")
    assert person.csp_violations() == []


async def test_an_account_made_through_google_sets_a_password_and_signs_in_with_it(
    person: Person,
) -> None:
    page = person.page
    email = f"google-pw-{uuid.uuid4().hex[:8]}@example.com"
    await person.open("/signin?next=/account")
    await page.get_by_test_id("google").click()
    await page.wait_for_url(re.compile(r".*/authorize\?.*"))
    await page.fill("#email", email)
    await page.fill("#name", "Annie Easley")
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url(re.compile(r".*/account$"))

    form = page.get_by_test_id("set-password")
    await form.locator("#f-new_password").fill("short")
    await form.locator("#f-confirm_password").fill("short")
    await form.get_by_role("button", name="Set password").click()
    await expect(page.get_by_test_id("password-error")).to_contain_text("at least 10")
    await form.locator("#f-new_password").fill(PASSWORD)
    await form.locator("#f-confirm_password").fill(PASSWORD)
    await form.get_by_role("button", name="Set password").click()
    await expect(page.get_by_text("Your password is set")).to_be_visible()
    # Now a password account: the change form, no more set form.
    await expect(page.get_by_test_id("set-password")).to_have_count(0)
    await expect(page.locator("#f-current_password")).to_be_visible()

    await page.get_by_test_id("signout").click()
    await expect(page.get_by_test_id("signin-link")).to_be_visible()
    await person.open("/signin?next=/account")
    await page.fill("#f-email", email)
    await page.fill("#f-password", PASSWORD)
    await page.get_by_test_id("signin-submit").click()
    await expect(page.get_by_test_id("account-heading")).to_have_text("Hello, Annie Easley")
    assert person.csp_violations() == []


async def test_staff_refund_part_of_an_order_through_stripe_and_restock_it(
    person: Person, browser_shop: Shop, screenshots: Path
) -> None:
    page = person.page
    coffee = browser_shop.product(DEMO_SLUGS[2])
    customer = f"refund-{uuid.uuid4().hex[:8]}@example.com"
    order_id, _ = browser_shop.buy(coffee["id"], email=customer, quantity=2)
    browser_shop.wait_paid(order_id)
    on_hand = browser_shop.admin_product(coffee["id"])["stock"]["on_hand"]

    await staff_sign_in(person, browser_shop, f"/admin/orders/{order_id}")
    form = page.get_by_test_id("refund-form")
    # More than was paid: the page says so, nothing is refunded.
    await form.locator("#f-refund-amount").fill("999.00")
    await form.get_by_test_id("refund").click()
    await expect(page.get_by_test_id("order-error")).to_contain_text("can still be refunded")
    await expect(page.get_by_test_id("refund-row")).to_have_count(0)

    await form.locator("#f-refund-amount").fill("5.00")
    await form.locator("#f-refund-reason").fill("One bag arrived torn")
    await form.locator("#f-refund-restock").check()
    await form.get_by_test_id("refund").click()
    await expect(page.get_by_text("The refund is asked of Stripe")).to_be_visible()
    await expect(page.get_by_test_id("refund-row")).to_have_count(1)
    await expect(page.get_by_test_id("refund-row")).to_contain_text("$5.00")

    # The order moves only when Stripe's charge.refunded has come back through checkout.
    def refunded() -> dict | None:
        order = browser_shop.admin_order(order_id)
        return order if order and order["status"] == "partially_refunded" else None

    order = wait_for(refunded, timeout=45)
    assert order["amount_refunded"] == 500
    await page.reload()
    await expect(page.get_by_test_id("order-status")).to_have_text("Partly refunded")
    await expect(page.get_by_test_id("refund-row")).to_contain_text("Refunded")
    await page.screenshot(path=screenshots / "admin-refund.png", full_page=True)

    # Restocked by catalog, mailed by the notifier, counted in the sales figures.
    wait_for(
        lambda: browser_shop.admin_product(coffee["id"])["stock"]["on_hand"] >= on_hand + 2,
        timeout=30,
    )
    mails = wait_for(
        lambda: [m for m in browser_shop.emails_to(customer) if "refunded" in m["subject"]],
        timeout=40,
    )
    assert "$5.00" in mails[0]["subject"]
    assert f"/order/{order_id}?token=" in mails[0]["text"]  # a guest's way in
    stats = browser_shop.http.get("/api/admin/stats", headers=browser_shop.admin).json()
    usd = next(r for r in stats["revenue"] if r["currency"] == "USD")
    assert usd["refunded"] >= 500
    await person.open("/admin")
    await expect(page.get_by_test_id("stat-refunded").first).to_be_visible()
    assert person.csp_violations() == []


async def test_staff_manage_categories_and_find_disable_a_customer_with_their_orders(
    person: Person, browser_shop: Shop, screenshots: Path
) -> None:
    page = person.page
    coffee = browser_shop.product(DEMO_SLUGS[0])
    customer = browser_shop.register(name="Dorothy Vaughan")
    # Bought as a guest with the account's (proved) address: it is the customer's order too.
    order_id, _ = browser_shop.buy(coffee["id"], email=customer["email"])
    browser_shop.wait_paid(order_id)

    await staff_sign_in(person, browser_shop, "/admin/categories")
    name = f"Decaf {uuid.uuid4().hex[:6]}"
    form = page.get_by_test_id("category-form")
    await form.locator("#f-name").fill("x")
    await form.locator("#f-name").evaluate("el => el.removeAttribute('minlength')")
    await form.get_by_role("button", name="Add category").click()
    await expect(page.get_by_test_id("category-error")).to_contain_text("name")
    await page.get_by_test_id("category-form").locator("#f-name").fill(name)
    await page.get_by_test_id("category-form").locator("#f-description").fill("Gentle nights.")
    await page.get_by_test_id("category-form").get_by_role("button", name="Add category").click()
    await expect(page.get_by_text("The category is saved.")).to_be_visible()
    await page.fill("#q", name)
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_test_id("admin-category")).to_have_count(1)
    await page.get_by_test_id("admin-category").get_by_role("link").click()
    await page.locator("#f-name").fill(f"{name} Swiss Water")
    await page.get_by_role("button", name="Save category").click()
    await expect(
        page.get_by_test_id("admin-category").filter(has_text="Swiss Water")
    ).to_have_count(1)
    await page.screenshot(path=screenshots / "admin-categories.png", full_page=True)

    await page.get_by_role("link", name="Customers", exact=True).click()
    await page.fill("#q", customer["email"])
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_test_id("admin-customer")).to_have_count(1)
    await page.get_by_test_id("admin-customer").get_by_role("link").click()
    await expect(page.get_by_role("heading", name="Dorothy Vaughan")).to_be_visible()
    await expect(page.get_by_test_id("customer-order")).to_contain_text(order_id[-8:].upper())
    await expect(page.get_by_text("No subscriptions.")).to_be_visible()
    await page.screenshot(path=screenshots / "admin-customer.png", full_page=True)
    await page.get_by_test_id("customer-toggle").click()
    await expect(page.get_by_test_id("customer-state")).to_have_text("Disabled")
    refused = browser_shop.http.post(
        "/api/auth/login", json={"email": customer["email"], "password": customer["password"]}
    )
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    await page.get_by_test_id("customer-toggle").click()
    await expect(page.get_by_test_id("customer-state")).to_have_text("Active")
    assert person.csp_violations() == []


async def _sign_in_to(person: Person, member: dict, path: str) -> None:
    await person.open(f"/signin?next={path}")
    await person.page.fill("#f-email", member["email"])
    await person.page.fill("#f-password", member["password"])
    await person.page.get_by_test_id("signin-submit").click()
    await person.page.wait_for_url(re.compile(rf".*{path}$"))


async def _reload_until(page: Page, test_id: str, present: bool) -> None:
    # The change is Stripe's webhook's to make: the page shows it once it has arrived.
    for _ in range(60):
        if (await page.get_by_test_id(test_id).count() > 0) == present:
            return
        await page.wait_for_timeout(500)
        await page.reload()
    raise AssertionError(f"{test_id} never {'appeared' if present else 'went'}")


def _renew(browser_shop: Shop, checkout_url: str) -> None:
    """The end of the period, now (Stripe's clock): the stand-in bills the next one."""
    control = browser_shop.stack.service_url("stripe-standin") + "/_standin"
    session_id = checkout_url.rsplit("/pay/", 1)[1]
    held = httpx.get(f"{control}/sessions/{session_id}", timeout=10)
    assert held.status_code == 200, held.text
    stripe_id = held.json()["session"]["subscription"]
    renewed = httpx.post(f"{control}/subscriptions/{stripe_id}/renew", timeout=10)
    assert renewed.status_code == 201, renewed.text


async def _portal_card(page: Page, card: str, back_to: str) -> None:
    await expect(page.locator("#current-card")).to_be_visible()
    await page.fill("#cardNumber", card)
    await page.click("#submit")
    await page.wait_for_url(re.compile(rf".*{back_to}$"))


async def test_a_failed_renewal_is_mailed_and_shown_and_the_card_is_updated_in_the_portal(
    person: Person, browser_shop: Shop, screenshots: Path
) -> None:
    page = person.page
    member, detail, checkout_url = await subscribed(browser_shop, "Grace Hopper")
    await _sign_in_to(person, member, detail)
    await _reload_until(page, "change-card", True)  # active once Stripe's webhooks arrived

    # A card Stripe saves but cannot charge: the next renewal fails.
    await page.get_by_test_id("change-card").click()
    await _portal_card(page, "4000 0000 0000 0341", detail)
    _renew(browser_shop, checkout_url)
    await _reload_until(page, "payment-failed", True)
    await expect(page.get_by_test_id("payment-failed")).to_contain_text(
        "Your last payment failed — update your card"
    )
    await page.screenshot(path=screenshots / "subscription-payment-failed.png", full_page=True)
    mails = wait_for(
        lambda: [
            m for m in browser_shop.emails_to(member["email"]) if "update your card" in m["subject"]
        ],
        timeout=60,
    )
    assert f"{detail}" in mails[0]["text"]

    await page.get_by_test_id("update-card").click()
    await _portal_card(page, "4242 4242 4242 4242", detail)
    _renew(browser_shop, checkout_url)
    await _reload_until(page, "payment-failed", False)
    await expect(page.get_by_test_id("subscription-status-badge")).to_have_text("Active")
    assert person.csp_violations() == []


async def test_a_subscriber_skips_the_next_delivery_resumes_and_pauses(
    person: Person, browser_shop: Shop, screenshots: Path
) -> None:
    page = person.page
    member, detail, _ = await subscribed(browser_shop, "Katherine Coleman")

    await _sign_in_to(person, member, detail)
    reload_until = functools.partial(_reload_until, page)

    await reload_until("skip-next", True)  # active once Stripe's webhooks arrived
    await page.get_by_test_id("skip-next").click()
    await expect(page.get_by_text("your next delivery is skipped")).to_be_visible()
    await reload_until("subscription-paused", True)
    await expect(page.get_by_test_id("subscription-paused")).to_contain_text(
        "Next delivery skipped"
    )
    await page.screenshot(path=screenshots / "subscription-skipped.png", full_page=True)
    await page.get_by_test_id("resume-subscription").click()
    await reload_until("subscription-paused", False)
    await page.get_by_test_id("pause-subscription").click()
    await reload_until("subscription-paused", True)
    await expect(page.get_by_test_id("subscription-paused")).to_contain_text(
        "No deliveries until you resume"
    )
    assert person.csp_violations() == []
