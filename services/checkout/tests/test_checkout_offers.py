"""Shipping rates, discount codes and Stripe Tax at checkout, against the real apps and the
Stripe stand-in: what Stripe charges is what the checkout records, and a code is never used
beyond its limit."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from checkout.offers.services import HOLD_GRACE, AppliedDiscount, hold_use, sweep_holds
from checkout.reconciliation.services import reconcile_once
from checkout_testkit import Shopper, World
from sqlalchemy import text

CARD_OK = "4242 4242 4242 4242"
CALIFORNIA = {
    "name": "Grace Hopper",
    "line1": "1 Capitol Mall",
    "city": "Sacramento",
    "state": "CA",
    "postal_code": "95814",
    "country": "US",
}


@pytest.fixture(autouse=True)
async def leaves_no_checkout_open(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    """Each guest here checks out under an email of its own, and the checkouts a test leaves
    open are expired after it: the suite's later tests share one client address and its
    budget of held stock."""
    original = Shopper.checkout

    async def checkout(self: Shopper, **body: Any) -> httpx.Response:
        if self.token is None:
            body.setdefault("email", f"offers-{uuid.uuid4().hex[:10]}@example.com")
        return await original(self, **body)

    monkeypatch.setattr(Shopper, "checkout", checkout)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    yield
    async with world.engine.connect() as connection:
        left = (
            await connection.execute(
                text(
                    "SELECT order_id, stripe_session_id FROM checkout.checkout_sessions"
                    " WHERE status = 'open' AND created_at >= :since"
                ),
                {"since": since},
            )
        ).all()
    for _, stripe_session_id in left:
        await world.control("POST", f"/sessions/{stripe_session_id}/expire")
    for order_id, _ in left:
        await world.checkout_status(str(order_id), "expired")


@pytest.fixture
async def rates(world: World) -> AsyncIterator[dict[str, Any]]:
    """Standard everywhere (600, free from 5000) and express to GB and US only (1500)."""
    made = {}
    for body in (
        {"code": "standard", "name": "Standard", "price": 600, "free_over": 5000, "position": 0},
        {
            "code": "express",
            "name": "Express",
            "price": 1500,
            "countries": ["GB", "US"],
            "position": 1,
            "min_days": 1,
            "max_days": 2,
        },
    ):
        response = await world.http.post(
            f"{world.checkout_url}/api/checkout/admin/shipping-rates/",
            json=body,
            headers=world.admin_headers(),
        )
        assert response.status_code == 201, response.text
        made[body["code"]] = response.json()
    yield made
    # Other tests price shipping from the settings' flat rate, which rates replace.
    async with world.engine.begin() as connection:
        await connection.execute(text("DELETE FROM checkout.shipping_rates"))


@pytest.fixture
def tax_on() -> Iterator[None]:
    os.environ["CHECKOUT_TAX"] = "true"
    yield
    os.environ["CHECKOUT_TAX"] = "false"


async def code(world: World, **body: Any) -> dict[str, Any]:
    body.setdefault("code", f"C{uuid.uuid4().hex[:10].upper()}")
    response = await world.http.post(
        f"{world.checkout_url}/api/checkout/admin/discount-codes/",
        json=body,
        headers=world.admin_headers(),
    )
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


async def code_state(world: World, code_id: str) -> dict[str, Any]:
    response = await world.http.get(
        f"{world.checkout_url}/api/checkout/admin/discount-codes/{code_id}",
        headers=world.admin_headers(),
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_the_shopper_picks_a_rate_that_ships_there_and_it_reaches_stripe(
    world: World, rates: dict[str, Any]
) -> None:
    shopper, _ = await world.basket(price=1800, quantity=1)
    to_gb = await shopper.http.get(
        f"{world.checkout_url}/api/checkout/shipping-options", params={"country": "GB"}
    )
    assert to_gb.status_code == 200, to_gb.text
    assert [(o["code"], o["amount"]) for o in to_gb.json()["options"]] == [
        ("standard", 600),
        ("express", 1500),
    ]
    to_fr = await shopper.http.get(
        f"{world.checkout_url}/api/checkout/shipping-options", params={"country": "FR"}
    )
    assert [o["code"] for o in to_fr.json()["options"]] == ["standard"]

    refused = await shopper.checkout(
        shipping_rate="express", shipping_address={**CALIFORNIA, "country": "FR"}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"].endswith("shipping-rate-unavailable")

    started = await shopper.checkout(shipping_rate="express", expected_total=1800 + 1500)
    assert started.status_code == 201, started.text
    body = started.json()
    assert (body["shipping"], body["shipping_rate"], body["shipping_name"]) == (
        1500,
        "express",
        "Express",
    )
    assert body["total"] == 3300
    row = await world.row(body["order_id"])
    stripe_session = (await world.stripe_session(row["stripe_session_id"]))["session"]
    assert stripe_session["shipping_cost"]["display_name"] == "Express"
    assert stripe_session["total_details"]["amount_shipping"] == 1500
    assert stripe_session["amount_total"] == row["total"] == 3300

    # A subtotal over the threshold ships standard for free.
    rich, _ = await world.basket(price=2600, quantity=2)
    free = await rich.checkout()
    assert free.status_code == 201, free.text
    assert (free.json()["shipping"], free.json()["shipping_rate"]) == (0, "standard")


async def test_a_code_is_charged_by_stripe_as_recorded_and_counted_when_paid(
    world: World,
) -> None:
    ten = await code(world, percent_off=10, max_uses=5)
    first, product_id = await world.basket(price=1250, quantity=2)
    other = await world.product(price=999)
    await first.add(other, 1)

    quote = await first.http.get(
        f"{world.checkout_url}/api/checkout/quote", params={"discount_code": ten["code"].lower()}
    )
    assert quote.status_code == 200, quote.text
    assert quote.json()["discount"] == 350  # 10 % of 3499, rounded half up
    # The total the shopper saw, discount included, is the one confirmed.
    started = await first.checkout(
        discount_code=ten["code"].lower(), expected_total=3499 - 350 + 600
    )
    assert started.status_code == 201, started.text
    body = started.json()
    assert (body["discount"], body["discount_code"], body["total"]) == (350, ten["code"], 3749)
    assert sum(line["discount"] for line in body["lines"]) == 350
    assert {line["product_id"]: line["discount"] for line in body["lines"]} == {
        str(product_id): 250,
        str(other): 100,
    }
    row = await world.row(body["order_id"])
    stripe_session = (await world.stripe_session(row["stripe_session_id"]))["session"]
    assert stripe_session["total_details"]["amount_discount"] == 350
    assert stripe_session["amount_total"] == row["total"] == 3749
    assert len(stripe_session["discounts"]) == 1
    assert (await code_state(world, ten["id"]))["holds"] == 1

    paid = await world.pay_page(body["checkout_url"], CARD_OK)
    assert paid.status_code == 303
    await world.checkout_status(body["order_id"], "paid")
    state = await code_state(world, ten["id"])
    assert (state["uses"], state["holds"]) == (1, 0)
    [event] = await world.outbox(body["order_id"], "payment.succeeded.v1")
    assert (event["data"]["discount"], event["data"]["discount_code"]) == (350, ten["code"])
    assert sorted(line["discount"] for line in event["data"]["lines"]) == [100, 250]


async def test_an_expired_checkout_gives_its_use_back(world: World) -> None:
    one = await code(world, amount_off=500, max_uses=1)
    shopper, _ = await world.basket(price=1800)
    started = await shopper.checkout(discount_code=one["code"])
    assert started.status_code == 201, started.text
    assert started.json()["total"] == 1800 - 500 + 600

    late, _ = await world.basket(price=1800)
    refused = await late.checkout(discount_code=one["code"])
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"].endswith("discount-code-used-up")

    row = await world.row(started.json()["order_id"])
    await world.control("POST", f"/sessions/{row['stripe_session_id']}/expire")
    await world.checkout_status(started.json()["order_id"], "expired")
    assert (await code_state(world, one["id"]))["holds"] == 0
    again = await late.checkout(discount_code=one["code"])
    assert again.status_code == 201, again.text


async def category(world: World) -> str:
    response = await world.http.post(
        f"{world.catalog_url}/api/admin/categories",
        json={"name": f"Beans {uuid.uuid4().hex[:8]}"},
        headers=world.admin_headers(),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def product_in(world: World, category_id: str, price: int) -> uuid.UUID:
    response = await world.http.post(
        f"{world.catalog_url}/api/admin/products/",
        json={
            "name": f"Test Coffee {uuid.uuid4().hex[:8]}",
            "price": price,
            "on_hand": 20,
            "currency": "USD",
            "category_id": category_id,
        },
        headers=world.admin_headers(),
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def test_a_code_for_a_category_takes_money_off_only_its_lines(world: World) -> None:
    espresso, filter_ = await category(world), await category(world)
    listed = await code(world, percent_off=20, category_ids=[espresso])
    assert listed["category_ids"] == [espresso]
    in_it = await product_in(world, espresso, 2000)
    elsewhere = await product_in(world, filter_, 1500)
    uncategorised = await world.product(price=700)
    # A product named by id counts too, whatever its category.
    both = await code(world, amount_off=900, category_ids=[espresso], product_ids=[str(elsewhere)])

    shopper = world.guest()
    for product_id in (in_it, elsewhere, uncategorised):
        await shopper.add(product_id, 1)
    quote = await shopper.http.get(
        f"{world.checkout_url}/api/checkout/quote", params={"discount_code": both["code"]}
    )
    assert quote.status_code == 200, quote.text
    by_product = {line["product_id"]: line["discount"] for line in quote.json()["lines"]}
    # 900 spread over 2000 and 1500 (the 700 line is neither listed nor in the category).
    assert by_product == {str(in_it): 514, str(elsewhere): 386, str(uncategorised): 0}

    started = await shopper.checkout(discount_code=listed["code"], expected_total=4200 - 400 + 600)
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["discount"] == 400  # 20 % of the espresso's 2000 only
    assert {line["product_id"]: line["discount"] for line in body["lines"]} == {
        str(in_it): 400,
        str(elsewhere): 0,
        str(uncategorised): 0,
    }
    row = await world.row(body["order_id"])
    stripe_session = (await world.stripe_session(row["stripe_session_id"]))["session"]
    assert stripe_session["total_details"]["amount_discount"] == 400
    assert stripe_session["amount_total"] == row["total"] == body["total"] == 4400
    await world.pay_page(body["checkout_url"], CARD_OK)
    await world.checkout_status(body["order_id"], "paid")
    [event] = await world.outbox(body["order_id"], "payment.succeeded.v1")
    assert event["data"]["discount"] == 400
    assert (await code_state(world, listed["id"]))["uses"] == 1

    # Nothing in the cart is of the category: a clear problem naming what the code is for.
    other = world.guest()
    await other.add(elsewhere, 2)
    refused = await other.checkout(discount_code=listed["code"])
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["type"].endswith("discount-code-not-applicable")
    assert problem["category_ids"] == [espresso]
    assert listed["code"] in problem["detail"]

    # Staff change the categories it is for: now the filter coffee is eligible.
    changed = await world.http.patch(
        f"{world.checkout_url}/api/checkout/admin/discount-codes/{listed['id']}",
        json={"category_ids": [filter_, filter_]},
        headers=world.admin_headers(),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["category_ids"] == [filter_]
    requote = await other.http.get(
        f"{world.checkout_url}/api/checkout/quote", params={"discount_code": listed["code"]}
    )
    assert requote.status_code == 200, requote.text
    assert requote.json()["discount"] == 600

    # And what it takes off, of the other kind: an amount instead of a percentage.
    admin = f"{world.checkout_url}/api/checkout/admin/discount-codes/{listed['id']}"
    both_kinds = await world.http.patch(
        admin, json={"percent_off": 5, "amount_off": 250}, headers=world.admin_headers()
    )
    assert both_kinds.status_code == 422, both_kinds.text
    assert both_kinds.json()["errors"][0]["key"] == "percent_off"
    amount = await world.http.patch(admin, json={"amount_off": 250}, headers=world.admin_headers())
    assert amount.status_code == 200, amount.text
    assert (amount.json()["percent_off"], amount.json()["amount_off"]) == (None, 250)
    requote = await other.http.get(
        f"{world.checkout_url}/api/checkout/quote", params={"discount_code": listed["code"]}
    )
    assert requote.json()["discount"] == 250


async def test_staff_remove_a_codes_window_and_limits_with_null(world: World) -> None:
    """null removes a date or a limit (the code then has none); a field left out stays; null
    for another field changes nothing."""
    now = dt.datetime.now(dt.UTC)
    made = await code(
        world,
        percent_off=10,
        starts_at=(now - dt.timedelta(days=1)).isoformat(),
        ends_at=(now - dt.timedelta(minutes=1)).isoformat(),
        max_uses=3,
        max_uses_per_customer=1,
    )
    shopper, _ = await world.basket(price=2000)
    expired = await shopper.http.get(
        f"{world.checkout_url}/api/checkout/quote", params={"discount_code": made["code"]}
    )
    assert expired.json()["type"].endswith("discount-code-expired"), expired.text
    admin = f"{world.checkout_url}/api/checkout/admin/discount-codes/{made['id']}"

    cleared = await world.http.patch(
        admin,
        json={"ends_at": None, "max_uses": None, "percent_off": None},
        headers=world.admin_headers(),
    )

    assert cleared.status_code == 200, cleared.text
    after = cleared.json()
    assert (after["ends_at"], after["max_uses"]) == (None, None)
    assert after["starts_at"] is not None
    assert after["max_uses_per_customer"] == 1
    assert after["percent_off"] == 10
    quote = await shopper.http.get(
        f"{world.checkout_url}/api/checkout/quote", params={"discount_code": made["code"]}
    )
    assert quote.status_code == 200, quote.text
    assert quote.json()["discount"] == 200


async def test_each_way_a_code_can_fail_is_a_clear_problem(world: World) -> None:
    now = dt.datetime.now(dt.UTC)
    shopper, product_id = await world.basket(price=1800)
    cases = {
        "discount-code-unknown": "NO-SUCH-CODE",
        "discount-code-expired": (await code(world, percent_off=5, ends_at=now.isoformat()))[
            "code"
        ],
        "discount-code-not-yet-valid": (
            await code(world, percent_off=5, starts_at=(now + dt.timedelta(days=1)).isoformat())
        )["code"],
        "discount-code-minimum-not-met": (await code(world, percent_off=5, min_subtotal=5000))[
            "code"
        ],
        "discount-code-not-applicable": (
            await code(world, percent_off=5, product_ids=[str(uuid.uuid4())])
        )["code"],
    }
    for kind, text_ in cases.items():
        response = await shopper.checkout(discount_code=text_)
        assert response.status_code == 422, (kind, response.text)
        problem = response.json()
        assert problem["type"].endswith(kind), (kind, problem)
        assert response.headers["content-type"].startswith("application/problem+json")
    minimum = await shopper.checkout(discount_code=cases["discount-code-minimum-not-met"])
    assert (minimum.json()["min_subtotal"], minimum.json()["subtotal"]) == (5000, 1800)

    # Only for the products it names: the other lines keep their price.
    only = await code(world, amount_off=300, product_ids=[str(product_id)])
    other = await world.product(price=700)
    await shopper.add(other, 1)
    started = await shopper.checkout(discount_code=only["code"])
    assert started.status_code == 201, started.text
    lines = {line["product_id"]: line["discount"] for line in started.json()["lines"]}
    assert lines == {str(product_id): 300, str(other): 0}

    first_only = await code(world, percent_off=20, first_order_only=True)
    member = world.customer()
    await member.add(await world.product(price=1000), 1)
    fresh = await member.checkout(discount_code=first_only["code"])
    assert fresh.status_code == 201, fresh.text
    await world.pay_page(fresh.json()["checkout_url"], CARD_OK)
    await world.checkout_status(fresh.json()["order_id"], "paid")
    await member.add(await world.product(price=1000), 1)
    second = await member.checkout(discount_code=first_only["code"])
    assert second.status_code == 422, second.text
    assert second.json()["type"].endswith("discount-code-first-order-only")

    per_customer = await code(world, percent_off=5, max_uses_per_customer=1)
    buyer = world.customer()
    await buyer.add(await world.product(price=1000), 1)
    assert (await buyer.checkout(discount_code=per_customer["code"])).status_code == 201
    await buyer.add(await world.product(price=1000), 1)
    twice = await buyer.checkout(discount_code=per_customer["code"])
    assert twice.status_code == 409, twice.text
    assert twice.json()["per_customer"] is True


@pytest.fixture
def roomy(world: World) -> Iterator[None]:
    """Fifty guests behind one address hold fifty units: more than one client's usual budget."""
    state = world.apps["checkout"].state
    usual = state.checkout_settings
    state.checkout_settings = replace(usual, max_held_units=1000)
    yield
    state.checkout_settings = usual


