"""The storefront's own routes, in-process, over the real services of the test stack.

Each test is a person with a browser (a cookie jar, ``Accept: text/html``): what they see, what
the forms do, which cookies the services set reach them, and that errors are pages, never raw.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from storefront_testkit import DEMO_SLUGS, PASSWORD, Browser, Shop, csrf_of, wait_for

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def coffees(shop: Shop) -> list[dict]:
    return [shop.product(slug) for slug in DEMO_SLUGS]


def assert_page(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text
    assert '"type":' not in response.text, "a problem body leaked into the page"
    return response.text


# --- browsing -------------------------------------------------------------------------------


async def test_home_features_coffee_and_categories(browser: Browser, coffees: list[dict]) -> None:
    page = assert_page(await browser.get("/"))
    assert "Fresh from the roaster" in page
    assert any(f'href="/coffee/{c["slug"]}"' in page for c in coffees)
    assert 'href="/shop?category=single-origin"' in page
    # The developer links the gateway's own tests rely on.
    for service in ("identity", "catalog", "cart", "checkout", "orders", "notifier"):
        assert f'href="/api/docs/{service}"' in page


async def test_shop_lists_filters_sorts_and_paginates(
    browser: Browser, coffees: list[dict]
) -> None:
    page = assert_page(
        await browser.get("/shop", params={"category": "single-origin", "sort": "price"})
    )
    prices = [
        int(p.replace(",", "").replace(".", ""))
        for p in re.findall(r'class="price">\$([\d,.]+)<', page)
    ]
    assert prices
    assert prices == sorted(prices)
    assert 'aria-current="true">Single Origin<' in page
    desc = assert_page(await browser.get("/shop", params={"sort": "price_desc"}))
    desc_prices = [
        int(p.replace(",", "").replace(".", ""))
        for p in re.findall(r'class="price">\$([\d,.]+)<', desc)
    ]
    assert desc_prices == sorted(desc_prices, reverse=True)
    assert_page(await browser.get("/shop", params={"page": 999}))  # past the end: an empty page
    assert (await browser.get("/shop", params={"sort": "cheapest"})).status_code == 400
    assert (await browser.get("/shop", params={"page": 0})).status_code == 400


async def test_product_page_shows_price_availability_and_add_form(
    browser: Browser, shop: Shop, coffees: list[dict]
) -> None:
    coffee = coffees[0]
    page = assert_page(await browser.get(f"/coffee/{coffee['slug']}"))
    assert coffee["name"] in page
    assert f"${coffee['price'] // 100}.{coffee['price'] % 100:02d}" in page
    assert "In stock" in page
    assert 'data-testid="add-to-cart"' in page
    assert re.search(r'<img class="gallery__main" src="/media/', page)
    shop.set_stock(coffee["id"], 3)
    low = assert_page(await browser.get(f"/coffee/{coffee['slug']}"))
    assert "Only a few left" in low
    shop.set_stock(coffee["id"], 0)
    gone = assert_page(await browser.get(f"/coffee/{coffee['slug']}"))
    assert "Sold out" in gone
    assert 'data-testid="add-to-cart"' not in gone
    shop.set_stock(coffee["id"], 500)


async def test_unknown_product_and_page_are_friendly_404s(browser: Browser) -> None:
    page = assert_page(await browser.get("/coffee/no-such-coffee-anywhere"), 404)
    assert "We could not find that coffee" in page
    # A slug that would reshape the catalog URL (a query, a NUL, a path) is just not found.
    for odd in ("/coffee/search%3Fq%3Dx", "/coffee/%00", "/coffee/%23x", "/coffee/a%20b"):
        page = assert_page(await browser.get(odd), 404)
        assert "We could not find that coffee" in page
    page = assert_page(await browser.get("/no/such/page"), 404)
    assert "We could not find that page" in page
    # Anything that is not a browser still gets RFC 9457.
    raw = await browser.get("/no/such/page", headers={"Accept": "application/json"})
    assert raw.status_code == 404
    assert raw.headers["content-type"].startswith("application/problem+json")


async def test_search_finds_by_word_and_says_when_nothing_matches(
    browser: Browser, coffees: list[dict]
) -> None:
    page = assert_page(await browser.get("/search", params={"q": "Yirgacheffe"}))
    assert 'href="/coffee/ethiopia-yirgacheffe"' in page
    nothing = assert_page(await browser.get("/search", params={"q": "zzqxnotacoffee"}))
    assert "No coffee matches" in nothing
    assert_page(await browser.get("/search"))
    assert (await browser.get("/search", params={"q": "x" * 201})).status_code == 400


# --- the cart -------------------------------------------------------------------------------


async def test_adding_to_the_cart_relays_the_cart_cookie(
    browser: Browser, coffees: list[dict]
) -> None:
    coffee = coffees[1]
    added = await browser.form(
        f"/coffee/{coffee['slug']}",
        "/cart/items",
        {"product_id": coffee["id"], "quantity": "2", "name": coffee["name"]},
    )
    assert added.status_code == 303
    assert added.headers["location"] == "/cart"
    assert browser.cookies.get("ember_cart"), "cart's guest cookie reached the browser"
    cart = assert_page(await browser.get("/cart"))
    assert coffee["name"] in cart
    assert cart.count('data-testid="cart-line"') == 1
    count = assert_page(await browser.get("/cart/count"))
    assert 'data-count="2"' in count
    assert "load delay" not in count
    # Settling after a payment: while items show, the badge asks again, fewer times each time.
    settling = assert_page(await browser.get("/cart/count", params={"settle": 3}))
    assert 'hx-get="/cart/count?settle=2"' in settling
    assert 'hx-trigger="load delay:1s, cart-changed from:body"' in settling
    last = assert_page(await browser.get("/cart/count", params={"settle": 1}))
    assert 'hx-get="/cart/count"' in last
    assert "load delay" not in last
    assert (await browser.get("/cart/count", params={"settle": 11})).status_code == 400


async def test_one_shoppers_cart_never_reaches_another(
    browser: Browser, other_browser: Browser, coffees: list[dict]
) -> None:
    """The storefront calls cart with one pooled client for everyone: it must keep no cookie."""
    await browser.form(
        f"/coffee/{coffees[0]['slug']}", "/cart/items", {"product_id": coffees[0]["id"]}
    )
    assert 'data-testid="cart-line"' in assert_page(await browser.get("/cart"))
    theirs = assert_page(await other_browser.get("/cart"))
    assert 'data-testid="cart-empty"' in theirs
    assert not other_browser.cookies.get("ember_cart")


async def test_htmx_quantity_change_and_remove_answer_the_cart_fragment(
    browser: Browser, coffees: list[dict]
) -> None:
    coffee = coffees[1]
    await browser.form(f"/coffee/{coffee['slug']}", "/cart/items", {"product_id": coffee["id"]})
    page = await browser.get("/cart")
    token = csrf_of(page.text)
    htmx = {"HX-Request": "true", "x-form-csrf": token}
    changed = await browser.post(f"/cart/items/{coffee['id']}", {"quantity": "4"}, headers=htmx)
    body = assert_page(changed)
    assert changed.headers["HX-Trigger"] == "cart-changed"
    assert "<html" not in body, "a fragment, not a page"
    assert re.search(r'<option value="4" selected>4</option>', body)
    too_many = await browser.post(f"/cart/items/{coffee['id']}", {"quantity": "60"}, headers=htmx)
    assert "at most" in assert_page(too_many)
    removed = await browser.post(f"/cart/items/{coffee['id']}/remove", {}, headers=htmx)
    assert 'data-testid="cart-empty"' in assert_page(removed)


async def test_cart_flags_price_changes_sold_out_and_archived_lines(
    browser: Browser, shop: Shop, coffees: list[dict]
) -> None:
    kenya, brazil = coffees[2], coffees[3]
    for coffee in (kenya, brazil):
        await browser.form(f"/coffee/{coffee['slug']}", "/cart/items", {"product_id": coffee["id"]})
    shop.update(kenya["id"], price=kenya["price"] + 150)
    shop.archive(brazil["id"])
    try:
        page = assert_page(await browser.get("/cart"))
        new_price = kenya["price"] + 150
        assert f"${new_price // 100}.{new_price % 100:02d} each" in page
        was = kenya["price"]
        assert f"Price changed: was ${was // 100}.{was % 100:02d}" in page
        assert 'data-testid="cart-price-notice"' in page
        # Shown once: the cart now remembers today's price.
        assert 'data-testid="price-changed"' not in assert_page(await browser.get("/cart"))
        assert "No longer sold" in page
        assert 'data-testid="cart-problems"' in page
        assert 'data-testid="checkout-link"' not in page, "checkout waits for the cart to be fixed"
    finally:
        shop.product(brazil["slug"])
        shop.product(kenya["slug"])


async def test_adding_more_than_is_in_stock_is_refused_kindly(
    browser: Browser, shop: Shop, coffees: list[dict]
) -> None:
    coffee = coffees[0]
    shop.set_stock(coffee["id"], 2)
    try:
        page = await browser.get(f"/coffee/{coffee['slug']}")
        answer = await browser.post(
            "/cart/items",
            {"product_id": coffee["id"], "quantity": "5", "name": coffee["name"]},
            headers={"HX-Request": "true", "x-form-csrf": csrf_of(page.text)},
        )
        text = assert_page(answer)
        assert 'data-testid="add-error"' in text
        assert "only 2" in text
    finally:
        shop.set_stock(coffee["id"], 500)


# --- CSRF -----------------------------------------------------------------------------------


async def test_a_cross_site_form_post_is_refused(browser: Browser, coffees: list[dict]) -> None:
    await browser.get("/")  # the browser has its form-token cookie
    coffee = coffees[0]
    forged = await browser.post("/cart/items", {"product_id": coffee["id"], "quantity": "1"})
    assert "This form has expired" in assert_page(forged, 403)
    wrong = await browser.post(
        "/cart/items", {"product_id": coffee["id"], "_csrf_token": "0" * 128}
    )
    assert wrong.status_code == 403
    assert not browser.cookies.get("ember_cart"), "nothing was added"
    api = await browser.post("/signout", headers={"Accept": "application/json"})
    assert api.status_code == 403
    assert api.headers["content-type"].startswith("application/problem+json")


async def test_a_token_from_another_browser_does_not_work(
    browser: Browser, other_browser: Browser, coffees: list[dict]
) -> None:
    theirs = csrf_of((await other_browser.get("/signin")).text)
    await browser.get("/signin")
    forged = await browser.post(
        "/signin", {"email": "a@b.co", "password": "x", "_csrf_token": theirs}
    )
    assert forged.status_code == 403


async def test_a_planted_form_token_pair_posted_from_another_site_is_refused(
    browser: Browser, other_browser: Browser, coffees: list[dict]
) -> None:
    """Mallory's own valid pair (her form-token cookie and its token), planted in the shopper's
    browser (a sibling subdomain can set cookies) and posted by her page: the browser names the
    page's site, and the shop refuses a change from any site but its own."""
    coffee = coffees[0]
    token = csrf_of((await other_browser.get(f"/coffee/{coffee['slug']}")).text)
    await browser.get("/")
    browser.cookies.delete("ember_form_csrf")
    browser.cookies.set("ember_form_csrf", other_browser.cookies["ember_form_csrf"])
    form = {"product_id": coffee["id"], "quantity": "1", "_csrf_token": token}
    for headers in (
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://mallory.shop.example", "Sec-Fetch-Site": "same-site"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        forged = await browser.post("/cart/items", form, headers=headers)
        assert forged.status_code == 403, (headers, forged.status_code)
    assert not browser.cookies.get("ember_cart"), "nothing was added"


# --- checkout -------------------------------------------------------------------------------


async def _cart_with(browser: Browser, coffee: dict, quantity: int = 1) -> None:
    added = await browser.form(
        f"/coffee/{coffee['slug']}",
        "/cart/items",
        {"product_id": coffee["id"], "quantity": str(quantity)},
    )
    assert added.status_code == 303


ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Roastery Lane",
    "city": "Portland",
    "state": "OR",
    "postal_code": "97201",
    "country": "US",
}


