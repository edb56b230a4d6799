"""What the storefront's tests (and the browser tests) need from the running stack: products made
through catalog's admin API (with the demo catalog's words and pictures), accounts made through
identity, a purchase paid on the Stripe stand-in's page, and the Resend stand-in's inbox.

Everything goes over real HTTP: to the gateway (Caddy) for public routes, to a stand-in's own
address for its test controls. Nothing here reaches into a service's database.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import httpx
from ember_devkit.testing.apps import asgi_client
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory
from ember_devkit.testing.waiting import eventually
from litestar import Litestar

T = TypeVar("T")
CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
PASSWORD = "correct-horse-battery-staple-42"
HTML = {"Accept": "text/html,application/xhtml+xml"}

#: Demo products the tests sell, by slug (words and images from catalog's demo data).
DEMO_SLUGS = ("ethiopia-yirgacheffe", "colombia-huila", "kenya-nyeri-aa", "brazil-cerrado")


def wait_for(check: Callable[[], T | None], timeout: float = 30, every: float = 0.25) -> T:
    """``check()``'s first truthy answer, asked until ``timeout`` seconds have passed."""
    return eventually(check, "the condition", within=timeout, every=every)


def _demo() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        resources.files("catalog.demo").joinpath("catalog.json").read_text()
    )
    return data


def _demo_image(name: str) -> bytes:
    return resources.files("catalog.demo").joinpath("images", name).read_bytes()


