"""A status read that waits (``?wait=``) is answered when its checkout's status changes.

The shopper back from Stripe waits for the webhook's ``paid``: the read is woken by the NOTIFY
of checkout's trigger, holds no database connection while it waits, and falls back to looking
again when the LISTEN connection is lost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from checkout.models import CheckoutSession
from checkout_testkit import World, eventually
from ember_devkit.testing.statements import parameter_texts, statements_sent, verb
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

CARD_OK = "4242 4242 4242 4242"


async def _started(world: World) -> tuple[Any, dict[str, Any]]:
    shopper, _ = await world.basket(price=1800, quantity=1)
    response = await shopper.checkout()
    assert response.status_code == 201, response.text
    return shopper, response.json()


def _waiting(world: World) -> dict[str, Any]:
    waiting: dict[str, Any] = world.apps["checkout"].state.checkout_changes._waiting
    return waiting


async def _until(holds: Callable[[], bool], what: str) -> None:
    async def check() -> bool | None:
        return holds() or None

    await eventually(check, what=what)


def _looks_at(order_id: str) -> Any:
    def keep(statement: str, parameters: Any, _connection: Any) -> str | None:
        if "checkout.checkout_sessions" in statement and order_id in parameter_texts(parameters):
            return "look"
        return None

    return keep


async def test_a_waiting_read_is_answered_when_the_payment_lands(world: World) -> None:
    shopper, started = await _started(world)
    order_id = started["order_id"]
    engine = world.apps["checkout"].state.db_engine

    with statements_sent(engine, _looks_at(order_id)) as looks:
        read = asyncio.create_task(shopper.status(order_id, wait="20"))
        await _until(lambda: looks == ["look"] and order_id in _waiting(world), "the read waiting")
        assert not read.done()
        paid = await world.pay_page(started["checkout_url"], CARD_OK)
        assert paid.status_code == 303
        # Woken by the payment's NOTIFY long before its 20 s are up.
        answer = await asyncio.wait_for(read, 10)

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "paid"
    # Its first look, and at most one after the wake-up: no polling in between. (The webhook's
    # own statements name the order too; only the reads' SELECTs on the row by order id count.
    # A payment made by this process hands its row over: see the test after next.)
    assert 1 <= looks.count("look") <= 2
    assert order_id not in _waiting(world)


async def test_a_read_of_a_settled_checkout_does_not_wait(world: World) -> None:
    shopper, started = await _started(world)
    order_id = started["order_id"]
    await world.pay_page(started["checkout_url"], CARD_OK)
    await world.checkout_status(order_id, "paid")

    answer = await asyncio.wait_for(shopper.status(order_id, wait="20"), 10)

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "paid"


async def test_waiting_reads_hold_no_database_connection(world: World) -> None:
    shoppers = [await _started(world) for _ in range(3)]
    engine = world.apps["checkout"].state.db_engine
    pool = engine.sync_engine.pool
    before = pool.checkedout()

    reads = [
        asyncio.create_task(shopper.status(started["order_id"], wait="20"))
        for shopper, started in shoppers
        for _ in range(8)
    ]
    await _until(
        lambda: all(len(_waiting(world).get(s["order_id"], ())) == 8 for _, s in shoppers),
        "24 reads waiting",
    )
    # 24 reads waiting; each looked once and gave its connection back.
    assert pool.checkedout() <= before + 1
    for _, started in shoppers:
        await world.pay_page(started["checkout_url"], CARD_OK)
    answers = await asyncio.wait_for(asyncio.gather(*reads), 15)
    assert {a.json()["status"] for a in answers} == {"paid"}


async def test_a_read_waiting_when_the_listen_connection_dies_still_sees_the_payment(
    world: World,
) -> None:
    shopper, started = await _started(world)
    order_id = started["order_id"]
    changes = world.apps["checkout"].state.checkout_changes
    await changes.ensure()
    assert changes.listening

    read = asyncio.create_task(shopper.status(order_id, wait="20"))
    await _until(lambda: order_id in _waiting(world), "the read waiting")
    connection = changes._listener._connection
    assert connection is not None
    async with world.engine.connect() as admin:
        killed = await admin.scalar(
            text("SELECT pg_terminate_backend(:pid)"), {"pid": connection.get_server_pid()}
        )
    assert killed
    # Lost (and, as the woken read looks again, perhaps already replaced by a new one).
    await _until(lambda: changes._listener._connection is not connection, "the LISTEN lost")
    await world.pay_page(started["checkout_url"], CARD_OK)

    answer = await asyncio.wait_for(read, 10)
    assert answer.json()["status"] == "paid"


async def test_a_wait_out_of_bounds_is_refused(world: World) -> None:
    shopper, started = await _started(world)
    for wait in ("-1", "21", "soon"):
        refused = await shopper.status(started["order_id"], wait=wait)
        assert refused.status_code == 400, (wait, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")


def _reads_of(order_id: str) -> Any:
    """The status reads' looks: SELECTs of the row by its order id (the webhook locks it by
    Stripe's session id)."""

    def keep(statement: str, parameters: Any, _connection: Any) -> str | None:
        if (
            verb(statement) == "SELECT"
            and "checkout.checkout_sessions" in statement
            and order_id in parameter_texts(parameters)
        ):
            return "look"
        return None

    return keep