async def test_fifty_shoppers_race_for_a_code_of_ten_uses(world: World, roomy: None) -> None:
    limited = await code(world, percent_off=15, max_uses=10)
    product_id = await world.product(price=2000, on_hand=100)
    shoppers = [world.guest() for _ in range(50)]
    for shopper in shoppers:
        # Fifty checkouts at once on a shared machine: each may wait its turn a while.
        shopper.http.timeout = httpx.Timeout(90.0)
        await shopper.add(product_id, 1)

    answers = await asyncio.gather(
        *(shopper.checkout(discount_code=limited["code"]) for shopper in shoppers)
    )

    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(201) == 10, [a.text for a in answers if a.status_code != 409][:3]
    assert statuses.count(409) == 40
    assert all(
        a.json()["type"].endswith("discount-code-used-up") for a in answers if a.status_code == 409
    )
    state = await code_state(world, limited["id"])
    assert (state["uses"], state["holds"]) == (0, 10)
    won = [a.json() for a in answers if a.status_code == 201]
    for body in won:
        await world.pay_page(body["checkout_url"], CARD_OK)
    for body in won:
        await world.checkout_status(body["order_id"], "paid")
    state = await code_state(world, limited["id"])
    assert (state["uses"], state["holds"]) == (10, 0)
    # The database itself refuses an eleventh, whatever code would try.
    async with world.engine.connect() as connection:
        with pytest.raises(Exception, match="ck_discount_codes_uses_within_limit"):
            await connection.execute(
                text("UPDATE checkout.discount_codes SET uses = uses + 1 WHERE id = :i"),
                {"i": limited["id"]},
            )


