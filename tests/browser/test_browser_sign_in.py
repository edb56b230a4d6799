"""The sign-in page at every address that names it, and a Google sign-in that comes back refused.

``make run`` prints ``/sign-in``; identity sends a refused or cancelled Google sign-in to
``/sign-in?error=google-<reason>&next=<path>``. The shopper must land on the sign-in page, read why
in a sentence, and still go where they were going once signed in.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_testkit import Person
from playwright.async_api import expect
from storefront_testkit import Shop

pytestmark = [pytest.mark.stack, pytest.mark.browser]


async def test_sign_in_as_make_run_prints_it_and_back_from_a_cancelled_google_sign_in(
    person: Person, browser_shop: Shop, screenshots: Path
) -> None:
    page = person.page
    shopper = browser_shop.register(name="Mary Jackson")

    # The address `make run` prints (and the older /login) is the sign-in page, not a 404.
    for alias in ("/sign-in", "/login"):
        response = await person.open(alias)
        assert response is not None
        assert response.ok, alias
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # From a page that needs an account, through Google's page, cancelled there.
    await person.open("/sign-in?next=/account/orders")
    await page.get_by_test_id("google").click()
    await page.wait_for_url(re.compile(r".*/authorize\?.*"))
    await page.get_by_role("button", name="Cancel").click()
    await page.wait_for_url(re.compile(r".*/signin\?.*"))
    await expect(page.get_by_test_id("signin-error")).to_have_text(
        "You cancelled signing in with Google. Sign in another way, or try Google again."
    )
    await expect(page.locator("input[name=next]")).to_have_value("/account/orders")
    await page.screenshot(path=screenshots / "signin-google-cancelled.png", full_page=True)

    # Google again keeps the page too, and so does the password.
    google = await page.get_by_test_id("google").get_attribute("href")
    assert google == "/api/auth/google/login?next=%2Faccount%2Forders"
    await page.fill("#f-email", shopper["email"])
    await page.fill("#f-password", shopper["password"])
    await page.get_by_test_id("signin-submit").click()
    await page.wait_for_url(re.compile(r".*/account/orders$"))
    await expect(page.get_by_role("heading", name="Your orders")).to_be_visible()
    assert person.csp_violations() == []