async def test_checkout_shows_the_repriced_total_and_sends_the_shopper_to_pay(
    browser: Browser, coffees: list[dict], shop: Shop
) -> None:
    coffee = coffees[0]
    await _cart_with(browser, coffee, 2)
    page = assert_page(await browser.get("/checkout"))
    subtotal = coffee["price"] * 2
    total = subtotal + (0 if subtotal >= 5000 else 600)
    shown = re.findall(r'class="line__name">([^<]*)</span><div class="line__meta">([^<]*)', page)
    assert f'name="expected_total" value="{total}"' in page, shown
    assert f"Pay ${total // 100}.{total % 100:02d}" in page
    answer = await browser.post(
        "/checkout",
        {
            **ADDRESS,
            "email": "buyer@example.com",
            "expected_total": str(total),
            "_csrf_token": csrf_of(page),
        },
    )
    assert answer.status_code == 303, answer.text[:400]
    # Off to the payment provider's page (here the Stripe stand-in's).
    assert re.match(r"^https?://[^/]+/pay/cs_test_\w+$", answer.headers["location"])


async def test_checkout_says_tax_is_added_at_payment_only_when_tax_is_on(
    browser: Browser, coffees: list[dict], shop: Shop
) -> None:
    await _cart_with(browser, coffees[0])
    off = assert_page(await browser.get("/checkout"))
    assert 'data-testid="total"' in off
    assert 'data-testid="tax-note"' not in off
    assert "Total before tax" not in off
    with shop.stack.configured("checkout", CHECKOUT_TAX="true"):
        on = assert_page(await browser.get("/checkout"))
    assert 'data-testid="tax-note"' in on
    assert "Tax due where it ships is added at payment" in on
    assert "Total before tax" in on
    # The figures are the same: the tax is known only once Stripe has the address.
    assert re.findall(r'name="expected_total" value="(\d+)"', on) == re.findall(
        r'name="expected_total" value="(\d+)"', off
    )