async def test_stripe_tax_is_charged_and_recorded(world: World, tax_on: None) -> None:
    ten = await code(world, amount_off=1000)
    shopper, _ = await world.basket(price=2000, quantity=2)
    # The shopper confirms the total before tax: Stripe Tax adds it once it has the address.
    started = await shopper.checkout(
        shipping_address=CALIFORNIA, discount_code=ten["code"], expected_total=4000 - 1000 + 600
    )
    assert started.status_code == 201, started.text
    body = started.json()
    # 7.25 % of 3000 (217.5 -> 218) and of 600 shipping (43.5 -> 44), Stripe's rounding.
    assert body["tax"] == 218 + 44
    assert body["total"] == 4000 - 1000 + 600 + 262
    row = await world.row(body["order_id"])
    assert (row["tax"], row["total"]) == (262, body["total"])
    stripe_session = (await world.stripe_session(row["stripe_session_id"]))["session"]
    assert stripe_session["automatic_tax"]["enabled"] is True
    assert stripe_session["customer"].startswith("cus_")
    assert stripe_session["amount_total"] == row["total"]

    await world.pay_page(body["checkout_url"], CARD_OK)
    await world.checkout_status(body["order_id"], "paid")
    [event] = await world.outbox(body["order_id"], "payment.succeeded.v1")
    assert (event["data"]["tax"], event["data"]["total"]) == (262, row["total"])


