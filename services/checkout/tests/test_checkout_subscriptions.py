"""Coffee subscriptions through Stripe Billing: subscribe, pay on the hosted page, renew, fail,
cancel; every state change from Stripe's verified webhooks, each paid invoice one order event.

The real identity, catalog, cart and checkout apps and the Stripe stand-in run over HTTP; every
webhook is signed and sent by the stand-in exactly as Stripe signs them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

import httpx
from checkout_testkit import ADDRESS, Shopper, World, eventually
from sqlalchemy import text

CARD_OK = "4242 4242 4242 4242"
INVOICE_PAID = "subscription.invoice_paid.v1"


async def _subscribe(world: World, shopper: Shopper, **body: Any) -> Any:
    payload: dict[str, Any] = {
        "interval": "week",
        "interval_count": 2,
        "quantity": 2,
        "shipping_address": ADDRESS,
    }
    payload.update(body)
    return await shopper.http.post(
        f"{world.checkout_url}/api/subscriptions/", json=payload, headers=shopper._auth()
    )


async def _get(world: World, shopper: Shopper, path: str = "") -> Any:
    return await shopper.http.get(
        f"{world.checkout_url}/api/subscriptions{path}", headers=shopper._auth()
    )


async def _cancel(world: World, shopper: Shopper, subscription_id: str) -> Any:
    return await shopper.http.post(
        f"{world.checkout_url}/api/subscriptions/{subscription_id}/cancel",
        headers=shopper._auth(),
    )


async def _row(world: World, subscription_id: str) -> dict[str, Any]:
    async with world.engine.connect() as connection:
        found = (
            (
                await connection.execute(
                    text("SELECT * FROM checkout.subscriptions WHERE id = :i"),
                    {"i": subscription_id},
                )
            )
            .mappings()
            .one()
        )
    return dict(found)


async def _invoices(world: World, subscription_id: str) -> list[dict[str, Any]]:
    async with world.engine.connect() as connection:
        rows = (
            (
                await connection.execute(
                    text(
                        "SELECT * FROM checkout.subscription_invoices WHERE subscription_id = :i "
                        "ORDER BY created_at"
                    ),
                    {"i": subscription_id},
                )
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]


async def _invoice_paid_events(world: World, subscription_id: str) -> list[dict[str, Any]]:
    async with world.engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT envelope FROM checkout.outbox_events WHERE type = :t "
                    "ORDER BY created_at"
                ),
                {"t": INVOICE_PAID},
            )
        ).all()
    envelopes = [json.loads(bytes(row.envelope)) for row in rows]
    return [e for e in envelopes if e["data"]["subscription_id"] == subscription_id]


async def _until(world: World, subscription_id: str, **wanted: Any) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        row = await _row(world, subscription_id)
        return row if all(row[k] == v for k, v in wanted.items()) else None

    return await eventually(check, what=f"subscription {subscription_id} {wanted}")


async def _paid_invoices(world: World, subscription_id: str, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        rows = [r for r in await _invoices(world, subscription_id) if r["status"] == "paid"]
        return rows if len(rows) >= count else None

    return await eventually(check, what=f"{count} paid invoices")


async def _active(world: World, *, price: int = 1500) -> dict[str, Any]:
    """A shopper with a subscription paid through the stand-in and made active by webhooks."""
    product_id = await world.product(price=price)
    shopper = world.customer()
    response = await _subscribe(world, shopper, product_id=str(product_id))
    assert response.status_code == 201, response.text
    subscription_id = response.json()["subscription_id"]
    row = await _row(world, subscription_id)
    await world.control(
        "POST", f"/sessions/{row['stripe_checkout_session_id']}/pay", json={"card_number": CARD_OK}
    )
    row = await _until(world, subscription_id, status="active")
    await _paid_invoices(world, subscription_id, 1)
    return {
        "shopper": shopper,
        "product_id": product_id,
        "id": subscription_id,
        "stripe_id": row["stripe_subscription_id"],
        "session_id": row["stripe_checkout_session_id"],
    }


async def _renew(world: World, stripe_id: str, *, fail: bool = False) -> dict[str, Any]:
    params = {"fail": 1} if fail else {}
    renewed: dict[str, Any] = await world.control(
        "POST", f"/subscriptions/{stripe_id}/renew", params=params
    )
    return renewed


async def test_subscribing_and_paying_on_the_hosted_page_activates_through_webhooks(
    world: World,
) -> None:
    product_id = await world.product(price=1500, name=f"Gesha {uuid.uuid4().hex[:6]}")
    shopper = world.customer()
    response = await _subscribe(world, shopper, product_id=str(product_id))

    assert response.status_code == 201, response.text
    started = response.json()
    subscription_id = started["subscription_id"]
    assert started["status"] == "incomplete"
    assert started["checkout_url"].startswith(world.standin_url + "/pay/cs_")
    row = await _row(world, subscription_id)
    assert row["status"] == "incomplete"
    assert row["unit_price"] == 1500
    assert row["user_id"] == shopper.user_id
    assert (row["variant_id"], row["variant_title"]) == (product_id, "")
    assert row["sku"]  # the default variant's, as catalog has it

    standin = await world.stripe_session(row["stripe_checkout_session_id"])
    session = standin["session"]
    assert session["mode"] == "subscription"
    assert session["metadata"] == {
        "subscription_id": subscription_id,
        "user_id": str(shopper.user_id),
    }
    assert session["success_url"] == f"http://shop.test/account?subscription={subscription_id}"
    assert session["cancel_url"] == f"http://shop.test/coffee/{row['product_slug']}"
    price = standin["line_items"][0]["price"]
    assert price["unit_amount"] == 1500
    assert price["recurring"]["interval"] == "week"
    assert price["recurring"]["interval_count"] == 2
    assert standin["line_items"][0]["quantity"] == 2

    paid = await world.pay_page(started["checkout_url"], CARD_OK)
    assert paid.status_code == 303
    assert paid.headers["location"] == f"http://shop.test/account?subscription={subscription_id}"

    row = await _until(world, subscription_id, status="active")
    assert row["stripe_subscription_id"].startswith("sub_")
    assert row["stripe_customer_id"].startswith("cus_")
    assert row["cancel_at_period_end"] is False
    period_left = row["current_period_end"] - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=13) < period_left <= dt.timedelta(days=14)

    invoices = await _paid_invoices(world, subscription_id, 1)
    assert len(invoices) == 1
    invoice = invoices[0]
    assert invoice["stripe_invoice_id"].startswith("in_")
    assert invoice["amount_paid"] == 3000
    assert invoice["currency"] == "USD"
    assert invoice["billing_reason"] == "subscription_create"
    assert invoice["order_id"] is not None

    events = await _invoice_paid_events(world, subscription_id)
    assert len(events) == 1
    data = events[0]["data"]
    assert data["order_id"] == str(invoice["order_id"])
    assert data["user_id"] == str(shopper.user_id)
    assert data["email"] == f"{shopper.user_id.hex[:8]}@example.com"
    assert data["lines"] == [
        {
            "product_id": str(product_id),
            "slug": row["product_slug"],
            "name": row["product_name"],
            "unit_price": 1500,
            "quantity": 2,
            "image_url": "",
            "discount": 0,
            # Subscribed without naming a variant: the product's default (its own id).
            "variant_id": str(product_id),
            "sku": row["sku"],
            "variant_title": "",
            "option_values": [],
        }
    ]
    assert (data["subtotal"], data["shipping"], data["total"]) == (3000, 0, 3000)
    assert data["currency"] == "USD"
    assert data["shipping_address"]["name"] == "Ada Lovelace"
    assert data["stripe_invoice_id"] == invoice["stripe_invoice_id"]
    assert data["stripe_subscription_id"] == row["stripe_subscription_id"]

    one = await _get(world, shopper, f"/{subscription_id}")
    assert one.status_code == 200
    body = one.json()
    assert body["status"] == "active"
    assert body["amount"] == 3000
    assert body["checkout_url"] is None
    assert [i["stripe_invoice_id"] for i in body["invoices"]] == [invoice["stripe_invoice_id"]]
    listed = await _get(world, shopper, "/?page=1&page_size=5")
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["items"]] == [subscription_id]
    assert listed.json()["total"] == 1


async def test_each_renewal_is_one_invoice_and_one_order_event_even_when_delivered_twice(
    world: World,
) -> None:
    active = await _active(world)
    first_end = (await _row(world, active["id"]))["current_period_end"]

    renewed = await _renew(world, active["stripe_id"])
    invoices = await _paid_invoices(world, active["id"], 2)
    assert invoices[1]["stripe_invoice_id"] == renewed["invoice"]["id"]
    assert invoices[1]["billing_reason"] == "subscription_cycle"
    assert invoices[1]["period_start"] == first_end
    row = await _until(world, active["id"], status="active")
    assert row["current_period_end"] - first_end == dt.timedelta(days=14)

    # Stripe delivers every invoice.paid (and the rest) again, each twice.
    all_events = await world.events(active["session_id"])
    replies = await world.deliver([e["id"] for e in all_events], times=2)
    assert {r["status_code"] for r in replies} == {200}
    assert all(json.loads(r["body"])["duplicate"] for r in replies)

    events = await _invoice_paid_events(world, active["id"])
    assert len(events) == 2
    assert {e["data"]["stripe_invoice_id"] for e in events} == {
        i["stripe_invoice_id"] for i in invoices
    }
    assert len({e["data"]["order_id"] for e in events}) == 2
    assert len(await _invoices(world, active["id"])) == 2


async def test_a_failed_renewal_makes_it_past_due_and_a_late_older_update_changes_nothing(
    world: World,
) -> None:
    active = await _active(world)

    failed = await _renew(world, active["stripe_id"], fail=True)
    await _until(world, active["id"], status="past_due")
    invoices = await _invoices(world, active["id"])

    async def failed_recorded() -> bool:
        return any(
            i["stripe_invoice_id"] == failed["invoice"]["id"] and i["status"] == "payment_failed"
            for i in await _invoices(world, active["id"])
        )

    await eventually(failed_recorded, what="the failed invoice")
    invoices = await _invoices(world, active["id"])
    assert len(invoices) == 2
    assert len(await _invoice_paid_events(world, active["id"])) == 1

    # An "active" update created before the past_due one arrives late: ignored.
    stale = await world.control(
        "POST",
        "/events",
        json={
            "type": "customer.subscription.updated",
            "subscription_id": active["stripe_id"],
            "overrides": {"status": "active"},
            "created_offset": -600,
        },
    )
    # (The stand-in sends it by itself: wait for checkout to have recorded it.)
    recorded = await eventually(
        lambda: world.provider_events(stale["id"]), what="the stale event handled"
    )
    assert recorded[0]["outcome"] == "ignored: older than the last change applied"
    assert (await _row(world, active["id"]))["status"] == "past_due"

    # Stripe retries and the card pays: active again, and that invoice becomes an order.
    await _renew(world, active["stripe_id"])
    await _until(world, active["id"], status="active")
    await _paid_invoices(world, active["id"], 2)
    assert len(await _invoice_paid_events(world, active["id"])) == 2


async def test_two_changes_in_one_second_leave_the_record_as_stripe_has_it(
    world: World,
) -> None:
    """Stripe's ``created`` counts seconds: two updates made in the same second can arrive in
    either order, and the later-made one may come first. Neither snapshot can be trusted to be
    the newer, so the second applies what Stripe says the subscription is now."""
    active = await _active(world)
    await world.hold(active["session_id"])
    same_second = int(time.time()) + 5  # after every event this subscription has had
    made_last = await world.control(
        "POST",
        "/events",
        json={
            "type": "customer.subscription.updated",
            "subscription_id": active["stripe_id"],
            "created": same_second,
        },
    )
    made_first = await world.control(
        "POST",
        "/events",
        json={
            "type": "customer.subscription.updated",
            "subscription_id": active["stripe_id"],
            "overrides": {"status": "past_due"},  # a moment before, a renewal had failed
            "created": same_second,
        },
    )
    # The one made last arrives first, then the earlier snapshot.
    replies = await world.deliver([made_last["id"], made_first["id"]])
    assert [r["status_code"] for r in replies] == [200, 200], replies
    row = await _row(world, active["id"])
    assert row["status"] == "active"  # what Stripe has now, not the late snapshot's past_due
    outcome = (await world.provider_events(made_first["id"]))[0]["outcome"]
    assert outcome == "active"


async def test_cancel_takes_effect_only_when_stripe_says_so(world: World) -> None:
    active = await _active(world)
    shopper = active["shopper"]
    await world.hold(active["session_id"])
    updated_before = await world.events(active["session_id"], "customer.subscription.updated")

    response = await _cancel(world, shopper, active["id"])
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "active"
    assert response.json()["cancel_at_period_end"] is False
    row = await _row(world, active["id"])
    assert (row["status"], row["cancel_at_period_end"]) == ("active", False)
    standin = await world.control("GET", f"/subscriptions/{active['stripe_id']}")
    assert standin["subscription"]["cancel_at_period_end"] is True

    updated = await world.events(active["session_id"], "customer.subscription.updated")
    assert len(updated) == len(updated_before) + 1
    await world.deliver([updated[-1]["id"]])
    row = await _row(world, active["id"])
    assert (row["status"], row["cancel_at_period_end"]) == ("active", True)

    again = await _cancel(world, shopper, active["id"])
    assert again.status_code == 202
    assert again.json()["cancel_at_period_end"] is True
    assert len(await world.events(active["session_id"], "customer.subscription.updated")) == len(
        updated
    )

    # The period ends: Stripe ends the subscription instead of billing it.
    ended = await _renew(world, active["stripe_id"])
    assert ended["invoice"] is None
    assert (await _row(world, active["id"]))["status"] == "active"
    deleted = await world.events(active["session_id"], "customer.subscription.deleted")
    await world.deliver([deleted[-1]["id"]])
    row = await _row(world, active["id"])
    assert row["status"] == "canceled"
    assert row["canceled_at"] is not None

    # Nothing brings it back: an update made later is ignored, canceled is final.
    late = await world.control(
        "POST",
        "/events",
        json={
            "type": "customer.subscription.updated",
            "subscription_id": active["stripe_id"],
            "overrides": {"status": "active"},
            "created_offset": 60,
        },
    )
    await world.deliver([late["id"]])
    assert (await _row(world, active["id"]))["status"] == "canceled"
    final = await _cancel(world, shopper, active["id"])
    assert final.status_code == 202
    assert final.json()["status"] == "canceled"
    assert len(await _invoice_paid_events(world, active["id"])) == 1


async def test_only_the_owner_reaches_a_subscription(world: World) -> None:
    active = await _active(world)
    other = world.customer()
    for response in (
        await _get(world, other, f"/{active['id']}"),
        await _cancel(world, other, active["id"]),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
    listed = await _get(world, other)
    assert listed.status_code == 200
    assert listed.json() == {"items": [], "total": 0, "page": 1, "page_size": 20}
    assert (await _row(world, active["id"]))["cancel_at_period_end"] is False

    guest = world.guest()
    for response in (
        await _subscribe(world, guest, product_id=str(active["product_id"])),
        await _get(world, guest),
        await _get(world, guest, f"/{active['id']}"),
        await _cancel(world, guest, active["id"]),
    ):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_bad_subscriptions_are_refused_with_problems(world: World) -> None:
    product_id = await world.product(price=1500)
    shopper = world.customer()
    for body, status in (
        ({"interval": "year"}, 400),
        ({"quantity": 0}, 400),
        ({"quantity": 11}, 400),
        ({"interval_count": 5}, 400),
        ({"unit_price": 1}, 400),
        ({"shipping_address": {**ADDRESS, "country": "Britain"}}, 400),
        ({"shipping_address": {**ADDRESS, "country": "ZZ"}}, 400),  # two letters, no country
        ({"product_id": "not-a-uuid"}, 400),
        ({"product_id": str(uuid.uuid4())}, 409),
    ):
        payload = {"product_id": str(product_id), **body}
        response = await _subscribe(world, shopper, **payload)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    unknown = await _subscribe(world, shopper, product_id=str(uuid.uuid4()))
    assert unknown.json()["type"].endswith("product-unavailable")

    archived = await world.product(price=1500)
    await world.archive(archived)
    response = await _subscribe(world, shopper, product_id=str(archived))
    assert response.status_code == 409
    assert response.json()["reason"] == "archived"
    assert (await _get(world, shopper)).json()["total"] == 0

    # Not paid yet: nothing at Stripe to cancel.
    started = await _subscribe(world, shopper, product_id=str(product_id))
    assert started.status_code == 201
    refused = await _cancel(world, shopper, started.json()["subscription_id"])
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("subscription-not-active")


async def test_forged_subscription_webhooks_change_nothing(world: World) -> None:
    active = await _active(world)
    await world.hold(active["session_id"])
    renewed = await _renew(world, active["stripe_id"], fail=True)
    held = [
        e
        for e in await world.events(active["session_id"])
        if e["data"]["object"]["id"] in (renewed["invoice"]["id"], active["stripe_id"])
        and e["created"] >= int(time.time()) - 30
        and e["type"] in ("invoice.payment_failed", "customer.subscription.updated")
    ]
    assert {e["type"] for e in held} == {"invoice.payment_failed", "customer.subscription.updated"}
    ids = [e["id"] for e in held]
    for signature in ("wrong_secret", "tampered", "old_timestamp", "missing"):
        replies = await world.deliver(ids, signature=signature)
        assert {r["status_code"] for r in replies} == {400}, signature
    assert (await _row(world, active["id"]))["status"] == "active"
    assert len(await _invoices(world, active["id"])) == 1
    for event_id in ids:
        assert await world.provider_events(event_id) == []

    await world.deliver(ids)
    assert (await _row(world, active["id"]))["status"] == "past_due"
    assert len(await _invoices(world, active["id"])) == 2


async def test_staff_read_a_customers_subscriptions(world: World) -> None:
    active = await _active(world)
    user_id = str((await _row(world, active["id"]))["user_id"])
    url = f"{world.checkout_url}/api/admin/subscriptions"
    async with httpx.AsyncClient(timeout=10) as http:
        listed = await http.get(url, params={"user_id": user_id}, headers=world.admin_headers())
        assert listed.status_code == 200, listed.text
        assert [s["id"] for s in listed.json()["items"]] == [active["id"]]
        assert listed.json()["items"][0]["status"] == "active"
        nobody = await http.get(
            url, params={"user_id": str(uuid.uuid4())}, headers=world.admin_headers()
        )
        assert nobody.json()["total"] == 0
        for params in ({}, {"user_id": "nope"}, {"user_id": user_id, "page_size": 500}):
            bad = await http.get(url, params=params, headers=world.admin_headers())
            assert bad.status_code == 400, params
            assert bad.headers["content-type"].startswith("application/problem+json")
        customer = world.customer()
        refused = await http.get(url, params={"user_id": user_id}, headers=customer._auth())
        assert refused.status_code == 403


async def _act(world: World, shopper: Shopper, subscription_id: str, action: str) -> Any:
    return await shopper.http.post(
        f"{world.checkout_url}/api/subscriptions/{subscription_id}/{action}",
        headers=shopper._auth(),
    )


async def _moved_on(
    world: World, subscription_id: str, period_end: dt.datetime, *, periods: int = 1
) -> None:
    """Waits until Stripe's ``periods`` renewals (their updated period end) reached checkout."""

    async def check() -> bool:
        row = await _row(world, subscription_id)
        days = (7 if row["interval"] == "week" else 28) * row["interval_count"]
        return bool(
            row["current_period_end"] > period_end + dt.timedelta(days=days * (periods - 1))
        )

    await eventually(check, what=f"{periods} renewal(s) recorded")


