"""Reconciliation in checkout: a paid checkout whose webhook never came is found by asking Stripe,
once across replicas (their passes lease the checkout), and applied through the webhook's path."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from checkout.payments import StripeGateway
from checkout.reconciliation.services import reconcile_once
from checkout.settings import CheckoutSettings
from checkout_testkit import World
from sqlalchemy import text


async def _quiet(world: World, order_id: str) -> None:
    """The checkout was last heard of a minute ago (its webhook is long overdue)."""
    async with world.engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE checkout.checkout_sessions SET updated_at = now() - interval '60 seconds' "
                "WHERE order_id = :o"
            ),
            {"o": order_id},
        )


async def test_two_replicas_reconcile_a_withheld_payment_once(world: World) -> None:
    shopper, _ = await world.basket(price=1700, quantity=1)
    started = await shopper.checkout()
    assert started.status_code == 201, started.text
    order_id = started.json()["order_id"]
    stripe_session_id = (await world.row(order_id))["stripe_session_id"]
    await world.hold(stripe_session_id)
    paid = await world.control(
        "POST", f"/sessions/{stripe_session_id}/pay", json={"card_number": "4242424242424242"}
    )
    assert paid["outcome"] == "paid"
    settings = replace(CheckoutSettings(), reconcile_after_s=30, reconcile_batch=1000)
    gateways = [StripeGateway(settings), StripeGateway(settings)]
    try:
        # Not yet quiet long enough: nobody asks.
        await reconcile_once(world.engine, gateways[0], settings)
        assert (await world.row(order_id))["status"] == "open"

        await _quiet(world, order_id)
        passes = await asyncio.gather(
            *(reconcile_once(world.engine, gateway, settings) for gateway in gateways)
        )
    finally:
        for gateway in gateways:
            await gateway.aclose()

    row: dict[str, Any] = await world.row(order_id)
    assert row["status"] == "paid"
    assert row["stripe_payment_intent_id"].startswith("pi_")
    assert sum(p.applied for p in passes) >= 1
    assert len(await world.outbox(order_id, "payment.succeeded.v1")) == 1
    async with world.engine.connect() as connection:
        recorded = (
            await connection.execute(
                text(
                    "SELECT event_id, outcome FROM checkout.provider_events "
                    "WHERE object_id = :s AND event_id LIKE 'reconciled%'"
                ),
                {"s": stripe_session_id},
            )
        ).all()
    assert [(r.event_id.split("_")[1], r.outcome) for r in recorded] == [
        ("checkout.session.completed", "paid")
    ]
    # The webhook turns up after all: recorded, and it changes nothing.
    completed = (await world.events(stripe_session_id, "checkout.session.completed"))[-1]
    (delivery,) = await world.deliver([completed["id"]])
    assert delivery["status_code"] == 200
    assert '"duplicate":false' in delivery["body"].replace(" ", "")
    assert len(await world.outbox(order_id, "payment.succeeded.v1")) == 1
    assert (await world.row(order_id))["status"] == "paid"