async def test_checkout_says_what_is_missing(browser: Browser, coffees: list[dict]) -> None:
    await _cart_with(browser, coffees[0])
    page = (await browser.get("/checkout")).text
    answer = await browser.post(
        "/checkout",
        {"email": "not-an-email", "name": "", "country": "US", "_csrf_token": csrf_of(page)},
    )
    text = assert_page(answer, 400)
    assert "Give the email address your receipt should go to." in text
    assert "Full name is needed." in text
    assert "Address is needed." in text


async def test_checkout_shows_a_price_change_before_taking_money(
    browser: Browser, coffees: list[dict], shop: Shop
) -> None:
    coffee = coffees[1]
    await _cart_with(browser, coffee)
    page = (await browser.get("/checkout")).text
    old_total = int(re.search(r'name="expected_total" value="(\d+)"', page).group(1))
    shop.update(coffee["id"], price=coffee["price"] + 200)
    try:
        answer = await browser.post(
            "/checkout",
            {
                **ADDRESS,
                "email": "buyer@example.com",
                "expected_total": str(old_total),
                "_csrf_token": csrf_of(page),
            },
        )
        text = assert_page(answer, 409)
        assert "Prices changed" in text
        new_total = int(re.search(r'name="expected_total" value="(\d+)"', text).group(1))
        assert new_total == old_total + 200
    finally:
        shop.product(coffee["slug"])