async def test_pause_skip_and_resume_change_deliveries_only_when_stripe_says_so(
    world: World,
) -> None:
    active = await _active(world)
    shopper, sub_id = active["shopper"], active["id"]

    # Skip the next delivery: Stripe's pause_collection until just past the next renewal.
    skipped = await _act(world, shopper, sub_id, "skip-next")
    assert skipped.status_code == 202, skipped.text
    assert skipped.json()["paused"] is False  # as it is now: the webhook has not come yet
    row = await _until(world, sub_id, paused=True)
    assert row["paused_until"] > row["current_period_end"]
    # The renewal it covers bills nothing: no invoice, no order for that period.
    await _renew(world, active["stripe_id"])
    await _moved_on(world, sub_id, row["current_period_end"])
    assert (await _row(world, sub_id))["paused"] is True
    assert len(await _invoice_paid_events(world, sub_id)) == 1
    # The next one bills again (the pause ran its course).
    await _renew(world, active["stripe_id"])
    await _until(world, sub_id, paused=False)
    await _paid_invoices(world, sub_id, 2)
    assert len(await _invoice_paid_events(world, sub_id)) == 2

    # Pause until resumed: renewals bill nothing until the shopper resumes.
    paused = await _act(world, shopper, sub_id, "pause")
    assert paused.status_code == 202, paused.text
    row = await _until(world, sub_id, paused=True)
    assert row["paused_until"] is None
    await _renew(world, active["stripe_id"])
    await _renew(world, active["stripe_id"])
    await _moved_on(world, sub_id, row["current_period_end"], periods=2)
    assert len(await _invoice_paid_events(world, sub_id)) == 2
    shown = (await _get(world, shopper, f"/{sub_id}")).json()
    assert (shown["paused"], shown["paused_until"]) == (True, None)
    resumed = await _act(world, shopper, sub_id, "resume")
    assert resumed.status_code == 202, resumed.text
    await _until(world, sub_id, paused=False)
    await _renew(world, active["stripe_id"])
    await _paid_invoices(world, sub_id, 3)

    # Someone else's, a guest, an ending one: refused with problems.
    other = world.customer()
    assert (await _act(world, other, sub_id, "pause")).status_code == 404
    assert (await _act(world, world.guest(), sub_id, "pause")).status_code == 401
    assert (await _cancel(world, shopper, sub_id)).status_code == 202
    await _until(world, sub_id, cancel_at_period_end=True)
    ending = await _act(world, shopper, sub_id, "skip-next")
    assert ending.status_code == 409
    assert ending.headers["content-type"].startswith("application/problem+json")
    assert ending.json()["type"].endswith("/subscription-not-active")