async def test_the_demo_rates_are_seeded_once_into_an_empty_table(world: World) -> None:
    from checkout.seed import DEMO_RATES, seed_rates

    try:
        assert await seed_rates() == len(DEMO_RATES)
        assert await seed_rates() == 0
        shopper, _ = await world.basket(price=1800)
        to_us = await shopper.http.get(
            f"{world.checkout_url}/api/checkout/shipping-options", params={"country": "US"}
        )
        assert [(o["code"], o["amount"]) for o in to_us.json()["options"]] == [
            ("standard", 600),
            ("express", 1500),
        ]
    finally:
        async with world.engine.begin() as connection:
            await connection.execute(text("DELETE FROM checkout.shipping_rates"))


async def test_a_hold_whose_checkout_never_got_written_lapses(world: World) -> None:
    one = await code(world, percent_off=10, max_uses=1)
    # A start that died after taking the use (its process killed): a hold, no checkout.
    async with world.engine.begin() as connection:
        await connection.execute(
            text("UPDATE checkout.discount_codes SET holds = 1 WHERE id = :i"), {"i": one["id"]}
        )
        await connection.execute(
            text(
                "INSERT INTO checkout.discount_holds"
                " (id, code_id, order_id, customer, status, amount, expires_at)"
                " VALUES (gen_random_uuid(), :i, gen_random_uuid(), 'email:x@example.com',"
                " 'held', 100, now() - interval '1 second')"
            ),
            {"i": one["id"]},
        )
    shopper, _ = await world.basket(price=1800)
    started = await shopper.checkout(discount_code=one["code"])
    assert started.status_code == 201, started.text
    state = await code_state(world, one["id"])
    assert (state["uses"], state["holds"]) == (0, 1)


