"""Stripe's webhooks are the source of truth: verified first, handled once, never backwards.

Every webhook here is signed and sent by the Stripe stand-in over HTTP, exactly as Stripe signs
them, so checkout's real verification code runs on each.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from checkout_testkit import World, eventually, orm_handling_of_checkouts
from ember_devkit.testing.statements import (
    each_built_once,
    statement_objects_sent,
    statements_sent,
    verb,
)

CARD_OK = "4242 4242 4242 4242"
CARD_DECLINED = "4000 0000 0000 0002"
CARD_DELAYED = "4000 0000 0000 3220"


async def _started(
    world: World, *, price: int = 1800, quantity: int = 1, held: bool = False
) -> dict[str, Any]:
    shopper, product_id = await world.basket(price=price, quantity=quantity)
    response = await shopper.checkout()
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    row = await world.row(body["order_id"])
    body["stripe_session_id"] = row["stripe_session_id"]
    body["product_id"] = product_id
    body["shopper"] = shopper
    if held:
        await world.hold(row["stripe_session_id"])
    return body


async def _event(world: World, stripe_session_id: str, type_: str) -> dict[str, Any]:
    found = await world.events(stripe_session_id, type_)
    assert found, f"no {type_} event"
    return found[-1]


async def test_paying_on_the_hosted_page_pays_through_the_webhook(world: World) -> None:
    started = await _started(world, price=2100, quantity=2)
    order_id = started["order_id"]

    page = await world.http.get(started["checkout_url"])
    assert page.status_code == 200
    assert "$42.00" in page.text
    paid = await world.pay_page(started["checkout_url"], CARD_OK)

    assert paid.status_code == 303
    assert paid.headers["location"] == (
        f"http://shop.test/order/{order_id}?session_id={started['stripe_session_id']}"
    )
    row = await world.checkout_status(order_id, "paid")
    assert row["stripe_payment_intent_id"].startswith("pi_")
    assert row["paid_at"] is not None

    succeeded = await world.outbox(order_id, "payment.succeeded.v1")
    assert len(succeeded) == 1
    data = succeeded[0]["data"]
    assert data["total"] == 4200 + 600
    assert data["subtotal"] == 4200
    assert data["shipping"] == 600
    assert data["currency"] == "USD"
    assert data["email"] == "guest@example.com"
    # The line names the product and its default variant as catalog has them.
    sold = await world.stock(started["product_id"])
    assert sold["sku"]
    assert data["lines"] == [
        {
            "product_id": str(started["product_id"]),
            "slug": sold["slug"],
            "name": started["lines"][0]["name"],
            "unit_price": 2100,
            "quantity": 2,
            "image_url": "",
            "discount": 0,
            # A product sold without options: its default variant, which has its id.
            "variant_id": str(started["product_id"]),
            "sku": sold["sku"],
            "variant_title": "",
            "option_values": [],
        }
    ]
    assert data["shipping_address"]["name"] == "Ada Lovelace"
    assert data["stripe_session_id"] == started["stripe_session_id"]
    assert data["payment_intent_id"] == row["stripe_payment_intent_id"]
    # Catalog turns the reservation into a sale when the event reaches it.
    await world.reservation_status(order_id, "committed")
    status = await started["shopper"].status(order_id)
    assert status.json()["status"] == "paid"
    assert status.json()["checkout_url"] is None


async def test_the_redirect_alone_never_marks_anything_paid(world: World) -> None:
    started = await _started(world, held=True)
    order_id = started["order_id"]

    paid = await world.pay_page(started["checkout_url"], CARD_OK)
    assert paid.status_code == 303
    # The shopper lands on the success page with Stripe's session id...
    landing = await started["shopper"].status(order_id, session_id=started["stripe_session_id"])
    assert landing.json()["status"] == "open"
    assert (await world.row(order_id))["status"] == "open"
    assert await world.outbox(order_id, "payment.succeeded.v1") == []

    # ...and only the webhook pays it.
    await world.hold(started["stripe_session_id"], held=False)
    await world.checkout_status(order_id, "paid")


async def test_declined_card_leaves_the_session_open_and_expiry_releases_the_stock(
    world: World,
) -> None:
    started = await _started(world, quantity=3)
    order_id, product_id = started["order_id"], started["product_id"]
    assert (await world.stock(product_id))["available"] == 17

    declined = await world.pay_page(started["checkout_url"], CARD_DECLINED)

    assert declined.status_code == 402
    assert "Your card was declined." in declined.text
    # Stripe sends payment_intent.payment_failed; checkout records it and changes nothing.
    failed_pi = await _event(world, started["stripe_session_id"], "payment_intent.payment_failed")
    recorded = await eventually(
        lambda: world.provider_events(failed_pi["id"]), what="recorded event"
    )
    assert recorded[0]["outcome"] == "unhandled type"
    assert (await world.row(order_id))["status"] == "open"

    await world.control("POST", f"/sessions/{started['stripe_session_id']}/expire")

    await world.checkout_status(order_id, "expired")
    expired = await world.outbox(order_id, "checkout.expired.v1")
    assert len(expired) == 1
    assert expired[0]["data"]["reservation_id"] == str(
        (await world.row(order_id))["reservation_id"]
    )
    await world.reservation_status(order_id, "released")
    assert (await world.stock(product_id))["available"] == 20
    # The page is closed for good.
    assert (await world.http.get(started["checkout_url"])).status_code == 410


async def test_the_same_webhook_five_times_pays_once(world: World) -> None:
    started = await _started(world, held=True)
    order_id = started["order_id"]
    await world.pay_page(started["checkout_url"], CARD_OK)
    completed = await _event(world, started["stripe_session_id"], "checkout.session.completed")

    deliveries = await world.deliver([completed["id"]], times=5)

    assert [d["status_code"] for d in deliveries] == [200] * 5
    bodies = [httpx.Response(200, text=d["body"]).json() for d in deliveries]
    assert [b["duplicate"] for b in bodies] == [False, True, True, True, True]
    assert bodies[0]["outcome"] == "paid"
    assert len(await world.outbox(order_id, "payment.succeeded.v1")) == 1
    assert len(await world.provider_events(completed["id"])) == 1


@pytest.mark.parametrize(
    ("signature", "offset"),
    [
        ("wrong_secret", 0),  # forged: signed with another secret
        ("old_timestamp", 0),  # a replay of a delivery captured an hour ago
        ("valid", -301),  # just outside the 300 s tolerance
        ("valid", 86400),  # signed a day ahead: replayable until then otherwise
        # Ahead by more than the tolerance allows for clock skew. Not 301: the stand-in's
        # timestamp is whole seconds, so a delivery verified a second later sat on the edge.
        ("valid", 310),
        ("missing", 0),
        ("tampered", 0),  # body changed after signing
    ],
)
async def test_refused_signatures_change_nothing(world: World, signature: str, offset: int) -> None:
    started = await _started(world, held=True)
    order_id = started["order_id"]
    await world.pay_page(started["checkout_url"], CARD_OK)
    completed = await _event(world, started["stripe_session_id"], "checkout.session.completed")

    [delivery] = await world.deliver(
        [completed["id"]], signature=signature, timestamp_offset=offset
    )

    assert delivery["status_code"] == 400
    problem = httpx.Response(400, text=delivery["body"]).json()
    assert problem["type"].endswith("/invalid-signature")
    assert (await world.row(order_id))["status"] == "open"
    assert await world.provider_events(completed["id"]) == []
    assert await world.outbox(order_id, "payment.succeeded.v1") == []

    # The genuine delivery still works afterwards.
    [good] = await world.deliver([completed["id"]])
    assert good["status_code"] == 200
    assert (await world.row(order_id))["status"] == "paid"


async def test_a_plain_payment_takes_no_discount_hold_and_one_statement_per_event(
    world: World,
) -> None:
    """A checkout started without a code holds no use of one, so its paid webhook does not
    look for a hold; and its event is written and announced to the relay in one statement."""
    started = await _started(world, held=True)
    order_id = started["order_id"]
    await world.pay_page(started["checkout_url"], CARD_OK)
    completed = await _event(world, started["stripe_session_id"], "checkout.session.completed")

    def every(statement: str, _parameters: Any, _connection: Any) -> str:
        return " ".join(statement.split())

    with statements_sent(world.apps["checkout"].state.db_engine, every) as statements:
        [delivery] = await world.deliver([completed["id"]])

    assert delivery["status_code"] == 200
    assert (await world.row(order_id))["status"] == "paid"
    assert len(await world.outbox(order_id, "payment.succeeded.v1")) == 1
    assert not [s for s in statements if "discount_holds" in s]
    written = [s for s in statements if "INSERT INTO checkout.outbox_events" in s]
    assert len(written) == 1
    assert "pg_notify" in written[0]
    assert not [s for s in statements if s.startswith("SELECT pg_notify")]


async def test_a_payment_is_claimed_with_its_outcome_in_one_statement(world: World) -> None:
    """A Checkout Session's event locks its row first, so its claim is written with the outcome
    and the checkout it moved: no second statement on ``provider_events`` to record them (an
    INSERT and an UPDATE before). Deliveries of the same event at once still pay once."""
    started = await _started(world, held=True)
    order_id = started["order_id"]
    await world.pay_page(started["checkout_url"], CARD_OK)
    completed = await _event(world, started["stripe_session_id"], "checkout.session.completed")

    def on_provider_events(statement: str, _parameters: Any, _connection: Any) -> str | None:
        if "checkout.provider_events" not in statement:
            return None
        return "claim" if "INSERT INTO checkout.provider_events" in statement else verb(statement)

    with statements_sent(world.apps["checkout"].state.db_engine, on_provider_events) as sent:
        [delivery] = await world.deliver([completed["id"]])

    assert delivery["status_code"] == 200
    assert httpx.Response(200, text=delivery["body"]).json()["outcome"] == "paid"
    assert sent == ["claim"]
    [claimed] = await world.provider_events(completed["id"])
    row = await world.row(order_id)
    assert (claimed["outcome"], claimed["checkout_session_id"]) == ("paid", row["id"])
    assert row["status"] == "paid"

    # The same event again, several at once: each waits for the row, finds it claimed.
    again = await asyncio.gather(*(world.deliver([completed["id"]]) for _ in range(4)))
    bodies = [httpx.Response(200, text=d["body"]).json() for [d] in again]
    assert [b["duplicate"] for b in bodies] == [True] * 4
    assert len(await world.outbox(order_id, "payment.succeeded.v1")) == 1


async def test_a_webhooks_lock_and_claim_are_built_once(world: World) -> None:
    """The row's lock and the event's claim are one statement object each for every delivery
    (their cache keys memoized on them): both were built again for each, the claim with its
    values in it, walked for its key every time."""
    started = await _started(world, held=True)
    await world.pay_page(started["checkout_url"], CARD_OK)
    completed = await _event(world, started["stripe_session_id"], "checkout.session.completed")

    def kind_of(flat: str) -> str | None:
        if flat.startswith("INSERT INTO checkout.provider_events"):
            return "claim"
        if flat.startswith("WITH claimed AS (INSERT INTO checkout.provider_events"):
            return "claim with the move"
        locks_the_row = flat.startswith("SELECT") and flat.endswith("FOR UPDATE")
        if locks_the_row and "checkout_sessions.stripe_session_id =" in flat:
            return "lock"
        return None

    with statement_objects_sent(world.apps["checkout"].state.db_engine, kind_of) as sent:
        outcomes = []
        for _ in range(3):  # the first pays; the others find it claimed
            [delivery] = await world.deliver([completed["id"]])
            outcomes.append(httpx.Response(200, text=delivery["body"]).json()["outcome"])
    assert outcomes == ["paid", "duplicate", "duplicate"]
    # The first claims with its move; the others, moving nothing, claim alone (and find it).
    assert each_built_once(sent, {"lock"}, 3), sent
    assert each_built_once(sent, {"claim"}, 2), sent
    assert len(sent["claim with the move"]) == 1, sent


async def test_concurrent_first_deliveries_pay_once(world: World) -> None:
    started = await _started(world, held=True)
    order_id = started["order_id"]
    await world.pay_page(started["checkout_url"], CARD_OK)
    completed = await _event(world, started["stripe_session_id"], "checkout.session.completed")

    deliveries = await asyncio.gather(*(world.deliver([completed["id"]]) for _ in range(4)))

    bodies = [httpx.Response(200, text=d["body"]).json() for [d] in deliveries]
    assert sorted(b["duplicate"] for b in bodies) == [False, True, True, True]
    assert [b["outcome"] for b in bodies if not b["duplicate"]] == ["paid"]
    assert len(await world.outbox(order_id, "payment.succeeded.v1")) == 1
    [claimed] = await world.provider_events(completed["id"])
    assert claimed["outcome"] == "paid"


async def test_unsigned_garbage_is_a_problem(world: World) -> None:
    for body, headers in [
        (b"", {}),
        (b"not json", {"Stripe-Signature": "t=1,v1=abc"}),
        (b"{}", {"Stripe-Signature": "nonsense"}),
    ]:
        response = await world.http.post(
            f"{world.checkout_url}/api/webhooks/stripe", content=body, headers=headers
        )
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_expired_after_paid_is_ignored(world: World) -> None:
    started = await _started(world, held=True)
    order_id, stripe_id = started["order_id"], started["stripe_session_id"]
    await world.pay_page(started["checkout_url"], CARD_OK)
    completed = await _event(world, stripe_id, "checkout.session.completed")
    stale = await world.control(
        "POST",
        "/events",
        json={
            "type": "checkout.session.expired",
            "session_id": stripe_id,
            "overrides": {"status": "expired", "payment_status": "unpaid"},
        },
    )

    answers = await world.deliver([completed["id"], stale["id"]])

    assert [a["status_code"] for a in answers] == [200, 200]
    assert httpx.Response(200, text=answers[1]["body"]).json()["outcome"].startswith("ignored")
    assert (await world.row(order_id))["status"] == "paid"
    assert await world.outbox(order_id, "checkout.expired.v1") == []
    await world.reservation_status(order_id, "committed")


async def test_a_payment_after_expiry_is_honoured_and_flagged(world: World) -> None:
    started = await _started(world, held=True)
    order_id, stripe_id = started["order_id"], started["stripe_session_id"]
    await world.pay_page(started["checkout_url"], CARD_OK)
    completed = await _event(world, stripe_id, "checkout.session.completed")
    expired = await world.control(
        "POST",
        "/events",
        json={
            "type": "checkout.session.expired",
            "session_id": stripe_id,
            "overrides": {"status": "expired", "payment_status": "unpaid"},
        },
    )

    answers = await world.deliver([expired["id"], completed["id"]])

    assert [a["status_code"] for a in answers] == [200, 200]
    # Expired first: its stock went back to catalog...
    assert len(await world.outbox(order_id, "checkout.expired.v1")) == 1
    # ...then Stripe says the money was taken: that is honoured, and flagged for staff.
    row = await world.row(order_id)
    assert row["status"] == "paid"
    assert "ship or refund" in row["attention"]
    [succeeded] = await world.outbox(order_id, "payment.succeeded.v1")
    # Orders is told too, so the flag is not kept where no screen shows it.
    assert succeeded["data"]["attention"] == row["attention"]
    # Catalog sells it again while the stock is there (never below zero).
    await world.reservation_status(order_id, "committed")
    assert (await world.stock(started["product_id"]))["available"] == 19
    # And a late expiry changes nothing now.
    [late] = await world.deliver([expired["id"]])
    assert httpx.Response(200, text=late["body"]).json()["duplicate"] is True
    assert (await world.row(order_id))["status"] == "paid"


async def test_delayed_payment_settles_forward_even_out_of_order(world: World) -> None:
    started = await _started(world, held=True)
    order_id, stripe_id = started["order_id"], started["stripe_session_id"]
    paid = await world.pay_page(started["checkout_url"], CARD_DELAYED)
    assert paid.status_code == 303
    await world.control("POST", f"/sessions/{stripe_id}/settle", json={"outcome": "succeeded"})
    completed = await _event(world, stripe_id, "checkout.session.completed")
    succeeded = await _event(world, stripe_id, "checkout.session.async_payment_succeeded")
    assert completed["data"]["object"]["payment_status"] == "unpaid"

    # The settlement arrives first, the (unpaid) completion after it: still paid.
    answers = await world.deliver([succeeded["id"], completed["id"]])

    assert [a["status_code"] for a in answers] == [200, 200]
    assert (await world.row(order_id))["status"] == "paid"
    assert len(await world.outbox(order_id, "payment.succeeded.v1")) == 1


async def test_delayed_payment_pending_then_failed_releases_the_stock(world: World) -> None:
    started = await _started(world, quantity=2)
    order_id, stripe_id = started["order_id"], started["stripe_session_id"]
    await world.pay_page(started["checkout_url"], CARD_DELAYED)
    await world.checkout_status(order_id, "payment_pending")
    assert (await world.reservation(order_id))["status"] == "active"  # type: ignore[index]

    await world.control("POST", f"/sessions/{stripe_id}/settle", json={"outcome": "failed"})

    await world.checkout_status(order_id, "payment_failed")
    failed = await world.outbox(order_id, "payment.failed.v1")
    assert len(failed) == 1
    assert failed[0]["data"]["email"] == "guest@example.com"
    await world.reservation_status(order_id, "released")
    assert (await world.stock(started["product_id"]))["available"] == 20


async def test_refunds_move_paid_forward_and_tell_the_others(world: World) -> None:
    started = await _started(world, price=2000)
    order_id = started["order_id"]
    await world.pay_page(started["checkout_url"], CARD_OK)
    await world.checkout_status(order_id, "paid")
    refund_url = f"{world.checkout_url}/internal/checkout/orders/{order_id}/refund"

    unauthorised = await world.http.post(
        refund_url, json={"amount": 500, "idempotency_key": "refund-one"}
    )
    assert unauthorised.status_code == 401
    partial = await world.http.post(
        refund_url,
        json={"amount": 500, "idempotency_key": "refund-one"},
        headers=world.service_headers(),
    )
    assert partial.status_code == 202, partial.text
    again = await world.http.post(
        refund_url,
        json={"amount": 500, "idempotency_key": "refund-one"},
        headers=world.service_headers(),
    )
    assert again.json()["refund_id"] == partial.json()["refund_id"]  # one refund, not two

    row = await world.checkout_status(order_id, "partially_refunded")
    assert row["amount_refunded"] == 500
    too_much = await world.http.post(
        refund_url,
        json={"amount": 99_999, "idempotency_key": "refund-two"},
        headers=world.service_headers(),
    )
    assert too_much.status_code == 409

    rest = await world.http.post(
        refund_url, json={"idempotency_key": "refund-rest"}, headers=world.service_headers()
    )
    assert rest.status_code == 202, rest.text
    row = await world.checkout_status(order_id, "refunded")
    assert row["amount_refunded"] == 2600
    refunds = [e["data"] for e in await world.outbox(order_id, "payment.refunded.v1")]
    assert [(r["amount_refunded"], r["fully_refunded"]) for r in refunds] == [
        (500, False),
        (2600, True),
    ]


async def test_a_refund_that_overtakes_its_payment_is_retried_until_it_fits(world: World) -> None:
    started = await _started(world, held=True)
    order_id, stripe_id = started["order_id"], started["stripe_session_id"]
    await world.pay_page(started["checkout_url"], CARD_OK)
    intent = (await world.stripe_session(stripe_id))["session"]["payment_intent"]
    refund = await world.http.post(
        f"{world.standin_url}/v1/refunds",
        data={"payment_intent": intent},
        headers={"Authorization": "Bearer sk_test_ember_local"},
    )
    assert refund.status_code == 200, refund.text
    refunded = await _event(world, stripe_id, "charge.refunded")
    completed = await _event(world, stripe_id, "checkout.session.completed")

    first = await world.deliver([refunded["id"], completed["id"]])
    assert [d["status_code"] for d in first] == [409, 200]
    assert (
        await world.provider_events(refunded["id"]) == []
    )  # not recorded: Stripe will send it again

    [again] = await world.deliver([refunded["id"]])
    assert again["status_code"] == 200
    assert (await world.row(order_id))["status"] == "refunded"


async def test_automatic_delivery_retries_until_checkout_answers(world: World) -> None:
    """A delivery that fails (here: a refund before its payment) is retried with backoff."""
    started = await _started(world, held=True)
    stripe_id = started["stripe_session_id"]
    await world.pay_page(started["checkout_url"], CARD_OK)
    completed = await _event(world, stripe_id, "checkout.session.completed")
    intent = (await world.stripe_session(stripe_id))["session"]["payment_intent"]
    await world.http.post(
        f"{world.standin_url}/v1/refunds",
        data={"payment_intent": intent},
        headers={"Authorization": "Bearer sk_test_ember_local"},
    )
    refunded = await _event(world, stripe_id, "charge.refunded")

    await world.control("POST", f"/events/{refunded['id']}/send")

    async def refused_twice() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = (
            await world.control("GET", "/deliveries", params={"event_id": refunded["id"]})
        )["data"]
        return found if len(found) >= 2 else None

    attempts = await eventually(refused_twice, what="two refused attempts")
    assert [a["status_code"] for a in attempts[:2]] == [409, 409]
    await world.deliver([completed["id"]])
    await world.checkout_status(started["order_id"], "refunded")
    attempts = (await world.control("GET", "/deliveries", params={"event_id": refunded["id"]}))[
        "data"
    ]
    assert attempts[-1]["status_code"] == 200
    assert attempts[-1]["attempt"] >= 3


async def test_events_for_other_sessions_and_types_are_recorded_and_ignored(world: World) -> None:
    started = await _started(world, held=True)
    stripe_id = started["stripe_session_id"]
    other = await world.control(
        "POST",
        "/events",
        json={
            "type": "checkout.session.completed",
            "session_id": stripe_id,
            "overrides": {"id": "cs_test_someone_else", "payment_status": "paid"},
        },
    )
    [answer] = await world.deliver([other["id"]])
    assert answer["status_code"] == 200
    assert (await world.provider_events(other["id"]))[0][
        "outcome"
    ] == "ignored: not a session of ours"
    assert (await world.row(started["order_id"]))["status"] == "open"


def test_the_local_stripe_endpoint_listens_for_what_checkout_acts_on() -> None:
    """``make run``'s stand-in endpoint and the README's ``stripe listen --events`` list name
    every type checkout acts on, and nothing else (the rest would only be noted)."""
    from pathlib import Path

    from checkout.subscriptions.webhooks import SUBSCRIPTION_TYPES
    from checkout.webhooks.services import HANDLED_TYPES
    from ember_devkit.devstack.environment import STRIPE_EVENTS_CHECKOUT_ACTS_ON

    acts_on = HANDLED_TYPES | SUBSCRIPTION_TYPES
    assert set(STRIPE_EVENTS_CHECKOUT_ACTS_ON) == acts_on
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    listed = readme.split("--events\n", 1)[1].split("`", 1)[0].strip()
    assert set(listed.split(",")) == acts_on


async def test_a_payment_moves_its_checkout_by_core_statements_built_once(world: World) -> None:
    """A Checkout Session's webhook locks its row and writes the move with the event's claim,
    by statements built once on the table: the ORM loads no checkout and flushes none (its
    loading, identity map and unit of work cost as much as the statements did), no statement
    of its own writes the row, and the row ends as it did."""
    paid: list[dict[str, Any]] = []
    for price in (1300, 1400):
        started = await _started(world, price=price, held=True)
        await world.pay_page(started["checkout_url"], CARD_OK)
        started["completed"] = await _event(
            world, started["stripe_session_id"], "checkout.session.completed"
        )
        paid.append(started)

    def kind_of(flat: str) -> str | None:
        if flat.startswith("UPDATE checkout.checkout_sessions SET"):
            return "move alone"
        claims = flat.startswith("WITH claimed AS (INSERT INTO checkout.provider_events")
        return (
            "claim with the move"
            if claims and "UPDATE checkout.checkout_sessions" in flat
            else None
        )

    engine = world.apps["checkout"].state.db_engine
    with orm_handling_of_checkouts() as orm, statement_objects_sent(engine, kind_of) as sent:
        for started in paid:
            [delivery] = await world.deliver([started["completed"]["id"]])
            assert httpx.Response(200, text=delivery["body"]).json()["outcome"] == "paid"
    assert orm == []
    assert each_built_once(sent, {"claim with the move"}, 2), sent
    assert "move alone" not in sent
    for started in paid:
        row = await world.row(started["order_id"])
        assert row["status"] == "paid"
        assert row["paid_at"] is not None
        assert row["closed_at"] == row["paid_at"]
        assert row["updated_at"] > row["created_at"]
        assert row["stripe_payment_intent_id"]
        assert len(await world.outbox(started["order_id"], "payment.succeeded.v1")) == 1