PAYMENT_FAILED = "subscription.payment_failed.v1"
CARD_FAILS_LATER = "4000 0000 0000 0341"


async def _payment_failed_events(world: World, subscription_id: str) -> list[dict[str, Any]]:
    async with world.engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT envelope FROM checkout.outbox_events WHERE type = :t"),
                {"t": PAYMENT_FAILED},
            )
        ).all()
    envelopes = [json.loads(bytes(row.envelope)) for row in rows]
    return [e for e in envelopes if e["data"]["subscription_id"] == subscription_id]


async def _portal(world: World, shopper: Shopper, subscription_id: str) -> httpx.Response:
    response: httpx.Response = await shopper.http.post(
        f"{world.checkout_url}/api/subscriptions/{subscription_id}/payment-method-session",
        headers=shopper._auth(),
    )
    return response


async def _subscription_updates_handled(world: World, stripe_id: str) -> None:
    """Every ``customer.subscription.updated`` the stand-in made about ``stripe_id`` so far has
    been handled by checkout."""
    made = await world.control("GET", "/events", params={"type": "customer.subscription.updated"})
    ids = [e["id"] for e in made["data"] if (e["data"]["object"] or {}).get("id") == stripe_id]

    async def handled() -> bool:
        async with world.engine.connect() as connection:
            found = await connection.execute(
                text("SELECT count(*) FROM checkout.provider_events WHERE event_id = ANY(:ids)"),
                {"ids": ids},
            )
            return found.scalar_one() == len(ids)

    await eventually(handled, what=f"the stand-in's subscription updates {ids} handled")