async def test_checkout_names_the_lines_that_ran_out(
    browser: Browser, coffees: list[dict], shop: Shop
) -> None:
    coffee = coffees[2]
    await _cart_with(browser, coffee, 3)
    page = (await browser.get("/checkout")).text
    shop.set_stock(coffee["id"], 1)
    try:
        answer = await browser.post(
            "/checkout", {**ADDRESS, "email": "buyer@example.com", "_csrf_token": csrf_of(page)}
        )
        text = assert_page(answer, 409)
        assert 'data-testid="unavailable-lines"' in text
        assert f"{coffee['name']}:" in text
        assert "only 1 left" in text
    finally:
        shop.set_stock(coffee["id"], 500)


async def test_an_empty_cart_cannot_check_out(browser: Browser) -> None:
    page = assert_page(await browser.get("/checkout"))
    assert "Your cart is empty" in page
    assert 'data-testid="pay"' not in page


# --- the order page -------------------------------------------------------------------------


async def test_order_page_confirms_only_what_orders_says_is_paid(
    browser: Browser, shop: Shop, coffees: list[dict]
) -> None:
    email = f"guest-{uuid.uuid4().hex[:8]}@example.com"
    order_id, session_id = shop.buy(coffees[0]["id"], email=email)
    shop.wait_paid(order_id)
    page = assert_page(await browser.get(f"/order/{order_id}", params={"session_id": session_id}))
    assert "your order is confirmed" in page
    assert email in page
    # Without the session id, and with no cookie or account tying it to them: not theirs.
    stranger = await browser.get(f"/order/{order_id}")
    assert "We could not find that order" in assert_page(stranger, 404)
    assert (await browser.get(f"/order/{uuid.uuid4()}")).status_code == 404
    assert (
        await browser.get(f"/order/{order_id}", params={"session_id": "cs_forged"})
    ).status_code == 404


async def test_the_emailed_link_shows_a_guest_their_paid_order_in_the_browser_they_bought_in(
    browser: Browser, other_browser: Browser, shop: Shop, coffees: list[dict]
) -> None:
    """The bare /order/{id} (no key in it): orders cannot tie it to the guest, checkout can (the
    cart cookie), and its "paid" is webhook-made too."""
    await _cart_with(browser, coffees[1])
    page = (await browser.get("/checkout")).text
    started = await browser.post(
        "/checkout",
        {**ADDRESS, "email": "emailed@example.com", "_csrf_token": csrf_of(page)},
    )
    async with httpx.AsyncClient(timeout=20) as stripe_page:
        paid = await stripe_page.post(
            started.headers["location"],
            data={"card_number": "4242424242424242", "cvc": "123", "email": "emailed@example.com"},
        )
    assert paid.status_code == 303
    order_id = re.search(r"/order/([0-9a-f-]{36})", paid.headers["location"]).group(1)
    shop.wait_paid(order_id)
    text = assert_page(await browser.get(f"/order/{order_id}"))
    assert 'data-state="paid"' in text
    assert "your order is confirmed" in text
    assert coffees[1]["name"] in text
    # Another browser with the same link sees nothing of it.
    assert (await other_browser.get(f"/order/{order_id}")).status_code == 404


async def test_the_mailed_link_opens_a_guests_order_in_any_browser(
    other_browser: Browser, shop: Shop, coffees: list[dict]
) -> None:
    """The confirmation mail's link carries a token of ours (orders keeps only its hash): it
    opens the order on a device that never saw the checkout, and the page keeps it to poll."""
    email = f"mailed-{uuid.uuid4().hex[:8]}@example.com"
    order_id, _ = shop.buy(coffees[2]["id"], email=email)
    shop.wait_paid(order_id)
    token = shop.stack.mailed_token(email, f"/order/{order_id}")
    page = assert_page(await other_browser.get(f"/order/{order_id}", params={"token": token}))
    assert "your order is confirmed" in page
    assert email in page
    fragment = assert_page(
        await other_browser.get(f"/order/{order_id}/status", params={"token": token, "n": 1})
    )
    assert "your order is confirmed" in fragment
    forged = await other_browser.get(f"/order/{order_id}", params={"token": "A" * 43})
    assert forged.status_code == 404


async def test_a_declined_payment_is_shown_and_never_becomes_paid(
    browser: Browser, shop: Shop, coffees: list[dict]
) -> None:
    email = f"declined-{uuid.uuid4().hex[:8]}@example.com"
    order_id, session_id = shop.buy(coffees[3]["id"], email=email, card="4000000000000002")
    page = assert_page(await browser.get(f"/order/{order_id}", params={"session_id": session_id}))
    # Back from the pay page with the session id: still only "confirming", never "paid".
    assert 'data-state="confirming"' in page or 'data-state="failed"' in page
    assert "your order is confirmed" not in page
    fragment = assert_page(
        await browser.get(f"/order/{order_id}/status", params={"session_id": session_id, "n": 1}),
    )
    assert "your order is confirmed" not in fragment
    order = shop.admin_order(order_id)
    assert order is None or order["status"] != "paid"


