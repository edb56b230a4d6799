"""A shopper's browser window for the browser tests."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.async_api import BrowserContext, Page
from storefront_testkit import CARD_OK, DEMO_SLUGS, Shop


class Person:
    """One shopper's browser window, with what it printed to its console."""

    def __init__(self, context: BrowserContext, page: Page, base_url: str) -> None:
        self.context = context
        self.page = page
        self.base_url = base_url
        self.console: list[str] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    async def open(self, path: str) -> Any:
        return await self.page.goto(self.base_url + path)

    def csp_violations(self) -> list[str]:
        return [line for line in self.console if "Content Security Policy" in line]


async def staff_sign_in(person: Person, browser_shop: Shop, next_path: str) -> None:
    """A new admin account signs in through the page ``next_path`` sends them to."""
    staff = browser_shop.register_admin()
    page = person.page
    await person.open(next_path)
    await page.wait_for_url(re.compile(rf".*/signin\?next={re.escape(next_path)}$"))
    await page.fill("#f-email", staff["email"])
    await page.fill("#f-password", staff["password"])
    await page.get_by_test_id("signin-submit").click()
    await page.wait_for_url(re.compile(rf".*{re.escape(next_path)}$"))


async def subscribed(browser_shop: Shop, name: str) -> tuple[dict[str, str], str, str]:
    """A member with an active (paid) subscription: the member, its page and Stripe's page."""
    coffee = browser_shop.product(DEMO_SLUGS[3])
    member = browser_shop.register(name=name)
    async with httpx.AsyncClient(base_url=browser_shop.stack.url, timeout=20) as api:
        signed = await api.post(
            "/api/auth/login", json={"email": member["email"], "password": member["password"]}
        )
        assert signed.status_code == 200, signed.text
        bearer = {"Authorization": f"Bearer {signed.json()['access_token']}"}
        started = await api.post(
            "/api/subscriptions",
            json={
                "product_id": coffee["id"],
                "interval": "week",
                "interval_count": 2,
                "quantity": 1,
                "shipping_address": {
                    "name": name,
                    "line1": "12 Roastery Lane",
                    "city": "Portland",
                    "postal_code": "97201",
                    "country": "US",
                },
            },
            headers=bearer,
        )
        assert started.status_code == 201, started.text
        paid = await api.post(
            started.json()["checkout_url"],
            data={
                "card_number": CARD_OK,
                "exp": "12 / 34",
                "cvc": "123",
                "email": member["email"],
            },
        )
    assert paid.status_code == 303, paid.text
    return (
        member,
        f"/account/subscriptions/{started.json()['subscription_id']}",
        (started.json()["checkout_url"]),
    )