async def _save_card(world: World, portal_url: str, card: str) -> httpx.Response:
    response: httpx.Response = await world.http.post(
        portal_url, data={"card_number": card, "exp": "12 / 34", "cvc": "123"}
    )
    return response


async def test_a_failed_renewal_is_announced_once_and_a_card_saved_in_the_portal_pays_the_next(
    world: World,
) -> None:
    active = await _active(world)
    shopper, stripe_id = active["shopper"], active["stripe_id"]

    missing = await _portal(world, shopper, str(uuid.uuid4()))
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    stranger = await _portal(world, world.customer(), active["id"])
    assert stranger.status_code == 404

    opened = await _portal(world, shopper, active["id"])
    assert opened.status_code == 201, opened.text
    portal_url = opened.json()["url"]
    assert portal_url.startswith(f"{world.standin_url}/billing/bps_")
    page = await world.http.get(portal_url)
    assert page.status_code == 200
    assert "•••• 4242" in page.text
    declined = await _save_card(world, portal_url, "4000 0000 0000 0002")
    assert declined.status_code == 402
    assert "declined" in declined.text
    # A card Stripe saves but every charge of which fails: the next renewal fails by itself.
    saved = await _save_card(world, portal_url, CARD_FAILS_LATER)
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"].endswith(f"/account/subscriptions/{active['id']}")

    # Stripe does not deliver in order, and the card's subscription update is stamped the same
    # second as the renewal's: let its webhook land first, so the past_due below is the last word.
    await _subscription_updates_handled(world, stripe_id)
    failed = await _renew(world, stripe_id)
    assert failed["invoice"]["status"] == "open"
    await _until(world, active["id"], status="past_due")

    async def announced() -> list[dict[str, Any]] | None:
        found = await _payment_failed_events(world, active["id"])
        return found or None

    events = await eventually(announced, what="the payment failure announced")
    assert len(events) == 1
    data = events[0]["data"]
    assert data["stripe_invoice_id"] == failed["invoice"]["id"]
    assert data["email"] == (await _row(world, active["id"]))["email"]
    assert (data["amount_due"], data["currency"]) == (3000, "USD")
    # Stripe telling it again (or its retry failing again) announces nothing more.
    stripe_events = [
        e
        for e in await world.events(active["session_id"], "invoice.payment_failed")
        if e["data"]["object"]["id"] == failed["invoice"]["id"]
    ]
    await world.deliver([stripe_events[0]["id"]])
    assert len(await _payment_failed_events(world, active["id"])) == 1
    shown = (await _get(world, shopper, f"/{active['id']}")).json()
    assert shown["status"] == "past_due"
    assert shown["invoices"][0]["status"] == "payment_failed"

    again = await _portal(world, shopper, active["id"])
    assert again.status_code == 201, again.text
    assert (await _save_card(world, again.json()["url"], CARD_OK)).status_code == 303
    paid = await _renew(world, stripe_id)
    assert paid["invoice"]["status"] == "paid"
    await _until(world, active["id"], status="active")
    await _paid_invoices(world, active["id"], 2)


