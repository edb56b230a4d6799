"""The shop in a real browser, through Caddy, with every service, the worker and the stand-ins.

Browse to buy as a guest (paid on the Stripe stand-in's page, confirmed only once the webhook has
gone through checkout and orders, mailed by the notifier worker through the Resend stand-in), a
declined card, an account from registration to sign-in, and staff shipping an order.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest
from browser_testkit import Person
from playwright.async_api import expect
from storefront_testkit import CARD_DECLINED, CARD_OK, DEMO_SLUGS, PASSWORD, Shop, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.browser]

#: Webhook -> checkout -> payment.succeeded -> orders takes a few seconds under load.
CONFIRM_TIMEOUT_MS = 45_000


@pytest.fixture(scope="module")
def coffees(browser_shop: Shop) -> list[dict]:
    return [browser_shop.product(slug) for slug in DEMO_SLUGS]


async def _fill_address(person: Person, email: str | None) -> None:
    page = person.page
    if email is not None:
        await page.fill("#f-email", email)
    await page.fill("#f-name", "Ada Lovelace")
    await page.fill("#f-line1", "12 Roastery Lane")
    await page.fill("#f-city", "Portland")
    await page.fill("#f-state", "OR")
    await page.fill("#f-postal_code", "97201")


async def _pay(person: Person, card: str) -> None:
    page = person.page
    await page.wait_for_url(re.compile(r".*/pay/cs_test_\w+$"))
    await page.fill("#cardNumber", card)
    await page.click("#submit")


async def test_a_guest_browses_buys_and_is_confirmed_by_the_webhook_not_the_redirect(
    person: Person, browser_shop: Shop, coffees: list[dict], screenshots: Path
) -> None:
    page = person.page
    email = f"guest-{uuid.uuid4().hex[:8]}@example.com"

    await person.open("/")
    await expect(
        page.get_by_role("heading", name="Small-batch coffee, roasted to order.")
    ).to_be_visible()
    await page.screenshot(path=screenshots / "home.png", full_page=True)

    await page.get_by_role("link", name="Shop", exact=True).first.click()
    await page.get_by_role("link", name="Single Origin").first.click()
    # Other suites add coffees to this category too: find ours by name, as a shopper would.
    await page.get_by_role("searchbox").first.fill("Ethiopia Yirgacheffe")
    await page.get_by_role("searchbox").first.press("Enter")
    await page.locator('a[href="/coffee/ethiopia-yirgacheffe"]').first.click()
    await expect(page.get_by_role("heading", name="Ethiopia Yirgacheffe")).to_be_visible()
    await expect(page.get_by_test_id("price")).to_have_text("$19.50")
    await page.select_option("#quantity", "2")
    await page.get_by_test_id("add-to-cart").click()
    await expect(page.get_by_test_id("added")).to_contain_text("Ethiopia Yirgacheffe to your cart")
    await expect(page.locator("#cart-count")).to_have_text("2")
    await page.screenshot(path=screenshots / "product.png", full_page=True)

    await page.get_by_test_id("cart-link").click()
    await expect(page.get_by_test_id("cart-line")).to_have_count(1)
    await page.get_by_test_id("line-quantity").select_option("3")  # htmx: the cart answers
    await expect(page.get_by_test_id("subtotal")).to_have_text("$58.50")
    await expect(page.locator("#cart-count")).to_have_text("3")
    await page.screenshot(path=screenshots / "cart.png", full_page=True)

    await page.get_by_test_id("checkout-link").click()
    await expect(page.get_by_test_id("total")).to_have_text("$58.50")  # free shipping from $50
    await _fill_address(person, email)
    await page.get_by_test_id("pay").click()
    await _pay(person, CARD_OK)

    await page.wait_for_url(re.compile(r".*/order/[0-9a-f-]{36}\?session_id=cs_test_\w+$"))
    order_id = re.search(r"/order/([0-9a-f-]{36})", page.url).group(1)
    # Paid only once orders says so (webhook -> checkout -> payment.succeeded -> orders).
    await expect(page.get_by_test_id("order-heading")).to_have_text(
        "Thank you, your order is confirmed", timeout=CONFIRM_TIMEOUT_MS
    )
    await expect(page.get_by_test_id("order-status")).to_have_text("Paid")
    await expect(page.get_by_test_id("order-total")).to_have_text("$58.50")
    # The cart empties when the cart service handles the payment too, maybe a moment after
    # orders did: the badge keeps asking until it shows the empty cart.
    # That is one more consumer of the same event, so it gets the same patience as the order.
    await expect(page.locator("#cart-count")).to_have_attribute(
        "data-count", "0", timeout=CONFIRM_TIMEOUT_MS
    )
    await expect(page.locator("#cart-count")).to_have_text("")
    await page.screenshot(path=screenshots / "order.png", full_page=True)
    assert browser_shop.admin_order(order_id)["status"] == "paid"

    # The notifier worker sent the confirmation through the Resend stand-in.
    mails = wait_for(lambda: browser_shop.emails_to(email), timeout=40)
    (confirmation,) = [m for m in mails if m["subject"].endswith("is confirmed")]
    assert order_id[-8:].upper() in confirmation["subject"]
    # Opened on another device, with none of this browser's cookies: the link alone shows it.
    link = re.search(r"https?://\S+/order/[0-9a-f-]+\?token=\S+", confirmation["text"])
    assert link, confirmation["text"]
    assert link.group(0).startswith(browser_shop.stack.url + "/order/")
    async with httpx.AsyncClient(timeout=20) as elsewhere:
        seen = await elsewhere.get(link.group(0))
    assert seen.status_code == 200, seen.text[:300]
    assert "Thank you, your order is confirmed" in seen.text
    assert person.csp_violations() == []


async def test_a_declined_card_shows_the_decline_and_the_order_is_never_paid(
    person: Person, browser_shop: Shop, coffees: list[dict]
) -> None:
    page = person.page
    email = f"declined-{uuid.uuid4().hex[:8]}@example.com"
    await person.open("/coffee/colombia-huila")
    await page.get_by_test_id("add-to-cart").click()
    await expect(page.get_by_test_id("added")).to_be_visible()
    await person.open("/checkout")
    await _fill_address(person, email)
    await page.get_by_test_id("pay").click()
    await _pay(person, CARD_DECLINED)
    await expect(page.locator("#card-errors")).to_have_text("Your card was declined.")
    # Back to the shop: the cart is as it was, nothing was charged.
    await page.click("#cancel")
    await page.wait_for_url(re.compile(r".*/cart$"))
    await expect(page.get_by_test_id("cart-line")).to_have_count(1)
    # Back at checkout the guest types nothing again: email and address are as they gave them.
    await page.get_by_test_id("checkout-link").click()
    await expect(page.locator("#f-email")).to_have_value(email)
    await expect(page.locator("#f-name")).to_have_value("Ada Lovelace")
    await expect(page.locator("#f-line1")).to_have_value("12 Roastery Lane")
    await expect(page.locator("#f-city")).to_have_value("Portland")
    await expect(page.locator("#f-postal_code")).to_have_value("97201")
    listing = browser_shop.http.get(
        "/api/admin/orders", params={"q": email}, headers=browser_shop.admin
    ).json()
    assert all(order["status"] != "paid" for order in listing["items"])
    assert person.csp_violations() == []


async def test_a_shopper_signs_up_by_mail_signs_out_signs_in_and_keeps_an_address(
    person: Person, browser_shop: Shop
) -> None:
    page = person.page
    email = f"member-{uuid.uuid4().hex[:8]}@example.com"
    await person.open("/register")
    await page.fill("#f-name", "Katherine Johnson")
    await page.fill("#f-email", email)
    await page.fill("#f-password", PASSWORD)
    await page.get_by_test_id("register-submit").click()
    await expect(page.get_by_test_id("register-sent")).to_contain_text(email)
    # The link in the mail the notifier sent through the Resend stand-in.
    token = browser_shop.stack.mailed_token(email, "/verify-email")
    await person.open(f"/verify-email?token={token}")
    await page.get_by_test_id("verify-submit").click()
    await expect(page.get_by_test_id("account-heading")).to_have_text("Hello, Katherine Johnson")
    await expect(page.get_by_text("Your account is ready")).to_be_visible()

    await page.get_by_role("link", name="Add an address").click()
    await _fill_address(person, None)
    await page.get_by_role("button", name="Save address").click()
    await expect(page.get_by_test_id("address")).to_contain_text("12 Roastery Lane")

    await page.get_by_test_id("signout").click()
    await expect(page.get_by_test_id("signin-link")).to_be_visible()
    await person.open("/account")
    await page.wait_for_url(re.compile(r".*/signin\?next=/account$"))
    await page.fill("#f-email", email)
    await page.fill("#f-password", "not-my-password")
    await page.get_by_test_id("signin-submit").click()
    await expect(page.get_by_test_id("signin-error")).to_contain_text("do not match")
    await page.fill("#f-email", email)
    await page.fill("#f-password", PASSWORD)
    await page.get_by_test_id("signin-submit").click()
    await expect(page.get_by_test_id("account-heading")).to_have_text("Hello, Katherine Johnson")
    await expect(page.get_by_test_id("address")).to_have_count(1)
    assert person.csp_violations() == []


async def test_staff_sign_in_and_ship_a_paid_order(
    person: Person, browser_shop: Shop, coffees: list[dict], screenshots: Path
) -> None:
    page = person.page
    staff = browser_shop.register_admin()
    customer = f"ship-{uuid.uuid4().hex[:8]}@example.com"
    order_id, _ = browser_shop.buy(coffees[2]["id"], email=customer, quantity=2)
    browser_shop.wait_paid(order_id)

    await person.open("/admin")
    await page.wait_for_url(re.compile(r".*/signin\?next=/admin$"))
    await page.fill("#f-email", staff["email"])
    await page.fill("#f-password", staff["password"])
    await page.get_by_test_id("signin-submit").click()
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    await page.screenshot(path=screenshots / "admin.png", full_page=True)

    await page.get_by_role("link", name="Orders", exact=True).click()
    await page.fill("#q", customer)
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_test_id("admin-order")).to_have_count(1)
    await page.get_by_test_id("admin-order").get_by_role("link").click()
    await page.select_option("#f-carrier", "UPS")
    await page.fill("#f-tracking", "1Z999AA10123456784")
    await page.get_by_test_id("ship").click()
    await expect(page.get_by_text("The order is marked shipped")).to_be_visible()
    await expect(page.get_by_test_id("shipment")).to_contain_text("1Z999AA10123456784")
    await expect(page.get_by_test_id("order-status")).to_have_text("Shipped")
    assert browser_shop.admin_order(order_id)["status"] == "shipped"
    assert person.csp_violations() == []


async def test_sign_in_with_google_goes_through_the_oidc_stand_in_and_back(
    person: Person,
) -> None:
    page = person.page
    email = f"google-{uuid.uuid4().hex[:8]}@example.com"
    await person.open("/signin?next=/account")
    await page.get_by_test_id("google").click()
    # The provider's own page (the local OIDC stand-in), not the shop's.
    await page.wait_for_url(re.compile(r".*/authorize\?.*"))
    await page.fill("#email", email)
    await page.fill("#name", "Hedy Lamarr")
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url(re.compile(r".*/account$"))
    await expect(page.get_by_test_id("account-heading")).to_have_text("Hello, Hedy Lamarr")
    await expect(page.get_by_text("You sign in with Google")).to_be_visible()
    assert person.csp_violations() == []
