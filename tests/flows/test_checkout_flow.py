"""Browse to buy, through Caddy, with the whole stack running: cart, checkout, the Stripe stand-in's
hosted page, its signed webhook, and the sale in catalog. Also what must not happen: a declined
card or an expired page keeps the stock, a webhook paid twice, a forged or replayed webhook, the
last unit sold twice, a changed price charged unseen.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx
import pytest
import stripe
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory
from ember_devkit.testing.waiting import eventually

pytestmark = pytest.mark.stack

T = TypeVar("T")
PROBLEM = "application/problem+json"
CARD_OK = "4242 4242 4242 4242"
CARD_DECLINED = "4000 0000 0000 0002"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 St James's Square",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
}


class Shop:
    """The shop as browsers and staff reach it: through Caddy only (the stand-in's page and test
    controls are on the stand-in's own address, as Stripe's page is on Stripe's)."""

    def __init__(self, stack: RunningStack, tokens: TokenFactory) -> None:
        self.stack = stack
        self.tokens = tokens
        self.staff = httpx.Client(base_url=stack.url, timeout=30)
        self.stripe = httpx.Client(base_url=stack.service_url("stripe-standin"), timeout=30)

    def close(self) -> None:
        self.staff.close()
        self.stripe.close()

    def admin(self) -> dict[str, str]:
        token, _ = self.tokens.admin()
        return {"Authorization": f"Bearer {token}"}

    def product(self, *, price: int, on_hand: int) -> tuple[str, str]:
        name = f"Flow Coffee {uuid.uuid4().hex[:8]}"
        response = self.staff.post(
            "/api/admin/products/",
            json={"name": name, "price": price, "on_hand": on_hand, "currency": "USD"},
            headers=self.admin(),
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"]), name

    def inventory(self, product_id: str, name: str) -> dict[str, Any]:
        response = self.staff.get("/api/admin/inventory/", params={"q": name}, headers=self.admin())
        assert response.status_code == 200, response.text
        rows = [row for row in response.json()["items"] if row["product_id"] == product_id]
        assert rows, response.text
        return dict(rows[0])

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.stack.url, timeout=30, follow_redirects=False)

    def pay(self, checkout_url: str, card: str) -> httpx.Response:
        """Submit the hosted page's card form, as the browser does."""
        page = self.stripe.get(checkout_url)
        assert page.status_code == 200, page.text[:300]
        assert "payment-form" in page.text
        return self.stripe.post(
            checkout_url,
            data={"card_number": card, "exp": "12 / 34", "cvc": "123", "name": "Ada Lovelace"},
        )

    def stripe_session_id(self, checkout_url: str) -> str:
        return checkout_url.rstrip("/").rsplit("/", 1)[-1]

    def status(self, browser: httpx.Client, order_id: str) -> dict[str, Any]:
        response = browser.get(f"/api/checkout/session/{order_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_status(self, browser: httpx.Client, order_id: str, wanted: str) -> dict[str, Any]:
        return eventually(
            lambda: (
                found if (found := self.status(browser, order_id))["status"] == wanted else None
            ),
            f"checkout {order_id} to be {wanted}",
        )


@pytest.fixture(scope="module")
def shop(stack: RunningStack, tokens: TokenFactory) -> Iterator[Shop]:
    shop = Shop(stack, tokens)
    yield shop
    shop.close()


def add_to_cart(browser: httpx.Client, product_id: str, quantity: int = 1) -> None:
    response = browser.post(
        "/api/cart/items", json={"product_id": product_id, "quantity": quantity}
    )
    assert response.status_code in (200, 201), response.text


def start_checkout(browser: httpx.Client, **body: Any) -> httpx.Response:
    return browser.post(
        "/api/checkout/session",
        json={"email": "flow@example.com", "shipping_address": ADDRESS, **body},
    )


def test_cart_to_paid_order_through_the_gateway(shop: Shop) -> None:
    product_id, name = shop.product(price=1900, on_hand=10)
    with shop.browser() as browser:
        add_to_cart(browser, product_id, 2)
        started = start_checkout(browser)
        assert started.status_code == 201, started.text
        body = started.json()
        order_id, checkout_url = body["order_id"], body["checkout_url"]
        assert body["total"] == 2 * 1900 + 600
        assert checkout_url.startswith(
            shop.stack.service_url("stripe-standin").replace("127.0.0.1", "localhost")
        ) or checkout_url.startswith(shop.stack.service_url("stripe-standin"))
        held = shop.inventory(product_id, name)
        assert (held["on_hand"], held["reserved"]) == (10, 2)

        paid = shop.pay(checkout_url, CARD_OK)

        assert paid.status_code == 303
        landing = paid.headers["location"]
        assert landing.startswith(f"{shop.stack.url}/order/{order_id}?session_id=cs_test_")
        shop.wait_status(browser, order_id, "paid")
        sold = eventually(
            lambda: row if (row := shop.inventory(product_id, name))["reserved"] == 0 else None,
            "the reservation to become a sale",
        )
        assert (sold["on_hand"], sold["available"]) == (8, 8)
        # The cart was emptied by the payment event.
        cart = eventually(
            lambda: c if not (c := browser.get("/api/cart").json()).get("lines") else None,
            "the cart to be emptied",
        )
        assert not cart.get("lines")


def test_declined_card_then_expiry_gives_the_stock_back(shop: Shop) -> None:
    product_id, name = shop.product(price=1500, on_hand=5)
    with shop.browser() as browser:
        add_to_cart(browser, product_id, 3)
        body = start_checkout(browser).json()
        order_id, checkout_url = body["order_id"], body["checkout_url"]

        declined = shop.pay(checkout_url, CARD_DECLINED)

        assert declined.status_code == 402
        assert "Your card was declined." in declined.text
        assert shop.status(browser, order_id)["status"] == "open"
        assert shop.inventory(product_id, name)["reserved"] == 3

        session_id = shop.stripe_session_id(checkout_url)
        assert shop.stripe.post(f"/_standin/sessions/{session_id}/expire").status_code == 201
        shop.wait_status(browser, order_id, "expired")
        back = eventually(
            lambda: row if (row := shop.inventory(product_id, name))["reserved"] == 0 else None,
            "the reservation to be released",
        )
        assert back["available"] == 5


def test_the_same_webhook_five_times_pays_once(shop: Shop) -> None:
    product_id, name = shop.product(price=1000, on_hand=5)
    with shop.browser() as browser:
        add_to_cart(browser, product_id)
        body = start_checkout(browser).json()
        order_id, checkout_url = body["order_id"], body["checkout_url"]
        session_id = shop.stripe_session_id(checkout_url)
        shop.stripe.post(f"/_standin/sessions/{session_id}/hold", json={"held": True})
        assert shop.pay(checkout_url, CARD_OK).status_code == 303
        events = shop.stripe.get(
            "/_standin/events",
            params={"session_id": session_id, "type": "checkout.session.completed"},
        )
        completed = events.json()["data"][0]

        delivered = shop.stripe.post(
            "/_standin/deliver", json={"event_ids": [completed["id"]], "times": 5}
        )

        answers = [json.loads(d["body"]) for d in delivered.json()["deliveries"]]
        assert [d["status_code"] for d in delivered.json()["deliveries"]] == [200] * 5
        assert [a["duplicate"] for a in answers] == [False, True, True, True, True]
        shop.wait_status(browser, order_id, "paid")
        sold = eventually(
            lambda: row if (row := shop.inventory(product_id, name))["reserved"] == 0 else None,
            "the sale",
        )
        assert sold["on_hand"] == 4  # sold once, not five times


def test_forged_and_replayed_webhooks_are_refused_at_the_gateway(shop: Shop) -> None:
    payload = json.dumps(
        {
            "id": "evt_forged",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_test_forged", "payment_status": "paid"}},
        }
    )
    secret = shop.stack.env["STRIPE_WEBHOOK_SECRET"]
    forged = stripe.WebhookSignature.generate_signature_header(payload, "whsec_not_the_secret")
    replayed = stripe.WebhookSignature.generate_signature_header(
        payload, secret, int(time.time()) - 3600
    )
    genuine_but_changed = stripe.WebhookSignature.generate_signature_header(payload, secret)
    for header, body in (
        (forged, payload),
        (replayed, payload),
        (genuine_but_changed, payload + " "),
        (None, payload),
    ):
        headers = {"Content-Type": "application/json"}
        if header:
            headers["Stripe-Signature"] = header
        response = shop.staff.post("/api/webhooks/stripe", content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
    # The genuine signature goes through (and, naming no session of ours, changes nothing).
    signed = stripe.WebhookSignature.generate_signature_header(payload, secret)
    ok = shop.staff.post(
        "/api/webhooks/stripe",
        content=payload,
        headers={"Content-Type": "application/json", "Stripe-Signature": signed},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["outcome"] == "ignored: not a session of ours"


def test_two_browsers_for_the_last_unit(shop: Shop) -> None:
    product_id, name = shop.product(price=2500, on_hand=1)
    first, second = shop.browser(), shop.browser()
    try:
        add_to_cart(first, product_id)
        add_to_cart(second, product_id)
        answers: list[httpx.Response] = []
        gate = threading.Barrier(2)

        def go(browser: httpx.Client) -> None:
            gate.wait()
            answers.append(start_checkout(browser))

        threads = [threading.Thread(target=go, args=(b,)) for b in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

        assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
        refusal = next(a for a in answers if a.status_code == 409)
        assert refusal.headers["content-type"].startswith(PROBLEM)
        problem = refusal.json()
        assert problem["type"].endswith("/lines-unavailable")
        assert problem["unavailable"][0]["product_id"] == product_id
        assert name in problem["detail"]
        row = shop.inventory(product_id, name)
        assert (row["on_hand"], row["reserved"]) == (1, 1)
    finally:
        first.close()
        second.close()


def test_a_changed_price_is_shown_before_paying_and_charged(shop: Shop) -> None:
    product_id, _ = shop.product(price=1200, on_hand=5)
    with shop.browser() as browser:
        add_to_cart(browser, product_id, 2)
        shown = browser.get("/api/checkout/quote").json()["total"]
        assert shown == 2400 + 600
        changed = shop.staff.patch(
            f"/api/admin/products/{product_id}", json={"price": 1400}, headers=shop.admin()
        )
        assert changed.status_code == 200, changed.text

        refused = start_checkout(browser, expected_total=shown)

        assert refused.status_code == 409
        assert refused.headers["content-type"].startswith(PROBLEM)
        problem = refused.json()
        assert problem["type"].endswith("/price-changed")
        assert problem["total"] == 2800 + 600
        assert problem["lines"][0]["unit_price"] == 1400

        accepted = start_checkout(browser, expected_total=problem["total"])
        assert accepted.status_code == 201, accepted.text
        page = shop.stripe.get(accepted.json()["checkout_url"])
        assert "$34.00" in page.text  # the hosted page charges the new total
        assert shop.pay(accepted.json()["checkout_url"], CARD_OK).status_code == 303
        paid = shop.wait_status(browser, accepted.json()["order_id"], "paid")
        assert paid["total"] == 3400
        assert paid["lines"][0]["unit_price"] == 1400


@pytest.mark.browser
def test_a_browser_pays_on_the_hosted_page(shop: Shop) -> None:
    """Chromium fills the stand-in's card form and follows the redirect back to the shop."""
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    chromium = Path("/usr/bin/chromium")
    assert chromium.exists(), "install Debian's chromium (apt-get install chromium)"
    product_id, name = shop.product(price=1600, on_hand=3)
    with shop.browser() as api:
        add_to_cart(api, product_id)
        body = start_checkout(api).json()
        order_id, checkout_url = body["order_id"], body["checkout_url"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(chromium), args=["--no-sandbox"]
            )
            try:
                page = browser.new_page()
                page.goto(checkout_url)
                assert page.inner_text("#total") == "$22.00"
                page.fill("#cardNumber", "4000 0000 0000 0002")
                page.click("#submit")
                assert "Your card was declined." in page.inner_text("#card-errors")
                page.fill("#cardNumber", CARD_OK)
                with page.expect_navigation(url=f"{shop.stack.url}/order/{order_id}?session_id=*"):
                    page.click("#submit")
            finally:
                browser.close()
        shop.wait_status(api, order_id, "paid")
        eventually(
            lambda: row if (row := shop.inventory(product_id, name))["on_hand"] == 2 else None,
            "the sale in catalog",
        )


def test_a_cross_site_page_cannot_change_or_wipe_a_guests_cart(shop: Shop) -> None:
    """What a page on another site can make a guest's browser send to the shop, with the guest's
    cart cookie: a form post (urlencoded, multipart or text/plain, the last carrying JSON) or a
    no-preflight fetch. Each is refused at the services behind Caddy and the cart keeps its
    line; the shop's own pages (same origin, JSON) go on working."""
    product_id, _ = shop.product(price=1200, on_hand=10)
    with shop.browser() as browser:
        add_to_cart(browser, product_id, 2)
        assert browser.cookies.get("ember_cart")
        as_json = json.dumps({"lines": [{"product_id": product_id, "quantity": 0}]})
        one_line = json.dumps({"product_id": product_id, "quantity": 5})
        cross_site = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
        forgeries: list[tuple[str, str, str | None, dict[str, str]]] = [
            ("DELETE", "/api/cart", None, cross_site),
            ("DELETE", f"/api/cart/items/{product_id}", None, cross_site),
            ("PATCH", "/api/cart", as_json, {**cross_site, "Content-Type": "text/plain"}),
            ("POST", "/api/cart/items", one_line, {**cross_site, "Content-Type": "text/plain"}),
            (
                "POST",
                "/api/cart/items",
                f"product_id={product_id}&quantity=5",
                {**cross_site, "Content-Type": "application/x-www-form-urlencoded"},
            ),
            # An older browser that marks nothing: the Origin alone gives it away.
            ("DELETE", "/api/cart", None, {"Origin": "https://evil.example"}),
            ("DELETE", "/api/cart", None, {"Sec-Fetch-Site": "cross-site"}),
        ]
        for method, path, body, headers in forgeries:
            response = browser.request(method, path, content=body, headers=headers)
            assert response.status_code == 403, (method, path, headers, response.text)
            assert response.headers["content-type"].startswith(PROBLEM)
            assert response.json()["type"].endswith("/cross-site")
        # And with no mark at all, JSON in a form's content type is still not taken as JSON.
        for content_type in (
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ):
            for method, path, body in (
                ("PATCH", "/api/cart", as_json),
                ("PATCH", f"/api/cart/items/{product_id}", json.dumps({"quantity": 0})),
                ("POST", "/api/cart/items", one_line),
            ):
                response = browser.request(
                    method, path, content=body, headers={"Content-Type": content_type}
                )
                assert response.status_code == 415, (method, path, content_type, response.text)
                assert response.json()["type"].endswith("/unsupported-media-type")
            checkout = browser.post(
                "/api/checkout/session",
                content=json.dumps({"email": "flow@example.com", "shipping_address": ADDRESS}),
                headers={"Content-Type": content_type},
            )
            assert checkout.status_code == 415, (content_type, checkout.text)
        cart = browser.get("/api/cart").json()
        assert [(line["product_id"], line["quantity"]) for line in cart["lines"]] == [
            (product_id, 2)
        ]
        # The shop's own page: same origin, JSON.
        own = browser.patch(
            f"/api/cart/items/{product_id}",
            json={"quantity": 3},
            headers={"Origin": shop.stack.url, "Sec-Fetch-Site": "same-origin"},
        )
        assert own.status_code == 200, own.text
        assert own.json()["lines"][0]["quantity"] == 3