async def test_the_next_delivery_goes_to_the_address_the_subscriber_changed_to(
    world: World,
) -> None:
    active = await _active(world)
    shopper = active["shopper"]
    url = f"{world.checkout_url}/api/subscriptions/{active['id']}/shipping-address"
    moved = {**ADDRESS, "name": "Ada Byron", "line1": "9 New Street", "city": "Boston"}

    for bad in ({**moved, "country": "ZZ"}, {**moved, "name": ""}, {**moved, "extra": "x"}):
        refused = await shopper.http.put(url, json=bad, headers=shopper._auth())
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    stranger = world.customer()
    other = await stranger.http.put(url, json=moved, headers=stranger._auth())
    assert other.status_code == 404
    assert (await _row(world, active["id"]))["shipping_address"]["line1"] == ADDRESS["line1"]

    changed = await shopper.http.put(url, json=moved, headers=shopper._auth())
    assert changed.status_code == 200, changed.text
    assert changed.json()["shipping_address"]["line1"] == "9 New Street"

    await _renew(world, active["stripe_id"])
    await _paid_invoices(world, active["id"], 2)
    events = await eventually(
        lambda: _events_at_least(world, active["id"], 2), what="the renewal's order event"
    )
    assert events[0]["data"]["shipping_address"]["line1"] == ADDRESS["line1"]
    assert events[1]["data"]["shipping_address"]["line1"] == "9 New Street"
    assert events[1]["data"]["shipping_address"]["name"] == "Ada Byron"