async def test_the_status_fragment_keeps_polling_until_paid_then_stops(
    browser: Browser, shop: Shop, coffees: list[dict]
) -> None:
    order_id = str(uuid.uuid4())
    missing = assert_page(await browser.get(f"/order/{order_id}/status", params={"n": 1}))
    assert 'hx-trigger="every 2s"' in missing
    gave_up = assert_page(await browser.get(f"/order/{order_id}/status", params={"n": 500}))
    assert "hx-trigger" not in gave_up
    assert "taking longer than usual" in gave_up
    email = f"poll-{uuid.uuid4().hex[:8]}@example.com"
    paid_id, session_id = shop.buy(coffees[1]["id"], email=email)
    shop.wait_paid(paid_id)
    done = await browser.get(f"/order/{paid_id}/status", params={"session_id": session_id, "n": 2})
    body = assert_page(done)
    assert 'hx-trigger="every' not in body  # the order stops polling
    assert done.headers.get("HX-Trigger") == "cart-changed"
    # ...and the header's cart badge is swapped for one that settles on the emptied cart.
    assert 'id="cart-count"' in body
    assert 'hx-swap-oob="true"' in body
    assert 'hx-get="/cart/count?settle=8"' in body
    page = assert_page(await browser.get(f"/order/{paid_id}", params={"session_id": session_id}))
    assert 'hx-swap-oob="true"' not in page


# --- accounts -------------------------------------------------------------------------------


async def test_sign_up_link_sign_out_and_sign_in_relay_identitys_cookies(
    browser: Browser, shop: Shop
) -> None:
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    page = (await browser.get("/register")).text
    made = await browser.post(
        "/register",
        {
            "name": "Mary Somerville",
            "email": email,
            "password": PASSWORD,
            "next": "/account",
            "_csrf_token": csrf_of(page),
        },
    )
    sent = assert_page(made)
    assert "Check your email" in sent
    assert email in sent
    assert not browser.cookies.get("ember_access")  # nothing exists until the link is opened
    signin = (await browser.get("/signin")).text
    early = await browser.post(
        "/signin", {"email": email, "password": PASSWORD, "_csrf_token": csrf_of(signin)}
    )
    assert "Open the link we emailed you first" in assert_page(early, 401)

    # The same page for an address that already has an account.
    known = shop.register()
    again = await browser.post(
        "/register",
        {"email": known["email"], "password": PASSWORD, "_csrf_token": csrf_of(page)},
    )
    assert "Check your email" in assert_page(again)

    token = shop.stack.mailed_token(email, "/verify-email")
    landing = assert_page(await browser.get("/verify-email", params={"token": token}))
    assert 'data-testid="verify-submit"' in landing
    assert not browser.cookies.get("ember_access")  # opening the page does not spend the link
    opened = await browser.post("/verify-email", {"token": token, "_csrf_token": csrf_of(landing)})
    assert opened.status_code == 303
    assert opened.headers["location"] == "/account"
    for cookie in ("ember_access", "ember_session", "ember_csrf"):
        assert browser.cookies.get(cookie), cookie
    account = assert_page(await browser.get("/account"))
    assert "Hello, Mary Somerville" in account
    spent = await browser.post("/verify-email", {"token": token, "_csrf_token": csrf_of(landing)})
    assert "expired or was used already" in assert_page(spent, 400)
    out = await browser.post("/signout", {"_csrf_token": csrf_of(account)})
    assert out.status_code == 303
    assert not browser.cookies.get("ember_access")
    assert (await browser.get("/account")).status_code == 303
    signin = (await browser.get("/signin")).text
    wrong = await browser.post(
        "/signin", {"email": email, "password": "not-the-password", "_csrf_token": csrf_of(signin)}
    )
    assert "do not match an account" in assert_page(wrong, 401)
    right = await browser.post(
        "/signin",
        {"email": email, "password": PASSWORD, "next": "/account", "_csrf_token": csrf_of(signin)},
    )
    assert right.status_code == 303
    assert right.headers["location"] == "/account"
    assert "Hello, Mary Somerville" in assert_page(await browser.get("/account"))


async def test_an_expired_access_token_is_renewed_from_the_session_cookie(
    browser: Browser, shop: Shop
) -> None:
    person = shop.register(name="Emmy Noether")
    signin = (await browser.get("/signin")).text
    await browser.post(
        "/signin", {"email": person["email"], "password": PASSWORD, "_csrf_token": csrf_of(signin)}
    )
    old = browser.cookies.get("ember_access")
    assert old
    browser.cookies.delete("ember_access")  # what the browser does when it expires
    page = assert_page(await browser.get("/account"))
    assert "Hello, Emmy Noether" in page
    assert browser.cookies.get("ember_access"), "the renewed token reached the browser"


