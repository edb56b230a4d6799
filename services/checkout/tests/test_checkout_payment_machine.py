"""The checkout session's payment state machine as one table: every status x every Stripe event
checkout handles, each sent as a signed webhook through the real receiving path
(``WebhookService.receive``: signature, claim, move) onto a row in Postgres.

The table must cover the code's own sets: a status added to ``CheckoutStatus`` or a type added to
``HANDLED_TYPES`` without its rows fails ``test_the_table_covers_every_status_and_event``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from checkout.models import CheckoutSession
from checkout.models import CheckoutStatus as S
from checkout.payments import StripeGateway
from checkout.settings import load_settings
from checkout.webhooks.machine import may_move
from checkout.webhooks.services import HANDLED_TYPES, WebhookService
from ember_devkit.testing import plugin
from ember_shared.db import make_engine
from ember_shared.ids import new_id
from ember_shared.problems import Problem
from ember_shared.settings import service_settings
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

SECRET = "whsec_payment_machine_table"
SUBTOTAL, SHIPPING = 1800, 600
TOTAL = SUBTOTAL + SHIPPING
#: What a partially refunded row already has back, and what a later partial refund reports.
ALREADY_REFUNDED, PARTIAL = 500, 1000

#: Each event checkout reacts to, as (Stripe type, what its object says beyond the ids).
EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "completed_paid": ("checkout.session.completed", {"payment_status": "paid"}),
    "completed_unpaid": ("checkout.session.completed", {"payment_status": "unpaid"}),
    "async_succeeded": ("checkout.session.async_payment_succeeded", {"payment_status": "paid"}),
    "async_failed": ("checkout.session.async_payment_failed", {"payment_status": "unpaid"}),
    "expired": ("checkout.session.expired", {"payment_status": "unpaid"}),
    "partial_refund": ("charge.refunded", {"amount_refunded": PARTIAL, "refunded": False}),
    "full_refund": ("charge.refunded", {"amount_refunded": TOTAL, "refunded": True}),
}

IGNORED = "ignored"
#: A refund that overtook its payment: answered 409, nothing recorded, so Stripe sends it again.
REFUSED = "409"

# (from status, event) -> the status it ends in, IGNORED or REFUSED.
TABLE: dict[tuple[S, str], str] = {
    (S.OPEN, "completed_paid"): S.PAID,
    (S.OPEN, "completed_unpaid"): S.PAYMENT_PENDING,
    (S.OPEN, "async_succeeded"): S.PAID,
    (S.OPEN, "async_failed"): S.PAYMENT_FAILED,
    (S.OPEN, "expired"): S.EXPIRED,
    (S.OPEN, "partial_refund"): REFUSED,
    (S.OPEN, "full_refund"): REFUSED,
    (S.PAYMENT_PENDING, "completed_paid"): S.PAID,
    (S.PAYMENT_PENDING, "completed_unpaid"): IGNORED,
    (S.PAYMENT_PENDING, "async_succeeded"): S.PAID,
    (S.PAYMENT_PENDING, "async_failed"): S.PAYMENT_FAILED,
    (S.PAYMENT_PENDING, "expired"): IGNORED,
    (S.PAYMENT_PENDING, "partial_refund"): REFUSED,
    (S.PAYMENT_PENDING, "full_refund"): REFUSED,
    (S.EXPIRED, "completed_paid"): S.PAID,
    (S.EXPIRED, "completed_unpaid"): IGNORED,
    (S.EXPIRED, "async_succeeded"): S.PAID,
    (S.EXPIRED, "async_failed"): IGNORED,
    (S.EXPIRED, "expired"): IGNORED,
    (S.EXPIRED, "partial_refund"): IGNORED,
    (S.EXPIRED, "full_refund"): IGNORED,
    (S.PAYMENT_FAILED, "completed_paid"): S.PAID,
    (S.PAYMENT_FAILED, "completed_unpaid"): IGNORED,
    (S.PAYMENT_FAILED, "async_succeeded"): S.PAID,
    (S.PAYMENT_FAILED, "async_failed"): IGNORED,
    (S.PAYMENT_FAILED, "expired"): IGNORED,
    (S.PAYMENT_FAILED, "partial_refund"): IGNORED,
    (S.PAYMENT_FAILED, "full_refund"): IGNORED,
    (S.PAID, "completed_paid"): IGNORED,
    (S.PAID, "completed_unpaid"): IGNORED,
    (S.PAID, "async_succeeded"): IGNORED,
    (S.PAID, "async_failed"): IGNORED,
    (S.PAID, "expired"): IGNORED,
    (S.PAID, "partial_refund"): S.PARTIALLY_REFUNDED,
    (S.PAID, "full_refund"): S.REFUNDED,
    (S.PARTIALLY_REFUNDED, "completed_paid"): IGNORED,
    (S.PARTIALLY_REFUNDED, "completed_unpaid"): IGNORED,
    (S.PARTIALLY_REFUNDED, "async_succeeded"): IGNORED,
    (S.PARTIALLY_REFUNDED, "async_failed"): IGNORED,
    (S.PARTIALLY_REFUNDED, "expired"): IGNORED,
    (S.PARTIALLY_REFUNDED, "partial_refund"): S.PARTIALLY_REFUNDED,
    (S.PARTIALLY_REFUNDED, "full_refund"): S.REFUNDED,
    (S.REFUNDED, "completed_paid"): IGNORED,
    (S.REFUNDED, "completed_unpaid"): IGNORED,
    (S.REFUNDED, "async_succeeded"): IGNORED,
    (S.REFUNDED, "async_failed"): IGNORED,
    (S.REFUNDED, "expired"): IGNORED,
    (S.REFUNDED, "partial_refund"): IGNORED,
    (S.REFUNDED, "full_refund"): IGNORED,
}


def test_the_table_covers_every_status_and_event() -> None:
    assert {status for status, _ in TABLE} == set(S)
    assert {type_ for type_, _ in EVENTS.values()} == HANDLED_TYPES
    assert set(TABLE) == {(status, event) for status in S for event in EVENTS}
    # Every move the table expects is on the machine's chart (and so never backwards).
    for (source, _), expected in TABLE.items():
        if expected not in (IGNORED, REFUSED):
            assert may_move(source, S(expected)), (source, expected)


@pytest.fixture(scope="module")
async def engine(ember_env: plugin.TestEnv) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(service_settings("checkout"))
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
def gateway(ember_env: plugin.TestEnv) -> StripeGateway:
    return StripeGateway(dataclasses.replace(load_settings(), stripe_webhook_secret=SECRET))


def signed(event: dict[str, Any]) -> tuple[bytes, str]:
    payload = json.dumps(event).encode()
    timestamp = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return payload, f"t={timestamp},v1={digest.hexdigest()}"


async def a_session_in(engine: AsyncEngine, status: S) -> CheckoutSession:
    token = new_id().hex
    refunded = {S.PARTIALLY_REFUNDED: ALREADY_REFUNDED, S.REFUNDED: TOTAL}.get(status, 0)
    row = CheckoutSession(
        order_id=new_id(),
        status=status.value,
        content_hash=hashlib.sha256(token.encode()).hexdigest(),
        email="table@example.com",
        lines=[
            {
                "product_id": str(new_id()),
                "slug": "table-blend",
                "name": "Table Blend",
                "unit_price": SUBTOTAL,
                "quantity": 1,
            }
        ],
        subtotal=SUBTOTAL,
        shipping=SHIPPING,
        total=TOTAL,
        currency="USD",
        shipping_address={
            "name": "Ada Lovelace",
            "line1": "12 Roastery Lane",
            "city": "Portland",
            "postal_code": "97201",
            "country": "US",
        },
        reservation_id=new_id(),
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        stripe_session_id=f"cs_table_{token}",
        stripe_payment_intent_id=f"pi_table_{token}",
        checkout_url=f"http://stripe.test/pay/{token}",
        amount_refunded=refunded,
    )
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        session.add(row)
    return row


def stripe_event(row: CheckoutSession, event: str) -> dict[str, Any]:
    type_, fields = EVENTS[event]
    if type_ == "charge.refunded":
        obj: dict[str, Any] = {
            "id": f"ch_{row.stripe_session_id}",
            "object": "charge",
            "payment_intent": row.stripe_payment_intent_id,
            "metadata": {"checkout_session_id": str(row.id)},
        }
    else:
        obj = {
            "id": row.stripe_session_id,
            "object": "checkout.session",
            "mode": "payment",
            "amount_total": TOTAL,
            "currency": "usd",
            "payment_intent": row.stripe_payment_intent_id,
            "metadata": {},
        }
    return {
        "id": f"evt_{new_id().hex}",
        "object": "event",
        "type": type_,
        "created": int(time.time()),
        "data": {"object": {**obj, **fields}},
    }


@pytest.mark.parametrize(("source", "event"), sorted(TABLE))
async def test_each_status_meets_each_event(
    engine: AsyncEngine, gateway: StripeGateway, source: S, event: str
) -> None:
    expected = TABLE[source, event]
    row = await a_session_in(engine, source)
    payload, signature = signed(stripe_event(row, event))

    received, refused_with = None, None
    async with AsyncSession(engine, expire_on_commit=False) as session:
        try:
            async with session.begin():
                received = await WebhookService(session, gateway).receive(payload, signature)
        except Problem as problem:
            refused_with = problem.status_code
        stored = await session.get(CheckoutSession, row.id, populate_existing=True)

    assert stored is not None
    assert refused_with == (409 if expected == REFUSED else None), received
    if expected in (IGNORED, REFUSED):
        assert stored.status == source.value
        assert stored.amount_refunded == row.amount_refunded
        if received is not None:
            assert received.outcome.startswith("ignored"), received.outcome
    else:
        assert received is not None
        assert (received.outcome, stored.status) == (expected, expected)