async def test_a_read_woken_by_a_payment_this_process_made_answers_with_its_row(
    world: World,
) -> None:
    shopper, started = await _started(world)
    order_id = started["order_id"]
    engine = world.apps["checkout"].state.db_engine

    with statements_sent(engine, _reads_of(order_id)) as looks:
        read = asyncio.create_task(shopper.status(order_id, wait="20"))
        await _until(lambda: looks == ["look"] and order_id in _waiting(world), "the read waiting")
        await world.pay_page(started["checkout_url"], CARD_OK)
        answer = await asyncio.wait_for(read, 10)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    row = await world.row(order_id)
    assert body["status"] == "paid"
    assert dt.datetime.fromisoformat(body["paid_at"].replace("Z", "+00:00")) == row["paid_at"]
    # The webhook handed the row it committed to the read waiting here: no second look.
    assert looks == ["look"]


async def test_a_read_woken_by_another_replicas_change_looks_again(world: World) -> None:
    shopper, started = await _started(world)
    order_id = started["order_id"]
    engine = world.apps["checkout"].state.db_engine

    with statements_sent(engine, _reads_of(order_id)) as looks:
        read = asyncio.create_task(shopper.status(order_id, wait="20"))
        await _until(lambda: looks == ["look"] and order_id in _waiting(world), "the read waiting")
        # Written as another replica would (its own connection): only the NOTIFY reaches here.
        async with world.engine.begin() as other:
            await other.execute(
                text(
                    "UPDATE checkout.checkout_sessions SET status = 'expired', closed_at = now()"
                    " WHERE order_id = :order_id"
                ),
                {"order_id": order_id},
            )
        answer = await asyncio.wait_for(read, 10)

    assert answer.json()["status"] == "expired"
    assert looks == ["look", "look"]


async def test_a_hand_over_whose_transaction_does_not_commit_wakes_the_reads_to_look(
    world: World,
) -> None:
    shopper, started = await _started(world)
    order_id = started["order_id"]
    marker_shopper, marker = await _started(world)
    app = world.apps["checkout"]
    changes = app.state.checkout_changes

    def expire(order: str) -> Any:
        return text(
            "UPDATE checkout.checkout_sessions SET status = 'expired', closed_at = now()"
            f" WHERE order_id = '{uuid.UUID(order)}'"
        )

    with statements_sent(app.state.db_engine, _reads_of(order_id)) as looks:
        read = asyncio.create_task(shopper.status(order_id, wait="20"))
        marker_read = asyncio.create_task(marker_shopper.status(marker["order_id"], wait="20"))
        await _until(
            lambda: (
                looks == ["look"]
                and order_id in _waiting(world)
                and marker["order_id"] in _waiting(world)
            ),
            "the reads waiting",
        )
        async with AsyncSession(app.state.db_engine) as writer:
            await writer.execute(text("SELECT 1"))  # its transaction begun
            changes.hand_over(writer, CheckoutSession(order_id=uuid.UUID(order_id)))
            # Meanwhile another replica expires the checkout, then another one: the first
            # NOTIFY is held back here while the hand-over is due; the second, heard after it
            # on the same connection, wakes its read.
            async with world.engine.begin() as other:
                await other.execute(expire(order_id))
            async with world.engine.begin() as other:
                await other.execute(expire(marker["order_id"]))
            assert (await asyncio.wait_for(marker_read, 10)).json()["status"] == "expired"
            assert not read.done()
            await writer.rollback()
        # Woken when the transaction ended, long before its 20 s: it looks and sees the change.
        answer = await asyncio.wait_for(read, 10)

    assert answer.json()["status"] == "expired"
    assert looks == ["look", "look"]
    assert order_id not in changes._due