async def test_signing_in_again_ends_the_browsers_previous_session(
    browser: Browser, shop: Shop
) -> None:
    first, second = shop.register(name="Lise Meitner"), shop.register(name="Otto Hahn")
    signed = await browser.form(
        "/signin", "/signin", {"email": first["email"], "password": PASSWORD}
    )
    assert signed.status_code == 303
    old = browser.cookies.get("ember_session")
    assert old
    # A signed-in browser is sent on from /signin; a second tab's form still posts.
    again = await browser.form(
        "/account", "/signin", {"email": second["email"], "password": PASSWORD}
    )
    assert again.status_code == 303
    assert browser.cookies.get("ember_session") not in (None, old)
    # Whoever kept a copy of the old cookie can no longer renew the first person's access.
    async with httpx.AsyncClient(base_url=shop.stack.url, timeout=20) as stale:
        stale.cookies.set("ember_session", old)
        refreshed = await stale.post("/api/auth/refresh", json={})
    assert refreshed.status_code == 401, refreshed.text


async def test_a_form_route_refuses_a_large_body_before_reading_it(browser: Browser) -> None:
    token = csrf_of((await browser.get("/signin")).text)
    big = await browser.post(
        "/signin", {"email": "a@b.co", "password": "x" * 300_000, "_csrf_token": token}
    )
    assert big.status_code == 413, big.status_code
    assert "Traceback" not in big.text


async def test_sign_in_never_redirects_off_site(browser: Browser, shop: Shop) -> None:
    person = shop.register()
    page = (await browser.get("/signin", params={"next": "//evil.example/steal"})).text
    assert 'value="//evil.example/steal"' not in page
    answer = await browser.post(
        "/signin",
        {
            "email": person["email"],
            "password": PASSWORD,
            "next": "https://evil.example/",
            "_csrf_token": csrf_of(page),
        },
    )
    assert answer.headers["location"] == "/account"


async def test_account_addresses_profile_and_password(browser: Browser, shop: Shop) -> None:
    person = shop.register(name="Lise Meitner")
    signin = (await browser.get("/signin")).text
    await browser.post(
        "/signin", {"email": person["email"], "password": PASSWORD, "_csrf_token": csrf_of(signin)}
    )
    made = await browser.form(
        "/account/addresses/new", "/account/addresses", {**ADDRESS, "is_default": "1"}
    )
    assert made.status_code == 303
    account = assert_page(await browser.get("/account"))
    assert "12 Roastery Lane" in account
    assert "Default" in account
    bad = await browser.form(
        "/account/addresses/new", "/account/addresses", {**ADDRESS, "postal_code": ""}
    )
    assert "Postcode / ZIP is needed." in assert_page(bad, 400)
    saved = await browser.form(
        "/account", "/account/profile", {"name": "Lise M.", "phone": "+1 503 555 0100"}
    )
    assert saved.status_code == 303
    assert "Hello, Lise M." in assert_page(await browser.get("/account"))
    wrong = await browser.form(
        "/account",
        "/account/password",
        {
            "current_password": "wrong-password-here",
            "new_password": "another-long-passphrase-7",
            "confirm_password": "another-long-passphrase-7",
        },
    )
    assert "current password is not right" in assert_page(wrong, 400)
    # The checkout offers the saved address to a signed-in shopper.
    coffee = shop.product(DEMO_SLUGS[0])
    await _cart_with(browser, coffee)
    checkout = assert_page(await browser.get("/checkout"))
    assert 'name="address_choice" value="saved:' in checkout
    assert "Signed in as" in checkout


async def test_forgot_password_answers_the_same_whoever_asks(browser: Browser, shop: Shop) -> None:
    person = shop.register()
    known = await browser.form("/forgot-password", "/forgot-password", {"email": person["email"]})
    unknown = await browser.form(
        "/forgot-password", "/forgot-password", {"email": "nobody-here@example.com"}
    )
    assert 'data-testid="forgot-sent"' in assert_page(known)
    assert 'data-testid="forgot-sent"' in assert_page(unknown)
    bad = await browser.form(
        "/reset-password?token=" + "x" * 32,
        "/reset-password",
        {"token": "x" * 32, "password": "a-new-long-password", "confirm": "a-new-long-password"},
    )
    assert "expired or was already used" in assert_page(bad, 400)


# --- staff ----------------------------------------------------------------------------------


async def test_admin_pages_are_for_staff_only(browser: Browser, shop: Shop) -> None:
    anonymous = await browser.get("/admin")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/signin")
    person = shop.register()
    signin = (await browser.get("/signin")).text
    await browser.post(
        "/signin", {"email": person["email"], "password": PASSWORD, "_csrf_token": csrf_of(signin)}
    )
    for path in ("/admin", "/admin/products", "/admin/orders", "/admin/inventory", "/admin/emails"):
        assert "Staff only" in assert_page(await browser.get(path), 403)