async def _events_at_least(world: World, subscription_id: str, count: int) -> Any:
    found = await _invoice_paid_events(world, subscription_id)
    return found if len(found) >= count else None


async def _change(world: World, shopper: Shopper, subscription_id: str, **body: Any) -> Any:
    return await shopper.http.patch(
        f"{world.checkout_url}/api/subscriptions/{subscription_id}",
        json=body,
        headers=shopper._auth(),
    )


async def _stripe_item(world: World, stripe_id: str) -> dict[str, Any]:
    state = await world.control("GET", f"/subscriptions/{stripe_id}")
    item: dict[str, Any] = state["subscription"]["items"]["data"][0]
    return item


async def test_a_subscriber_changes_quantity_and_cadence_and_the_record_follows_stripe(
    world: World,
) -> None:
    active = await _active(world)  # 2 bags every 2 weeks at 15.00
    shopper, sub_id, stripe_id = active["shopper"], active["id"], active["stripe_id"]

    # Someone else's, a guest, a bad change: refused with problems, nothing asked of Stripe.
    assert (await _change(world, world.customer(), sub_id, quantity=3)).status_code == 404
    assert (await _change(world, world.guest(), sub_id, quantity=3)).status_code == 401
    for bad in (
        {},
        {"quantity": 0},
        {"quantity": 11},
        {"quantity": 2.5},
        {"interval": "year"},
        {"interval_count": 5},
        {"unit_price": 1},
    ):
        refused = await _change(world, shopper, sub_id, **bad)
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await _stripe_item(world, stripe_id))["quantity"] == 2
    assert (await _row(world, sub_id))["quantity"] == 2

    # Another quantity: asked of Stripe; the record changes when Stripe's webhook says so.
    asked = await _change(world, shopper, sub_id, quantity=3)
    assert asked.status_code == 202, asked.text
    assert asked.json()["quantity"] == 2  # as it is now
    assert (await _stripe_item(world, stripe_id))["quantity"] == 3
    row = await _until(world, sub_id, quantity=3)
    assert (row["interval"], row["interval_count"]) == ("week", 2)
    # The next renewal bills and ships three bags.
    renewed = await _renew(world, stripe_id)
    assert renewed["invoice"]["amount_paid"] == 4500
    events = await eventually(lambda: _events_at_least(world, sub_id, 2), what="the renewal")
    assert events[1]["data"]["lines"][0]["quantity"] == 3
    assert events[1]["data"]["total"] == 4500

    # Another cadence: a monthly price at Stripe; it starts today (billed and sent at once).
    session_events = len(await world.events(active["session_id"]))
    monthly = await _change(world, shopper, sub_id, interval="month", interval_count=1)
    assert monthly.status_code == 202, monthly.text
    item = await _stripe_item(world, stripe_id)
    assert item["price"]["recurring"]["interval"] == "month"
    assert (item["quantity"], item["price"]["unit_amount"]) == (3, 1500)
    row = await _until(world, sub_id, interval="month", interval_count=1)
    assert (row["quantity"], row["unit_price"]) == (3, 1500)
    events = await eventually(lambda: _events_at_least(world, sub_id, 3), what="the new cadence")
    assert (events[2]["data"]["lines"][0]["quantity"], events[2]["data"]["total"]) == (3, 4500)
    shown = (await _get(world, shopper, f"/{sub_id}")).json()
    assert (shown["interval"], shown["interval_count"], shown["amount"]) == ("month", 1, 4500)
    # Asking for what Stripe already bills asks Stripe nothing.
    asked_events = len(await world.events(active["session_id"]))
    assert asked_events > session_events
    again = await _change(world, shopper, sub_id, interval="month", interval_count=1, quantity=3)
    assert again.status_code == 202
    assert len(await world.events(active["session_id"])) == asked_events

    # Stripe is the truth: a change made there (its dashboard) reaches the record too, and one
    # this shop does not sell is noted for staff instead of applied.
    stripe_api = f"{world.standin_url}/v1/subscriptions/{stripe_id}"
    auth = {"Authorization": "Bearer sk_test_dashboard"}
    for quantity in (5, 12):
        made = await world.http.post(
            stripe_api,
            data={
                "items[0][id]": item["id"],
                "items[0][quantity]": str(quantity),
                "proration_behavior": "none",
            },
            headers=auth,
        )
        assert made.status_code == 200, made.text
        if quantity == 5:
            # Applied before the next change: two changes in one second would let only what
            # Stripe has after both reach the record (see the same-second test).
            await _until(world, sub_id, quantity=5)

    async def noted() -> dict[str, Any] | None:
        found = await _row(world, sub_id)
        return found if "12" in found["attention"] else None

    row = await eventually(noted, what="the unsold quantity noted")
    assert row["quantity"] == 5


