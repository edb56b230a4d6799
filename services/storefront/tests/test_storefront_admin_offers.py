"""Staff pages for discount codes and shipping rates, in-process over the real services of the
test stack: every field reaches checkout's admin API, and a refusal (the form's own or
checkout's problem) is a sentence on the form."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from storefront_testkit import DEMO_SLUGS, PASSWORD, Browser, Shop, csrf_of

pytestmark = pytest.mark.stack

CODES = "/api/checkout/admin/discount-codes"
RATES = "/api/checkout/admin/shipping-rates"


def assert_page(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    assert '"type":' not in response.text, "a problem body leaked into the page"
    return response.text


@pytest.fixture
async def staff(browser: Browser, shop: Shop) -> AsyncIterator[Browser]:
    person = shop.register_admin()
    signin = (await browser.get("/signin")).text
    await browser.post(
        "/signin", {"email": person["email"], "password": PASSWORD, "_csrf_token": csrf_of(signin)}
    )
    return browser


def api_code(shop: Shop, code_id: str) -> dict[str, Any]:
    found = shop.http.get(f"{CODES}/{code_id}", headers=shop.admin)
    assert found.status_code == 200, found.text
    return dict(found.json())


def api_rate(shop: Shop, code: str) -> dict[str, Any] | None:
    rates = shop.http.get(f"{RATES}/", headers=shop.admin)
    assert rates.status_code == 200, rates.text
    return next((r for r in rates.json() if r["code"] == code), None)


async def test_staff_create_edit_and_deactivate_a_discount_code(staff: Browser, shop: Shop) -> None:
    coffee = shop.product(DEMO_SLUGS[0])
    category = shop.category("single-origin")
    listing = assert_page(await staff.get("/admin/discount-codes"))
    assert 'href="/admin/discount-codes" aria-current="page">Discounts<' in listing
    text = f"STAFF{uuid.uuid4().hex[:6].upper()}"
    fields = {
        "code": text.lower(),
        "description": "Autumn",
        "kind": "percent",
        "off": "15",
        "min_subtotal": "20.00",
        "starts_at": "2026-01-01T09:00",
        "ends_at": "2036-01-01T09:00",
        "max_uses": "5",
        "max_uses_per_customer": "1",
        "first_order_only": "1",
        "product_ids": [coffee["id"]],
        "category_ids": [category["id"]],
        "active": "1",
    }
    created = await staff.form("/admin/discount-codes/new", "/admin/discount-codes", fields)
    assert created.status_code == 303, created.text[:500]
    code_path = created.headers["location"]
    code = api_code(shop, code_path.rsplit("/", 1)[-1])
    assert {k: code[k] for k in fields if k in code} == {
        "code": text,
        "description": "Autumn",
        "min_subtotal": 2000,
        "starts_at": "2026-01-01T09:00:00Z",
        "ends_at": "2036-01-01T09:00:00Z",
        "max_uses": 5,
        "max_uses_per_customer": 1,
        "first_order_only": True,
        "product_ids": [coffee["id"]],
        "category_ids": [category["id"]],
        "active": True,
    }
    assert (code["percent_off"], code["amount_off"]) == (15, None)
    page = assert_page(await staff.get(code_path))
    assert f'value="{category["id"]}" checked' in page
    assert f'value="{coffee["id"]}" selected' in page
    assert 'value="2026-01-01T09:00"' in page
    assert "The discount code is saved." in page

    # The form's own refusal, and checkout's (a taken code; an end before the start).
    not_a_number = await staff.form(
        "/admin/discount-codes/new", "/admin/discount-codes", {**fields, "off": "lots"}
    )
    assert "Give a whole percentage from 1 to 100." in assert_page(not_a_number, 400)
    taken = await staff.form("/admin/discount-codes/new", "/admin/discount-codes", fields)
    assert f"A discount code &#39;{text}&#39; exists already." in assert_page(taken, 400)
    backwards = await staff.form(
        code_path, code_path, {**fields, "ends_at": "2025-01-01T09:00", "off": "20"}
    )
    shown = assert_page(backwards, 400)
    assert "must be after starts_at" in shown
    assert 'value="2025-01-01T09:00"' in shown  # what was typed stays on the form
    assert api_code(shop, code["id"])["percent_off"] == 15

    # An amount instead, for every product, with a larger limit.
    changed = await staff.form(
        code_path,
        code_path,
        {
            **fields,
            "kind": "amount",
            "off": "4.00",
            "max_uses": "50",
            "first_order_only": "",
            "product_ids": [],
            "category_ids": [],
        },
    )
    assert changed.status_code == 303, changed.text[:500]
    code = api_code(shop, code["id"])
    assert (code["percent_off"], code["amount_off"], code["max_uses"]) == (None, 400, 50)
    assert (code["product_ids"], code["category_ids"], code["first_order_only"]) == ([], [], False)

    # Emptied on the form, the end date and the use limit are gone (the rest stays).
    opened = await staff.form(
        code_path,
        code_path,
        {**fields, "kind": "amount", "off": "4.00", "ends_at": "", "max_uses": ""},
    )
    assert opened.status_code == 303, opened.text[:500]
    code = api_code(shop, code["id"])
    assert (code["ends_at"], code["max_uses"]) == (None, None)
    assert (code["starts_at"], code["max_uses_per_customer"]) == ("2026-01-01T09:00:00Z", 1)

    deactivated = await staff.form(code_path, f"{code_path}/deactivate", {})
    assert deactivated.status_code == 303
    assert api_code(shop, code["id"])["active"] is False
    listing = assert_page(await staff.get("/admin/discount-codes"))
    row = listing[listing.index(text) :]
    assert row.index("Inactive") < row.index("</tr>")


async def test_staff_add_change_and_deactivate_a_shipping_rate(staff: Browser, shop: Shop) -> None:
    code = f"overnight-{uuid.uuid4().hex[:6]}"
    fields = {
        "code": code,
        "name": "Overnight",
        "price": "25.00",
        "free_over": "100.00",
        "countries": "us, gb",
        "min_days": "1",
        "max_days": "1",
        # Last, so that other tests' checkouts keep their first choice.
        "position": "900",
        "active": "1",
    }
    try:
        bad = await staff.form(
            "/admin/shipping-rates", "/admin/shipping-rates", {**fields, "countries": "USA"}
        )
        assert "Give two-letter country codes" in assert_page(bad, 400)
        assert api_rate(shop, code) is None
        created = await staff.form("/admin/shipping-rates", "/admin/shipping-rates", fields)
        assert created.status_code == 303, created.text[:500]
        rate = api_rate(shop, code)
        assert rate is not None
        assert {k: rate[k] for k in ("name", "price", "free_over", "countries")} == {
            "name": "Overnight",
            "price": 2500,
            "free_over": 10000,
            "countries": ["GB", "US"],
        }
        assert (rate["min_days"], rate["max_days"], rate["position"], rate["active"]) == (
            1,
            1,
            900,
            True,
        )
        listing = assert_page(await staff.get("/admin/shipping-rates"))
        assert "The shipping rate is saved." in listing
        assert f'href="/admin/shipping-rates/{rate["id"]}">Overnight<' in listing
        taken = await staff.form("/admin/shipping-rates", "/admin/shipping-rates", fields)
        assert f"A shipping rate &#39;{code}&#39; exists already." in assert_page(taken, 400)
        backwards = await staff.form(
            f"/admin/shipping-rates/{rate['id']}",
            f"/admin/shipping-rates/{rate['id']}",
            {**fields, "min_days": "3", "max_days": "1"},
        )
        assert "must not be more than max_days" in assert_page(backwards, 400)

        path = f"/admin/shipping-rates/{rate['id']}"
        page = assert_page(await staff.get(path))
        assert 'value="us, gb"' not in page
        assert 'value="GB, US"' in page
        changed = await staff.form(
            path, path, {**fields, "name": "Next day", "free_over": "", "countries": ""}
        )
        assert changed.status_code == 303, changed.text[:500]
        rate = api_rate(shop, code)
        assert rate is not None
        assert (rate["name"], rate["free_over"], rate["countries"]) == ("Next day", None, [])
        deactivated = await staff.form(path, f"{path}/deactivate", {})
        assert deactivated.status_code == 303
        rate = api_rate(shop, code)
        assert rate is not None
        assert rate["active"] is False
    finally:
        left = api_rate(shop, code)
        if left is not None and left["active"]:
            shop.http.patch(f"{RATES}/{left['id']}", json={"active": False}, headers=shop.admin)
