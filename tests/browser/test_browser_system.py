"""The staff system page through Chromium: every service up with its version, and a poison
event's dead letter that appears on the page and leaves it when staff replay it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from browser_testkit import Person
from ember_devkit.testing.stack import RunningStack
from ember_shared.events.envelope import stream_for
from ember_shared.events.wire import entry_fields
from playwright.async_api import expect
from storefront_testkit import Shop

pytestmark = [pytest.mark.stack, pytest.mark.browser]

POISON_TYPE = "order.shipped.v1"  # read by the notifier only: one dead letter, one group


async def publish_poison(stack: RunningStack) -> str:
    """An order.shipped.v1 whose data fits no handler (order_id is not a uuid), put on its
    stream exactly as a relay would."""
    event_id = str(uuid.uuid4())
    envelope = json.dumps(
        {
            "id": event_id,
            "type": POISON_TYPE,
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "producer": "orders",
            "correlation_id": "system-page-poison",
            "data": {"order_id": "not-a-uuid", "email": "poison@example.com"},
        }
    ).encode()
    fields = await entry_fields(
        envelope,
        event_id=event_id,
        event_type=POISON_TYPE,
        correlation_id="system-page-poison",
        producer="orders",
    )
    client = aioredis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        await client.xadd(stream_for(POISON_TYPE), fields)  # type: ignore[arg-type]
    finally:
        await client.aclose()
    return event_id


async def test_a_dead_letter_appears_and_leaves_on_replay(
    person: Person, browser_shop: Shop, stack: RunningStack, screenshots: Path
) -> None:
    page = person.page
    staff = browser_shop.register_admin()
    await person.open("/admin/system")
    await page.wait_for_url(re.compile(r".*/signin\?next=/admin/system$"))
    await page.fill("#f-email", staff["email"])
    await page.fill("#f-password", staff["password"])
    await page.get_by_test_id("signin-submit").click()
    await expect(page.get_by_role("heading", name="System")).to_be_visible()

    rows = page.get_by_test_id("system-service")
    await expect(rows).to_have_count(7)
    for service in ("identity", "catalog", "cart", "checkout", "orders", "notifier", "storefront"):
        row = page.locator(f'[data-testid="system-service"][data-service="{service}"]')
        await expect(row).to_contain_text("Up")
        await expect(row).to_contain_text("1.0.0")

    event_id = await publish_poison(stack)
    letter = page.locator(f'[data-testid="dead-letter"][data-event-id="{event_id}"]')
    for _ in range(60):  # the notifier dead-letters it on its first delivery
        await page.reload()
        if await letter.count():
            break
        await asyncio.sleep(0.5)
    await expect(letter).to_have_count(1)
    await expect(letter).to_contain_text("notifier")
    await expect(letter).to_contain_text("undecodable")
    letter_id = await letter.get_attribute("data-letter-id")
    assert letter_id
    await page.screenshot(path=screenshots / "admin-system.png", full_page=True)

    await letter.get_by_role("button", name="Replay").click()
    await page.wait_for_url(re.compile(rf".*/admin/system\?replayed={letter_id}$"))
    await expect(page.get_by_test_id("replayed")).to_contain_text(letter_id)
    await expect(page.locator(f'[data-letter-id="{letter_id}"]')).to_have_count(0)

    # The replay really put it back on its stream: still poison, it is dead-lettered anew under
    # another id. Discard that one so no later test sees it.
    async with httpx.AsyncClient(
        base_url=stack.url, headers=browser_shop.admin, timeout=10
    ) as staff_api:
        again: list[str] = []
        for _ in range(60):
            listed = await staff_api.get(
                "/api/admin/emails/dead-letters", params={"service": "notifier", "limit": 100}
            )
            assert listed.status_code == 200, listed.text
            again = [d["id"] for d in listed.json()["items"] if d["event_id"] == event_id]
            if again:
                break
            await asyncio.sleep(0.5)
        assert again
        assert letter_id not in again
        for other in again:
            gone = await staff_api.delete(f"/api/admin/emails/dead-letters/{other}")
            assert gone.status_code == 204