async def test_a_change_stripe_cannot_take_changes_nothing(world: World) -> None:
    from dataclasses import replace

    from checkout.payments import StripeGateway

    active = await _active(world)
    shopper, sub_id = active["shopper"], active["id"]
    state = world.apps["checkout"].state
    working = state.stripe
    unreachable = StripeGateway(
        replace(
            state.checkout_settings,
            stripe_api_base="http://127.0.0.1:9",
            stripe_max_network_retries=0,
            stripe_timeout_ms=2000,
        )
    )
    state.stripe = unreachable
    try:
        down = await _change(world, shopper, sub_id, quantity=4)
    finally:
        state.stripe = working
        await unreachable.aclose()
    assert down.status_code == 503, down.text
    assert down.headers["content-type"].startswith("application/problem+json")
    assert down.json()["type"].endswith("/payment-provider-unavailable")
    assert "Retry-After" in down.headers
    assert (await _row(world, sub_id))["quantity"] == 2
    assert (await _stripe_item(world, active["stripe_id"]))["quantity"] == 2

    # An ending subscription, or a new cadence while paused, is refused.
    assert (await _act(world, shopper, sub_id, "pause")).status_code == 202
    await _until(world, sub_id, paused=True)
    paused = await _change(world, shopper, sub_id, interval="month")
    assert paused.status_code == 409
    assert paused.json()["type"].endswith("/subscription-paused")
    assert (await _cancel(world, shopper, sub_id)).status_code == 202
    await _until(world, sub_id, cancel_at_period_end=True)
    ending = await _change(world, shopper, sub_id, quantity=4)
    assert ending.status_code == 409
    assert ending.json()["type"].endswith("/subscription-not-active")
    assert (await _stripe_item(world, active["stripe_id"]))["quantity"] == 2


async def _sizes(world: World) -> dict[str, Any]:
    """A coffee by the bag (its default variant, 1500), the kilo (5200, 6 on hand) and the
    half kilo, which is not sold now."""
    product_id = await world.product(price=1500, on_hand=20, name=f"Sidamo {uuid.uuid4().hex[:6]}")
    tag = product_id.hex[-10:]
    response = await world.http.put(
        f"{world.catalog_url}/api/admin/products/{product_id}/variants",
        json={
            "options": [{"name": "Size", "values": ["250 g", "500 g", "1 kg"]}],
            "variants": [
                {
                    "id": str(product_id),
                    "sku": f"s-{tag}-250",
                    "price": 1500,
                    "option_values": ["250 g"],
                },
                {
                    "sku": f"s-{tag}-500",
                    "price": 2800,
                    "option_values": ["500 g"],
                    "on_hand": 4,
                    "active": False,
                },
                {"sku": f"s-{tag}-1kg", "price": 5200, "option_values": ["1 kg"], "on_hand": 6},
            ],
        },
        headers=world.admin_headers(),
    )
    assert response.status_code == 200, response.text
    by_size = {v["option_values"][0]: v for v in response.json()["variants"]}
    return {"product_id": product_id, "tag": tag, **by_size}


