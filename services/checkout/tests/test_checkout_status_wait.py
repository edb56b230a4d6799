"""A status read that waits (``?wait=``) is answered when its checkout's status changes.

The shopper back from Stripe waits for the webhook's ``paid``: the read is woken by the NOTIFY
of checkout's trigger, holds no database connection while it waits, and falls back to looking
again when the LISTEN connection is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from checkout_testkit import World, eventually
from ember_devkit.testing.statements import parameter_texts, statements_sent
from sqlalchemy import text

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
    # Its first look, then one after the wake-up: no polling in between. (The webhook's own
    # statements name the order too; only the reads' SELECTs on the row by order id count.)
    assert looks.count("look") >= 2
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