async def test_uses_held_by_checkouts_that_will_not_be_paid_come_back_on_their_own(
    world: World,
) -> None:
    """No later use of the code is needed: the reconciler's pass gives back the uses of a start
    that died before writing its checkout, and of a checkout expired at Stripe whose webhook
    never came, so the remaining uses staff see are true."""
    two = await code(world, percent_off=10, max_uses=2)
    state = world.apps["checkout"].state
    settings = state.checkout_settings
    shopper, _ = await world.basket(price=1800)
    started = await shopper.checkout(discount_code=two["code"])
    assert started.status_code == 201, started.text
    body = started.json()
    stripe_session_id = (await world.row(body["order_id"]))["stripe_session_id"]
    # A start that died after taking its use (its process killed): a hold, no checkout.
    now = dt.datetime.now(dt.UTC)
    applied = AppliedDiscount(code_id=uuid.UUID(two["id"]), code=two["code"], amount=180)
    await hold_use(
        world.engine,
        applied,
        order_id=uuid.uuid4(),
        customer="email:gone@example.com",
        expires_at=now + dt.timedelta(seconds=settings.reservation_ttl_s),
    )
    assert (await code_state(world, two["id"]))["holds"] == 2
    late, _ = await world.basket(price=1800)
    refused = await late.checkout(discount_code=two["code"])
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"].endswith("discount-code-used-up")

    # While a start may still be running, its use stays held.
    assert two["code"] not in await sweep_holds(world.engine, settings)
    assert (await code_state(world, two["id"]))["holds"] == 2
    past_start = now + dt.timedelta(seconds=settings.start_bound_s + 1)
    assert (await sweep_holds(world.engine, settings, past_start)).get(two["code"]) == 1
    # The open checkout keeps its own.
    assert (await code_state(world, two["id"]))["holds"] == 1

    # The checkout expires at Stripe and its webhook never comes.
    await world.hold(stripe_session_id)
    await world.control("POST", f"/sessions/{stripe_session_id}/expire")
    assert (await world.stripe_session(stripe_session_id))["session"]["status"] == "expired"
    assert (await world.row(body["order_id"]))["status"] == "open"
    async with world.engine.connect() as connection:
        hold_expires = (
            await connection.execute(
                text("SELECT expires_at FROM checkout.discount_holds WHERE order_id = :o"),
                {"o": body["order_id"]},
            )
        ).scalar_one()
    # The hold outlives its checkout by a grace (a payment's webhook may come late).
    checkout_expires = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert hold_expires >= checkout_expires + HOLD_GRACE
    assert two["code"] not in await sweep_holds(world.engine, settings, checkout_expires)
    past_expiry = hold_expires + dt.timedelta(seconds=1)
    assert (await sweep_holds(world.engine, settings, past_expiry)).get(two["code"]) == 1
    assert (await code_state(world, two["id"]))["holds"] == 0
    again = await late.checkout(discount_code=two["code"])
    assert again.status_code == 201, again.text
    assert (await code_state(world, two["id"]))["holds"] == 1

    # The webhook comes after all: the checkout expires, the use is not given back twice.
    await world.hold(stripe_session_id, held=False)
    await world.checkout_status(body["order_id"], "expired")
    assert (await code_state(world, two["id"]))["holds"] == 1

    # The reconciler's own pass runs the sweep (a batch of none: no checkout asked about).
    await hold_use(
        world.engine,
        applied,
        order_id=uuid.uuid4(),
        customer="email:gone-too@example.com",
        expires_at=dt.datetime.now(dt.UTC) - HOLD_GRACE - dt.timedelta(seconds=1),
    )
    assert (await code_state(world, two["id"]))["holds"] == 2
    await reconcile_once(world.engine, state.stripe, replace(settings, reconcile_batch=0))
    assert (await code_state(world, two["id"]))["holds"] == 1
