"""Coffee subscriptions in the storefront, in-process, over the real services of the test stack.

A shopper subscribes from a coffee's page, pays on the Stripe stand-in's page, and sees the
subscription active only once checkout says so (Stripe's signed webhooks, not the redirect);
then cancels it at the period's end. Bad input and other shoppers get pages, never raw bodies.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from ember_devkit.testing.waiting import eventually_async as eventually
from storefront_testkit import CARD_OK, DEMO_SLUGS, PASSWORD, Browser, Shop, csrf_of

pytestmark = pytest.mark.stack

T = TypeVar("T")
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Roastery Lane",
    "city": "Portland",
    "state": "OR",
    "postal_code": "97201",
    "country": "US",
}
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def coffee(shop: Shop) -> dict[str, Any]:
    return shop.product(DEMO_SLUGS[1])


def assert_page(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text
    assert '"type":' not in response.text, "a problem body leaked into the page"
    return response.text


async def sign_in(browser: Browser, shop: Shop, name: str = "Rosalind Franklin") -> dict[str, Any]:
    person = shop.register(name=name)
    page = (await browser.get("/signin")).text
    signed = await browser.post(
        "/signin", {"email": person["email"], "password": PASSWORD, "_csrf_token": csrf_of(page)}
    )
    assert signed.status_code == 303, signed.text
    return person


async def form_token(browser: Browser) -> str:
    """This browser's form token (from the account page, which always has a form)."""
    return csrf_of(assert_page(await browser.get("/account")))


async def subscribe(browser: Browser, coffee: dict[str, Any], **fields: str) -> httpx.Response:
    """Post the coffee page's "Subscribe" form (with the page's own token) plus ``fields``."""
    data = {"coffee": coffee["slug"], "quantity": "2", "cadence": "2-week", **fields}
    return await browser.form(f"/coffee/{coffee['slug']}", "/account/subscriptions", data)


async def pay(pay_url: str, email: str) -> str:
    """Pay on the Stripe stand-in's hosted page with a good card: the subscription's id, from
    the success URL Stripe sends the browser back to."""
    async with httpx.AsyncClient(timeout=20) as stripe_page:
        paid = await stripe_page.post(
            pay_url, data={"card_number": CARD_OK, "exp": "12 / 34", "cvc": "123", "email": email}
        )
    assert paid.status_code == 303, paid.text
    found = re.search(rf"/account\?subscription=({UUID})$", paid.headers["location"])
    assert found, paid.headers["location"]
    return found.group(1)


async def listed(browser: Browser) -> list[dict[str, str]]:
    page = assert_page(await browser.get("/account/subscriptions"))
    return [
        {"id": m.group(1), "status": m.group(2)}
        for m in re.finditer(
            rf'data-testid="my-subscription" data-id="({UUID})" data-status="([a-z_]+)"', page
        )
    ]


async def until_state(browser: Browser, subscription_id: str, state: str) -> str:
    async def check() -> str | None:
        fragment = assert_page(
            await browser.get(f"/account/subscriptions/{subscription_id}/status")
        )
        return fragment if f'data-testid="subscription-{state}"' in fragment else None

    return await eventually(check)