@dataclass
class Shop:
    stack: RunningStack
    tokens: TokenFactory

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.stack.url, timeout=20, follow_redirects=False)
        self.admin_id = uuid.uuid4()

    @property
    def admin(self) -> dict[str, str]:
        """Staff's headers, signed afresh for each call: one token for the whole session expired
        after its 5 minutes when a loaded machine took longer over the browser tests (a CI run
        saw 401 token-expired from the admin API 36 minutes in)."""
        token = self.tokens.mint(self.admin_id, roles=("customer", "admin"), email="ops@ember.test")
        return self.tokens.bearer(token)

    def close(self) -> None:
        self.http.close()

    # --- catalog ----------------------------------------------------------------------------

    def category(self, slug: str) -> dict[str, Any]:
        listing = self.http.get("/api/admin/categories", headers=self.admin)
        assert listing.status_code == 200, listing.text
        demo = next(c for c in _demo()["categories"] if c["slug"] == slug)
        for category in listing.json()["items"]:
            if category["slug"] == slug:
                if category["name"] != demo["name"]:  # made by another suite under its own name
                    renamed = self.http.patch(
                        f"/api/admin/categories/{category['id']}",
                        json={"name": demo["name"]},
                        headers=self.admin,
                    )
                    assert renamed.status_code == 200, renamed.text
                    return dict(renamed.json())
                return dict(category)
        created = self.http.post(
            "/api/admin/categories",
            json={"name": demo["name"], "slug": slug, "description": demo["description"]},
            headers=self.admin,
        )
        if created.status_code == 409:  # made by a test running beside this one
            return self.category(slug)
        assert created.status_code == 201, created.text
        return dict(created.json())

    def product(self, slug: str, *, on_hand: int = 500) -> dict[str, Any]:
        """The demo product ``slug``, made (with its image) if the catalog lacks it, listed,
        at its demo price, with ``on_hand`` in stock."""
        demo = next(p for p in _demo()["products"] if p["slug"] == slug)
        found = self.find(slug, demo["name"])
        if found is not None:
            product_id = found["id"]
        else:
            category = self.category(demo["category"])
            body = {
                key: demo[key]
                for key in (
                    "name",
                    "price",
                    "origin",
                    "roast",
                    "process",
                    "tasting_notes",
                    "weight_grams",
                    "summary",
                    "description",
                )
                if key in demo
            }
            body |= {"slug": slug, "category_id": category["id"], "on_hand": on_hand}
            created = self.http.post("/api/admin/products", json=body, headers=self.admin)
            if created.status_code == 409:  # the slug is taken by a product of another name
                taken = self.find_by_slug(slug)
                assert taken is not None, created.text
                product_id = taken["id"]
                self.update(product_id, name=demo["name"], category_id=category["id"])
            else:
                assert created.status_code == 201, created.text
                product_id = created.json()["id"]
                self.add_image(product_id, _demo_image(f"{slug}.webp"), demo["name"])
        self.http.post(f"/api/admin/products/{product_id}/restore", headers=self.admin)
        self.update(product_id, price=demo["price"], active=True)
        self.set_stock(product_id, on_hand)
        product = self.admin_product(product_id)
        if not product.get("images"):  # another suite made it without the demo picture
            self.add_image(product_id, _demo_image(f"{slug}.webp"), demo["name"])
            product = self.admin_product(product_id)
        return product

    def find(self, slug: str, name: str) -> dict[str, Any] | None:
        """A product by slug, whatever its status (archived ones are not public)."""
        listing = self.http.get(
            "/api/admin/products",
            params={"q": name, "status": "all", "page_size": 100},
            headers=self.admin,
        )
        assert listing.status_code == 200, listing.text
        return next((p for p in listing.json()["items"] if p["slug"] == slug), None)

    def find_by_slug(self, slug: str) -> dict[str, Any] | None:
        """A product by slug, looking through every page of the staff listing."""
        page = 1
        while True:
            listing = self.http.get(
                "/api/admin/products",
                params={"status": "all", "page_size": 100, "page": page},
                headers=self.admin,
            )
            assert listing.status_code == 200, listing.text
            items = listing.json()["items"]
            found = next((p for p in items if p["slug"] == slug), None)
            if found is not None or len(items) < 100:
                return found
            page += 1

    def add_image(self, product_id: str, data: bytes, alt: str) -> None:
        uploaded = self.http.post(
            "/api/admin/upload-image",
            files={"file": ("image.webp", data, "image/webp")},
            headers=self.admin,
        )
        assert uploaded.status_code == 201, uploaded.text
        attached = self.http.post(
            f"/api/admin/products/{product_id}/images",
            json={"url": uploaded.json()["url"], "key": uploaded.json()["key"], "alt": alt},
            headers=self.admin,
        )
        assert attached.status_code == 201, attached.text

    def coffee_with_variants(self, *, espresso_kilo: int = 0) -> dict[str, Any]:
        """A new coffee sold by grind and size (whole bean 250 g is its default variant, a few
        whole-bean kilos left); the kilo of espresso grind has ``espresso_kilo`` on hand."""
        name = f"Picker Coffee {uuid.uuid4().hex[:8]}"
        made = self.http.post(
            "/api/admin/products",
            json={"name": name, "price": 1600, "on_hand": 40, "roast": "medium"},
            headers=self.admin,
        )
        assert made.status_code == 201, made.text
        product = dict(made.json())
        tag = product["slug"]
        combos = [
            ("wb-250", ["Whole bean", "250 g"], 1600, None, 250),
            ("es-250", ["Espresso", "250 g"], 1650, 30, 250),
            ("wb-1kg", ["Whole bean", "1 kg"], 5400, 3, 1000),
            ("es-1kg", ["Espresso", "1 kg"], 5600, espresso_kilo, 1000),
        ]
        variants = [
            {
                "sku": f"{tag}-{code}",
                "price": price,
                "option_values": values,
                "weight_grams": grams,
                **({"on_hand": on_hand} if on_hand is not None else {"id": product["id"]}),
            }
            for code, values, price, on_hand, grams in combos
        ]
        response = self.http.put(
            f"/api/admin/products/{product['id']}/variants",
            json={
                "options": [
                    {"name": "Grind", "values": ["Whole bean", "Espresso"]},
                    {"name": "Size", "values": ["250 g", "1 kg"]},
                ],
                "variants": variants,
            },
            headers=self.admin,
        )
        assert response.status_code == 200, response.text
        by_sku = {v["sku"]: v for v in response.json()["variants"]}
        return {**product, "variants": by_sku, "tag": tag}

    def admin_product(self, product_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/admin/products/{product_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def update(self, product_id: str, **changes: Any) -> None:
        response = self.http.patch(
            f"/api/admin/products/{product_id}", json=changes, headers=self.admin
        )
        assert response.status_code == 200, response.text

    def set_stock(self, product_id: str, on_hand: int) -> None:
        response = self.http.put(
            f"/api/admin/inventory/{product_id}", json={"on_hand": on_hand}, headers=self.admin
        )
        assert response.status_code == 200, response.text

    def archive(self, product_id: str) -> None:
        response = self.http.post(f"/api/admin/products/{product_id}/archive", headers=self.admin)
        assert response.status_code == 200, response.text

    # --- people -----------------------------------------------------------------------------

    def register(self, email: str | None = None, name: str = "Ada Lovelace") -> dict[str, Any]:
        email = email or f"shopper-{uuid.uuid4().hex[:10]}@example.com"
        asked = self.http.post(
            "/api/auth/register", json={"email": email, "password": PASSWORD, "name": name}
        )
        assert asked.status_code == 202, asked.text
        response = self.http.post(
            "/api/auth/verify-email",
            json={"token": self.stack.mailed_token(email, "/verify-email")},
        )
        assert response.status_code == 201, response.text
        self.http.cookies.clear()
        return {"email": email, "password": PASSWORD, "id": response.json()["user"]["id"]}

    def register_admin(self) -> dict[str, Any]:
        person = self.register(name="Grace Hopper")
        response = self.http.put(
            f"/api/admin/users/{person['id']}/role", json={"role": "admin"}, headers=self.admin
        )
        assert response.status_code == 200, response.text
        return person

    # --- buying over HTTP (no browser) --------------------------------------------------------

    def buy(
        self, product_id: str, *, email: str, quantity: int = 1, card: str = CARD_OK
    ) -> tuple[str, str]:
        """A guest buys ``product_id`` and pays with ``card``: (order id, Stripe session id)."""
        with httpx.Client(base_url=self.stack.url, timeout=20) as guest:
            added = guest.post(
                "/api/cart/items", json={"product_id": product_id, "quantity": quantity}
            )
            assert added.status_code == 201, added.text
            started = guest.post(
                "/api/checkout/session",
                json={
                    "email": email,
                    "shipping_address": {
                        "name": "Ada Lovelace",
                        "line1": "12 Roastery Lane",
                        "city": "Portland",
                        "postal_code": "97201",
                        "country": "US",
                    },
                },
            )
            assert started.status_code == 201, started.text
            order_id = started.json()["order_id"]
            url = started.json()["checkout_url"]
        session_id = url.rsplit("/", 1)[-1]
        paid = httpx.post(
            url,
            data={"card_number": card, "exp": "12 / 34", "cvc": "123", "email": email},
            timeout=20,
        )
        assert paid.status_code in (303, 402), paid.text
        return order_id, session_id

    def pay_another_amount(self, product_id: str, *, email: str, charged: int) -> str:
        """A guest starts a checkout and Stripe (the stand-in, by its test controls) reports it
        paid with ``charged`` minor units instead: checkout flags it. Returns the order id."""
        with httpx.Client(base_url=self.stack.url, timeout=20) as guest:
            added = guest.post("/api/cart/items", json={"product_id": product_id, "quantity": 1})
            assert added.status_code == 201, added.text
            started = guest.post(
                "/api/checkout/session",
                json={
                    "email": email,
                    "shipping_address": {
                        "name": "Ada Lovelace",
                        "line1": "12 Roastery Lane",
                        "city": "Portland",
                        "postal_code": "97201",
                        "country": "US",
                    },
                },
            )
            assert started.status_code == 201, started.text
        session_id = started.json()["checkout_url"].rsplit("/", 1)[-1]
        control = self.stack.service_url("stripe-standin") + "/_standin"
        made = httpx.post(
            f"{control}/events",
            json={
                "type": "checkout.session.completed",
                "session_id": session_id,
                "overrides": {
                    "status": "complete",
                    "payment_status": "paid",
                    "amount_total": charged,
                },
            },
            timeout=10,
        )
        assert made.status_code == 201, made.text
        sent = httpx.post(f"{control}/deliver", json={"event_ids": [made.json()["id"]]}, timeout=20)
        assert sent.status_code < 300, sent.text
        assert [d["status_code"] for d in sent.json()["deliveries"]] == [200], sent.text
        return str(started.json()["order_id"])

    def admin_order(self, order_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"/api/admin/orders/{order_id}", headers=self.admin)
        return dict(response.json()) if response.status_code == 200 else None

    def wait_paid(self, order_id: str, timeout: float = 40) -> dict[str, Any]:
        return wait_for(
            lambda: (o := self.admin_order(order_id)) and o["status"] == "paid" and o, timeout
        )

    # --- mail -------------------------------------------------------------------------------

    def emails_to(self, address: str) -> list[dict[str, Any]]:
        response = httpx.get(
            self.stack.service_url("resend-standin") + "/_standin/emails",
            params={"to": address},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return list(response.json()["data"])


def csrf_of(html: str) -> str:
    """The storefront's form CSRF token in a page."""
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert match, "the page has no form token"
    return match.group(1)


class Browser:
    """A person's browser, in-process: one cookie jar, HTML accepted, redirects not followed."""

    def __init__(self, app: Litestar) -> None:
        self.client = asgi_client(app, headers=HTML, follow_redirects=False, timeout=30)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def post(
        self, path: str, data: dict[str, Any] | None = None, **kwargs: Any
    ) -> httpx.Response:
        return await self.client.post(path, data=data or {}, **kwargs)

    async def form(
        self, page: str, path: str, data: dict[str, Any], **kwargs: Any
    ) -> httpx.Response:
        """Open ``page``, then post ``data`` to ``path`` with the page's form token."""
        opened = await self.get(page)
        assert opened.status_code == 200, (page, opened.status_code)
        return await self.post(path, {**data, "_csrf_token": csrf_of(opened.text)}, **kwargs)

    @property
    def cookies(self) -> httpx.Cookies:
        return self.client.cookies

    async def aclose(self) -> None:
        await self.client.aclose()