async def test_staff_see_which_orders_need_attention(
    browser: Browser, shop: Shop, coffees: list[dict]
) -> None:
    marker = uuid.uuid4().hex[:8]
    ordinary, _ = shop.buy(coffees[0]["id"], email=f"ok-{marker}@example.com")
    flagged = shop.pay_another_amount(
        coffees[0]["id"], email=f"odd-{marker}@example.com", charged=1
    )
    shop.wait_paid(ordinary)
    assert "Stripe charged 1 USD" in shop.wait_paid(flagged)["attention"]
    staff = shop.register_admin()
    signin = (await browser.get("/signin")).text
    await browser.post(
        "/signin", {"email": staff["email"], "password": PASSWORD, "_csrf_token": csrf_of(signin)}
    )

    listing = assert_page(await browser.get("/admin/orders", params={"q": marker}))
    row = (
        r'<tr data-testid="admin-order"><td><a class="mono" href="/admin/orders/([^"]+)">(.*?)</tr>'
    )
    rows = dict(re.findall(row, listing, re.S))
    assert set(rows) == {ordinary, flagged}
    assert 'data-testid="order-attention">Needs attention</span>' in rows[flagged]
    assert "Needs attention" not in rows[ordinary]
    assert "/admin/orders?q=" + marker + "&amp;attention=true" in listing

    only = assert_page(
        await browser.get("/admin/orders", params={"q": marker, "attention": "true"})
    )
    assert flagged in only
    assert ordinary not in only
    detail = assert_page(await browser.get(f"/admin/orders/{flagged}"))
    assert "Needs attention:</strong> Stripe charged 1 USD" in detail
    dashboard = assert_page(await browser.get("/admin"))
    assert re.search(r'data-testid="stat-attention">[1-9]', dashboard)


async def test_staff_manage_products_stock_orders_and_mail(
    browser: Browser, shop: Shop, coffees: list[dict]
) -> None:
    staff = shop.register_admin()
    signin = (await browser.get("/signin")).text
    await browser.post(
        "/signin", {"email": staff["email"], "password": PASSWORD, "_csrf_token": csrf_of(signin)}
    )
    assert "Dashboard" in assert_page(await browser.get("/admin"))
    listing = assert_page(await browser.get("/admin/products", params={"q": "Kenya"}))
    assert "Kenya Nyeri AA" in listing
    # Create a product, with a price typed as a person types it.
    name = f"Test Roast {uuid.uuid4().hex[:6]}"
    created = await browser.form(
        "/admin/products/new",
        "/admin/products",
        {
            "name": name,
            "price": "21.50",
            "on_hand": "12",
            "roast": "medium",
            "tasting_notes": "Fig, Cocoa",
            "active": "1",
            "currency": "USD",
        },
    )
    assert created.status_code == 303, created.text[:500]
    product_path = created.headers["location"]
    product_id = product_path.rsplit("/", 1)[-1]
    made = shop.admin_product(product_id)
    assert made["price"] == 2150
    assert made["stock"]["on_hand"] == 12
    assert made["tasting_notes"] == ["Fig", "Cocoa"]
    bad_price = await browser.form(product_path, product_path, {"name": name, "price": "21.505"})
    assert "Give a price like 18.50." in assert_page(bad_price, 400)
    # Stock, by htmx.
    inventory = (await browser.get("/admin/inventory", params={"q": name})).text
    row = await browser.post(
        f"/admin/inventory/{product_id}",
        {"on_hand": "40"},
        headers={"HX-Request": "true", "x-form-csrf": csrf_of(inventory)},
    )
    assert "Saved" in assert_page(row)
    assert shop.admin_product(product_id)["stock"]["on_hand"] == 40
    # Archive.
    archived = await browser.form(product_path, f"{product_path}/archive", {})
    assert archived.status_code == 303
    assert shop.admin_product(product_id)["archived_at"]
    # Ship a paid order.
    email = f"ship-{uuid.uuid4().hex[:8]}@example.com"
    order_id, _ = shop.buy(coffees[0]["id"], email=email)
    shop.wait_paid(order_id)
    orders = assert_page(await browser.get("/admin/orders", params={"q": email}))
    assert order_id[-8:].upper() in orders
    shipped = await browser.form(
        f"/admin/orders/{order_id}",
        f"/admin/orders/{order_id}/ship",
        {"carrier": "UPS", "tracking_number": "1Z999AA10123456784"},
    )
    assert shipped.status_code == 303
    assert shop.admin_order(order_id)["status"] == "shipped"
    assert "1Z999AA10123456784" in assert_page(await browser.get(f"/admin/orders/{order_id}"))
    bad = await browser.form(
        f"/admin/orders/{order_id}",
        f"/admin/orders/{order_id}/ship",
        {"carrier": "UPS", "tracking_number": "??"},
    )
    assert "tracking number" in assert_page(bad, 400)
    # The outbox.
    wait_for(lambda: shop.emails_to(email), timeout=40)
    emails = assert_page(await browser.get("/admin/emails", params={"to": email}))
    assert email in emails


