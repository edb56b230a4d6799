"""After the sale: a shopper follows their parcel on the order page, scan by scan, to "Delivered"."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from browser_testkit import Person
from playwright.async_api import expect
from storefront_testkit import DEMO_SLUGS, Shop, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.browser]


async def test_the_order_page_shows_the_carriers_scans_until_delivered(
    person: Person, browser_shop: Shop, screenshots: Path
) -> None:
    page = person.page
    coffee = browser_shop.product(DEMO_SLUGS[3])
    email = f"track-{uuid.uuid4().hex[:8]}@example.com"
    order_id, _ = browser_shop.buy(coffee["id"], email=email)
    browser_shop.wait_paid(order_id)
    number = f"1Z{uuid.uuid4().hex[:16].upper()}"
    admin = f"/api/admin/orders/{order_id}"
    shipped = browser_shop.http.post(
        f"{admin}/ship",
        json={"carrier": "UPS", "tracking_number": number},
        headers=browser_shop.admin,
    )
    assert shipped.status_code == 200, shipped.text
    standin = browser_shop.stack.service_url("tracking-standin")

    async def advance(seconds: int) -> None:
        """Move the parcel's clock on at the tracking stand-in (its scans come with time)."""
        async with httpx.AsyncClient(timeout=10) as client:
            moved = await client.post(
                f"{standin}/standin/advance", json={"number": number, "seconds": seconds}
            )
        assert moved.status_code == 200, moved.text

    def sync() -> dict:
        synced = browser_shop.http.post(f"{admin}/tracking/sync", headers=browser_shop.admin)
        assert synced.status_code == 200, synced.text
        return dict(synced.json())

    # A little way into the journey: a few scans, the parcel on its way.
    await advance(150)
    wait_for(lambda: sync()["events"] or None)
    # The guest comes back by the link the confirmation mailed (a token of ours; Stripe's session
    # id from the payment's redirect opens the order for an hour only).
    token = browser_shop.stack.mailed_token(email, f"/order/{order_id}")
    link = f"/order/{order_id}?token={token}"
    await person.open(link)
    await expect(page.get_by_test_id("shipment-heading")).to_have_text("On its way")
    scans = page.get_by_test_id("tracking-event")
    in_transit = await scans.count()
    assert in_transit >= 1
    # Shipped: the note about roasting days has done its job.
    await expect(page.get_by_text("we roast on Mondays")).to_have_count(0)

    # The rest of the way: delivered.
    await advance(3600)
    wait_for(lambda: sync()["delivered_at"])
    await person.open(link)
    await expect(page.get_by_test_id("shipment-heading")).to_have_text("Delivered")
    await expect(page.get_by_test_id("order-status")).to_have_text("Delivered")
    assert await scans.count() > in_transit
    # Newest first: the delivery scan leads the timeline.
    await expect(scans.first).to_contain_text("Delivered")
    await expect(page.get_by_text("we roast on Mondays")).to_have_count(0)
    await expect(page.get_by_text("we are roasting your coffee")).to_have_count(0)
    await page.screenshot(path=screenshots / "order-delivered.png", full_page=True)
    assert person.csp_violations() == []