async def active_subscription(
    browser: Browser, shop: Shop, coffee: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    person = await sign_in(browser, shop)
    started = await subscribe(browser, coffee, address_choice="new", **ADDRESS)
    assert started.status_code == 303, started.text
    subscription_id = await pay(started.headers["location"], person["email"])
    await until_state(browser, subscription_id, "active")
    return person, subscription_id


async def test_signed_out_the_coffee_page_offers_to_sign_in_to_subscribe(
    browser: Browser, shop: Shop, coffee: dict[str, Any]
) -> None:
    page = assert_page(await browser.get(f"/coffee/{coffee['slug']}"))
    assert f'<a href="/signin?next=/coffee/{coffee["slug"]}">Sign in to subscribe</a>' in page
    assert 'data-testid="subscribe-form"' not in page
    # A post without an account goes to sign in, and back to the coffee after.
    answer = await subscribe(browser, coffee)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/signin?next=/coffee/{coffee['slug']}"
    assert (
        (await browser.get("/account/subscriptions"))
        .headers["location"]
        .startswith("/signin?next=/account/subscriptions")
    )
    # A sold-out coffee is not offered (each delivery needs stock).
    shop.set_stock(coffee["id"], 0)
    try:
        gone = assert_page(await browser.get(f"/coffee/{coffee['slug']}"))
        assert "Sign in to subscribe" not in gone
    finally:
        shop.set_stock(coffee["id"], 500)


async def test_subscribing_goes_to_stripe_and_shows_active_only_after_the_webhook(
    browser: Browser, shop: Shop, coffee: dict[str, Any]
) -> None:
    person = await sign_in(browser, shop)
    page = assert_page(await browser.get(f"/coffee/{coffee['slug']}"))
    assert 'data-testid="subscribe-form"' in page
    assert '<option value="2-week" selected>Every 2 weeks</option>' in page
    assert '<option value="1-month">Every month</option>' in page
    assert 'data-testid="add-to-cart"' in page
    # No saved address yet: the form asks where to send it, and nothing is made.
    asked = assert_page(await subscribe(browser, coffee))
    assert "Where should we send it?" in asked
    assert 'name="line1"' in asked
    assert await listed(browser) == []
    started = await subscribe(browser, coffee, address_choice="new", **ADDRESS)
    assert started.status_code == 303, started.text
    pay_url = started.headers["location"]
    standin = urlsplit(shop.stack.service_url("stripe-standin"))
    assert urlsplit(pay_url).port == standin.port, pay_url
    assert urlsplit(pay_url).path.startswith("/pay/cs_"), pay_url
    # Not paid yet: listed as awaiting payment, with the way back to Stripe's page.
    [mine] = await listed(browser)
    assert mine["status"] == "incomplete"
    waiting = assert_page(await browser.get(f"/account/subscriptions/{mine['id']}"))
    assert "starts once the payment is confirmed" in waiting
    assert f'href="{pay_url}"' in waiting
    assert f'hx-get="/account/subscriptions/{mine["id"]}/status?n=1"' in waiting

    subscription_id = await pay(pay_url, person["email"])
    assert subscription_id == mine["id"]
    # Stripe's redirect lands on the account page: it says the webhook decides, and asks.
    back = assert_page(await browser.get("/account", params={"subscription": subscription_id}))
    assert "Your subscription starts once the payment is confirmed" in back
    assert f'hx-get="/account/subscriptions/{subscription_id}/status"' in back
    assert 'href="/account/subscriptions"' in back
    active = await until_state(browser, subscription_id, "active")
    assert "hx-trigger" not in active, "an active subscription is not asked about again"

    [row] = await listed(browser)
    assert row == {"id": subscription_id, "status": "active"}
    listing = assert_page(await browser.get("/account/subscriptions"))
    assert coffee["name"] in listing
    assert "Every 2 weeks" in listing
    assert ">Active<" in listing
    total = coffee["price"] * 2
    assert f"${total // 100}.{total % 100:02d}" in listing
    detail = assert_page(await browser.get(f"/account/subscriptions/{subscription_id}"))
    assert 'data-testid="subscription-invoice"' in detail
    assert ">Paid<" in detail
    assert "12 Roastery Lane" in detail
    assert 'data-testid="cancel-subscription"' in detail
    # A garbage return parameter shows nothing of it.
    assert "subscription-returned" not in assert_page(
        await browser.get("/account", params={"subscription": "../../admin"})
    )


async def test_cancelling_ends_it_at_the_period_end(
    browser: Browser, shop: Shop, coffee: dict[str, Any]
) -> None:
    _, subscription_id = await active_subscription(browser, shop, coffee)
    page = f"/account/subscriptions/{subscription_id}"
    cancelled = await browser.form(page, f"{page}/cancel", {})
    assert cancelled.status_code == 303
    assert cancelled.headers["location"] == page
    shown = assert_page(await browser.get(page))
    assert "cancelled from the end of the current period" in shown
    ending = await until_state(browser, subscription_id, "ending")
    assert "It ends at the end of the current period" in ending
    detail = assert_page(await browser.get(page))
    assert "Ends at period end" in detail
    assert 'data-testid="cancel-subscription"' not in detail
    assert 'data-testid="subscription-period-end"' in detail
    [row] = await listed(browser)
    assert row["status"] == "active"  # Stripe's status until the period ends
    assert "Ends at period end" in assert_page(await browser.get("/account/subscriptions"))
    # Asking again changes nothing and is not an error.
    again = await browser.post(f"{page}/cancel", {"_csrf_token": await form_token(browser)})
    assert again.status_code == 303


async def test_a_saved_default_address_is_used_from_the_coffee_page(
    browser: Browser, shop: Shop, coffee: dict[str, Any]
) -> None:
    await sign_in(browser, shop)
    made = await browser.form(
        "/account/addresses/new",
        "/account/addresses",
        {**ADDRESS, "line1": "7 Kettle Street", "is_default": "1"},
    )
    assert made.status_code == 303
    choose = assert_page(
        await browser.get("/account/subscriptions/new", params={"coffee": coffee["slug"]})
    )
    assert 'name="address_choice" value="saved:' in choose
    assert "7 Kettle Street" in choose
    started = await subscribe(browser, coffee, quantity="1", cadence="1-month")
    assert started.status_code == 303, started.text
    assert "/pay/cs_" in started.headers["location"]
    [mine] = await listed(browser)
    detail = assert_page(await browser.get(f"/account/subscriptions/{mine['id']}"))
    assert "7 Kettle Street" in detail
    assert "Every month" in detail


async def test_bad_input_is_a_400_page_and_makes_nothing(
    browser: Browser, shop: Shop, coffee: dict[str, Any]
) -> None:
    await sign_in(browser, shop)
    zero = assert_page(await subscribe(browser, coffee, quantity="0", **ADDRESS), 400)
    assert "Choose 1 to 10 bags per delivery." in zero
    many = assert_page(await subscribe(browser, coffee, quantity="11", **ADDRESS), 400)
    assert "Choose 1 to 10 bags per delivery." in many
    yearly = assert_page(
        await subscribe(browser, coffee, cadence="1-year", address_choice="new", **ADDRESS), 400
    )
    assert "Choose how often we send it." in yearly
    no_street = assert_page(
        await subscribe(browser, coffee, address_choice="new", **{**ADDRESS, "line1": ""}), 400
    )
    assert "Address is needed." in no_street
    not_mine = assert_page(
        await subscribe(browser, coffee, address_choice=f"saved:{uuid.uuid4()}"), 400
    )
    assert "Choose one of your addresses." in not_mine
    unknown = await browser.post(
        "/account/subscriptions",
        {
            "coffee": "no-such-coffee-anywhere",
            "quantity": "1",
            "cadence": "2-week",
            "address_choice": "new",
            "_csrf_token": await form_token(browser),
        }
        | ADDRESS,
    )
    assert "We could not find that coffee" in assert_page(unknown, 404)
    # No form token (a cross-site post): refused before anything is read.
    forged = await browser.post(
        "/account/subscriptions",
        {"coffee": coffee["slug"], "quantity": "1", "cadence": "2-week", "address_choice": "new"}
        | ADDRESS,
    )
    assert "This form has expired" in assert_page(forged, 403)
    assert await listed(browser) == []
    assert 'data-testid="no-subscriptions"' in assert_page(
        await browser.get("/account/subscriptions")
    )


async def test_checkouts_refusal_is_a_sentence_on_the_page(
    browser: Browser, shop: Shop, coffee: dict[str, Any]
) -> None:
    await sign_in(browser, shop)
    started = await subscribe(browser, coffee, address_choice="new", **ADDRESS)
    assert started.status_code == 303
    [mine] = await listed(browser)
    page = f"/account/subscriptions/{mine['id']}"
    # Never paid: checkout answers 409 subscription-not-active (problem+json).
    refused = assert_page(
        await browser.post(f"{page}/cancel", {"_csrf_token": await form_token(browser)}), 409
    )
    assert "has not started or has already ended: there is nothing to cancel." in refused
    assert "subscription-not-active" not in refused


async def test_the_chosen_variant_is_what_is_subscribed_and_a_bad_one_is_a_sentence(
    browser: Browser, shop: Shop
) -> None:
    coffee = shop.coffee_with_variants()
    slug, tag = coffee["slug"], coffee["tag"]
    espresso = coffee["variants"][f"{tag}-es-250"]
    await sign_in(browser, shop, name="Chien-Shiung Wu")
    product_page = assert_page(await browser.get(f"/coffee/{slug}?variant={tag}-es-250"))
    assert f'<input type="hidden" name="variant" value="{espresso["id"]}">' in product_page
    assert f"/account/subscriptions/new?coffee={slug}&amp;variant={tag}-es-250" in product_page
    chosen = assert_page(
        await browser.get(
            "/account/subscriptions/new", params={"coffee": slug, "variant": f"{tag}-es-250"}
        )
    )
    assert "Espresso / 250 g" in chosen
    assert "$16.50" in chosen
    assert f'name="variant" value="{espresso["id"]}"' in chosen
    unknown = await browser.get(
        "/account/subscriptions/new", params={"coffee": slug, "variant": "no-such-sku"}
    )
    assert_page(unknown, 404)

    bad = assert_page(
        await subscribe(browser, coffee, variant="not-a-uuid", address_choice="new", **ADDRESS),
        400,
    )
    assert "Choose one of this coffee&#39;s sizes and grinds." in bad
    # A variant checkout does not sell (here: of no product): its 409, as a sentence.
    refused = assert_page(
        await subscribe(
            browser, coffee, variant=str(uuid.uuid4()), address_choice="new", **ADDRESS
        ),
        409,
    )
    assert "that choice of this coffee is not sold now" in refused
    assert await listed(browser) == []

    started = await subscribe(
        browser, coffee, variant=espresso["id"], quantity="1", address_choice="new", **ADDRESS
    )
    assert started.status_code == 303, started.text
    [mine] = await listed(browser)
    detail = assert_page(await browser.get(f"/account/subscriptions/{mine['id']}"))
    assert 'data-testid="subscription-variant">Espresso / 250 g' in detail
    assert "1 \u00d7 $16.50" in detail
    listing = assert_page(await browser.get("/account/subscriptions"))
    assert "Espresso / 250 g" in listing


async def test_another_shopper_cannot_open_or_cancel_your_subscription(
    browser: Browser, other_browser: Browser, shop: Shop, coffee: dict[str, Any]
) -> None:
    await sign_in(browser, shop)
    started = await subscribe(browser, coffee, address_choice="new", **ADDRESS)
    assert started.status_code == 303
    [mine] = await listed(browser)
    page = f"/account/subscriptions/{mine['id']}"
    assert_page(await browser.get(page))
    await sign_in(other_browser, shop, name="Mallory")
    theirs = assert_page(await other_browser.get(page), 404)
    assert "We could not find that subscription" in theirs
    assert_page(await other_browser.get(f"{page}/status"), 404)
    token = await form_token(other_browser)
    assert_page(await other_browser.post(f"{page}/cancel", {"_csrf_token": token}), 404)
    assert await listed(other_browser) == []
    assert (await other_browser.get(f"/account/subscriptions/{uuid.uuid4()}")).status_code == 404


async def test_the_subscriber_changes_bags_cadence_and_address_from_the_page(
    browser: Browser, other_browser: Browser, shop: Shop, coffee: dict[str, Any]
) -> None:
    _, subscription_id = await active_subscription(browser, shop, coffee)
    page = f"/account/subscriptions/{subscription_id}"
    detail = assert_page(await browser.get(page))
    assert 'data-testid="plan-form"' in detail
    assert '<option value="2" selected>2</option>' in detail
    assert '<option value="2-week" selected>Every 2 weeks</option>' in detail
    assert 'data-testid="address-form"' in detail
    assert 'value="12 Roastery Lane"' in detail

    # Bad input: a page saying what to fix, nothing asked of checkout.
    zero = assert_page(
        await browser.form(page, f"{page}/plan", {"quantity": "0", "cadence": "1-month"}), 400
    )
    assert "Choose 1 to 10 bags per delivery." in zero
    yearly = assert_page(
        await browser.form(page, f"{page}/plan", {"quantity": "3", "cadence": "1-year"}), 400
    )
    assert "Choose how often we send it." in yearly
    no_street = assert_page(
        await browser.form(page, f"{page}/address", {**ADDRESS, "line1": ""}), 400
    )
    assert "Address is needed." in no_street
    # A country code that names no country: checkout's refusal, as a sentence by the field.
    nowhere = assert_page(
        await browser.form(page, f"{page}/address", {**ADDRESS, "country": "ZZ"}), 400
    )
    assert "not an ISO 3166-1 country code" in nowhere
    assert "Every 2 weeks" in assert_page(await browser.get(page))

    # Three bags every month: asked of Stripe; the page shows it once Stripe confirms.
    changed = await browser.form(page, f"{page}/plan", {"quantity": "3", "cadence": "1-month"})
    assert changed.status_code == 303, changed.text
    assert changed.headers["location"] == page
    assert "your delivery changes as soon as Stripe confirms" in assert_page(
        await browser.get(page)
    )

    async def followed() -> str | None:
        shown = assert_page(await browser.get(page))
        return shown if '<option value="1-month" selected>' in shown else None

    shown = await eventually(followed)
    assert '<option value="3" selected>3</option>' in shown
    assert "Every month" in shown
    total = coffee["price"] * 3
    assert f"${total // 100}.{total % 100:02d}" in shown

    moved = await browser.form(
        page, f"{page}/address", {**ADDRESS, "line1": "9 Kettle Street", "city": "Salem"}
    )
    assert moved.status_code == 303, moved.text
    after = assert_page(await browser.get(page))
    assert "Your next deliveries go to the new address." in after
    assert "9 Kettle Street" in after
    assert "Salem" in after

    # Another shopper: the subscription does not exist for them.
    await sign_in(other_browser, shop, name="Mallory")
    token = await form_token(other_browser)
    for action, data in (
        ("plan", {"quantity": "1", "cadence": "1-week"}),
        ("address", {**ADDRESS, "line1": "1 Evil Way"}),
    ):
        refused = assert_page(
            await other_browser.post(f"{page}/{action}", {**data, "_csrf_token": token}), 404
        )
        assert "We could not find that subscription" in refused
    mine = assert_page(await browser.get(page))
    assert "9 Kettle Street" in mine
    assert '<option value="3" selected>3</option>' in mine