async def test_a_subscription_delivers_its_variant_and_a_change_of_variant_follows_stripe(
    world: World,
) -> None:
    coffee = await _sizes(world)
    product_id, kilo = coffee["product_id"], coffee["1 kg"]
    shopper = world.customer()
    started = await _subscribe(
        world, shopper, product_id=str(product_id), variant_id=kilo["id"], quantity=1
    )
    assert started.status_code == 201, started.text
    sub_id = started.json()["subscription_id"]
    row = await _row(world, sub_id)
    assert (str(row["variant_id"]), row["sku"], row["variant_title"]) == (
        kilo["id"],
        f"s-{coffee['tag']}-1kg",
        "1 kg",
    )
    assert (row["unit_price"], row["option_values"]) == (5200, ["1 kg"])
    # Stripe's price and product are the kilo's, named after it.
    standin = await world.stripe_session(row["stripe_checkout_session_id"])
    line = standin["line_items"][0]
    assert line["price"]["unit_amount"] == 5200
    assert line["description"] == f"{row['product_name']} - 1 kg"
    assert standin["session"]["cancel_url"].endswith(
        f"/coffee/{row['product_slug']}?variant=s-{coffee['tag']}-1kg"
    )
    await world.control(
        "POST", f"/sessions/{row['stripe_checkout_session_id']}/pay", json={"card_number": CARD_OK}
    )
    row = await _until(world, sub_id, status="active")
    assert str(row["variant_id"]) == kilo["id"]  # the first price names no variant: kept
    events = await eventually(lambda: _events_at_least(world, sub_id, 1), what="the first order")
    first = events[0]["data"]["lines"][0]
    assert (first["variant_id"], first["sku"], first["variant_title"]) == (
        kilo["id"],
        f"s-{coffee['tag']}-1kg",
        "1 kg",
    )
    assert (first["option_values"], first["unit_price"], events[0]["data"]["total"]) == (
        ["1 kg"],
        5200,
        5200,
    )
    shown = (await _get(world, shopper, f"/{sub_id}")).json()
    assert shown["variant"] == {
        "id": kilo["id"],
        "sku": f"s-{coffee['tag']}-1kg",
        "title": "1 kg",
        "option_values": ["1 kg"],
    }
    assert shown["amount"] == 5200

    # A variant not sold now, unknown, or another product's: refused, nothing asked of Stripe.
    other = await world.product(price=900)
    for variant_id, reason in (
        (coffee["500 g"]["id"], "inactive"),
        (str(uuid.uuid4()), "unknown"),
        (str(other), "unknown"),
    ):
        refused = await _change(world, shopper, sub_id, variant_id=variant_id)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("/variant-unavailable")
        assert refused.json()["reason"] == reason
        started_again = await _subscribe(
            world, shopper, product_id=str(product_id), variant_id=variant_id
        )
        assert started_again.status_code == 409, started_again.text
        assert started_again.json()["type"].endswith("/variant-unavailable")
    assert (await _stripe_item(world, row["stripe_subscription_id"]))["price"][
        "unit_amount"
    ] == 5200

    # Back to the bag: a price of a Stripe product named after it, billed from the next
    # delivery; the record follows Stripe's webhook.
    stripe_id = row["stripe_subscription_id"]
    asked = await _change(world, shopper, sub_id, variant_id=str(product_id), quantity=2)
    assert asked.status_code == 202, asked.text
    assert asked.json()["variant"]["id"] == kilo["id"]  # as it is now
    item = await _stripe_item(world, stripe_id)
    assert (item["quantity"], item["price"]["unit_amount"]) == (2, 1500)
    assert item["price"]["metadata"]["variant_id"] == str(product_id)
    assert (
        item["price"]["recurring"]["interval"],
        item["price"]["recurring"]["interval_count"],
    ) == ("week", 2)
    row = await _until(world, sub_id, variant_id=product_id)
    assert (row["sku"], row["variant_title"], row["option_values"]) == (
        f"s-{coffee['tag']}-250",
        "250 g",
        ["250 g"],
    )
    assert (row["unit_price"], row["quantity"], row["interval"]) == (1500, 2, "week")
    renewed = await _renew(world, stripe_id)
    assert renewed["invoice"]["amount_paid"] == 3000
    assert renewed["invoice"]["lines"]["data"][0]["description"] == (
        f"2 x {row['product_name']} - 250 g"
    )
    events = await eventually(lambda: _events_at_least(world, sub_id, 2), what="the renewal")
    line = events[1]["data"]["lines"][0]
    assert (line["variant_id"], line["sku"], line["quantity"]) == (
        str(product_id),
        f"s-{coffee['tag']}-250",
        2,
    )

    # Another cadence keeps the variant (its new price carries the same metadata).
    monthly = await _change(world, shopper, sub_id, interval="month", interval_count=1)
    assert monthly.status_code == 202, monthly.text
    row = await _until(world, sub_id, interval="month")
    assert (row["variant_id"], row["sku"]) == (product_id, f"s-{coffee['tag']}-250")
    events = await eventually(lambda: _events_at_least(world, sub_id, 3), what="the new cadence")
    assert events[2]["data"]["lines"][0]["variant_id"] == str(product_id)

    # A renewal that cannot be charged: the mail to the subscriber names the variant.
    await _renew(world, stripe_id, fail=True)

    async def failed() -> list[dict[str, Any]] | None:
        return await _payment_failed_events(world, sub_id) or None

    [failure] = await eventually(failed, what="the failed renewal")
    assert (failure["data"]["product_name"], failure["data"]["variant_title"]) == (
        row["product_name"],
        "250 g",
    )