async def test_staff_upload_a_product_image(browser: Browser, shop: Shop) -> None:
    from importlib import resources

    staff = shop.register_admin()
    signin = (await browser.get("/signin")).text
    await browser.post(
        "/signin", {"email": staff["email"], "password": PASSWORD, "_csrf_token": csrf_of(signin)}
    )
    product = shop.product("guatemala-antigua")
    page = (await browser.get(f"/admin/products/{product['id']}")).text
    before = len(shop.admin_product(product["id"])["images"])
    image = resources.files("catalog.demo").joinpath("images", "beans-medium.webp").read_bytes()
    uploaded = await browser.post(
        f"/admin/products/{product['id']}/images",
        data={"_csrf_token": csrf_of(page), "alt": "Beans, medium roast"},
        files={"file": ("beans.webp", image, "image/webp")},
    )
    assert uploaded.status_code == 303, uploaded.text[:500]
    images = shop.admin_product(product["id"])["images"]
    assert len(images) == before + 1
    assert any(i["alt"] == "Beans, medium roast" for i in images)
    not_an_image = await browser.post(
        f"/admin/products/{product['id']}/images",
        data={"_csrf_token": csrf_of(page)},
        files={"file": ("notes.txt", b"just some text", "text/plain")},
    )
    assert 'role="alert"' in assert_page(not_an_image, 400)


async def test_a_service_that_is_down_is_a_friendly_page_never_a_trace(
    browser: Browser, storefront: Any, coffees: list[dict]
) -> None:
    clients = storefront.state.api_clients
    real = clients._clients.get("catalog")
    clients._clients["catalog"] = httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=2)
    try:
        page = assert_page(await browser.get("/shop"), 503)
        assert "Part of the shop is taking a break" in page
        raw = await browser.get("/shop", headers={"Accept": "application/json"})
        assert raw.status_code == 503
        assert raw.headers["content-type"].startswith("application/problem+json")
        assert "127.0.0.1" not in raw.text
    finally:
        await clients._clients["catalog"].aclose()
        if real is not None:
            clients._clients["catalog"] = real
        else:
            clients._clients.pop("catalog")
    assert_page(await browser.get("/shop"))


async def test_an_unexpected_error_is_a_friendly_500_page(
    browser: Browser, storefront: Any
) -> None:
    class Broken:
        def client(self, service: str) -> Any:
            raise RuntimeError("boom: a bug, with a secret in its message")

    real = storefront.state.api_clients
    storefront.state.api_clients = Broken()
    try:
        response = await browser.get("/search", params={"q": "anything"})
        page = assert_page(response, 500)
        assert "Something went wrong on our side" in page
        assert "boom" not in page
    finally:
        storefront.state.api_clients = real


async def test_checkout_applies_a_discount_code_and_pays_the_discounted_total(
    browser: Browser, coffees: list[dict], shop: Shop
) -> None:
    code = f"SF{uuid.uuid4().hex[:8].upper()}"
    created = shop.http.post(
        "/api/checkout/admin/discount-codes/",
        json={"code": code, "amount_off": 500},
        headers=shop.admin,
    )
    assert created.status_code == 201, created.text
    coffee = coffees[0]
    await _cart_with(browser, coffee, 1)
    page = assert_page(await browser.get("/checkout"))
    assert 'data-testid="discount-code"' in page
    assert 'data-testid="shipping-options"' in page
    subtotal = coffee["price"]
    total = subtotal - 500 + (0 if subtotal - 500 >= 5000 else 600)

    wrong = await browser.post(
        "/checkout",
        {**ADDRESS, "discount_code": "NOPE-NOPE", "action": "apply", "_csrf_token": csrf_of(page)},
    )
    assert "There is no discount code" in assert_page(wrong, 422)

    applied = await browser.post(
        "/checkout",
        {**ADDRESS, "discount_code": code.lower(), "action": "apply", "_csrf_token": csrf_of(page)},
    )
    shown = assert_page(applied)
    assert f"Discount ({code})" in shown
    assert f'name="expected_total" value="{total}"' in shown
    assert f'name="discount_code" value="{code}"' in shown

    answer = await browser.post(
        "/checkout",
        {
            **ADDRESS,
            "email": "coder@example.com",
            "discount_code": code,
            "shipping_rate": "standard",
            "expected_total": str(total),
            "_csrf_token": csrf_of(shown),
        },
    )
    assert answer.status_code == 303, answer.text[:400]
    async with httpx.AsyncClient(timeout=20) as stripe_page:
        pay_page = await stripe_page.get(answer.headers["location"])
        assert f"${total // 100}.{total % 100:02d}" in pay_page.text
        assert "Discount" in pay_page.text
        paid = await stripe_page.post(
            answer.headers["location"],
            data={"card_number": "4242424242424242", "cvc": "123", "email": "coder@example.com"},
        )
    order_id = re.search(r"/order/([0-9a-f-]{36})", paid.headers["location"]).group(1)
    shop.wait_paid(order_id)
    order_page = assert_page(await browser.get(f"/order/{order_id}"))
    assert f"Discount ({code})" in order_page
    assert "\N{MINUS SIGN}$5.00" in order_page
    assert f"${total // 100}.{total % 100:02d}" in order_page
