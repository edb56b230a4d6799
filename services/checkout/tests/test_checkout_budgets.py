"""Stock held without paying has a budget per client address and per email (issue 10, finding
3): one anonymous client opening checkout after checkout can no longer make a product sold out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from checkout_testkit import World

PROBLEM = "application/problem+json"


@pytest.fixture
def budgets(world: World) -> Iterator[None]:
    """The shipped defaults' shape, small: 2 open checkouts and 4 units per client or email."""
    state = world.apps["checkout"].state
    lifted = state.checkout_settings
    state.checkout_settings = replace(
        lifted, max_open_per_client=2, max_open_per_email=2, max_held_units=4
    )
    yield
    state.checkout_settings = lifted


async def start(world: World, product_id: uuid.UUID, quantity: int, ip: str, email: str) -> int:
    shopper = world.guest()  # a fresh cookie jar each time: a new guest cart
    shopper.http.headers["X-Forwarded-For"] = ip
    await shopper.add(product_id, quantity)
    response = await shopper.checkout(email=email)
    if response.status_code == 429:
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["type"].endswith("/too-many-checkouts")
        assert int(response.headers["retry-after"]) > 0
    return response.status_code


@pytest.mark.usefixtures("budgets")
async def test_one_client_cannot_hold_a_product_sold_out(world: World) -> None:
    product_id = await world.product(on_hand=10)
    ip = "203.0.113.77"
    answers = [await start(world, product_id, 2, ip, f"hoarder-{i}@example.com") for i in range(6)]
    assert answers[:2] == [201, 201]
    assert set(answers[2:]) == {429}
    # Someone else still buys: the hoarder holds 4 of 10.
    assert (await world.stock(product_id))["available"] == 6
    assert await start(world, product_id, 1, "198.51.100.5", "someone@example.com") == 201


@pytest.mark.usefixtures("budgets")
async def test_one_email_from_many_addresses_and_one_big_cart_are_bounded(world: World) -> None:
    product_id = await world.product(on_hand=50)
    email = f"one-{uuid.uuid4().hex[:8]}@example.com"
    answers = [await start(world, product_id, 1, f"192.0.2.{10 + i}", email) for i in range(4)]
    assert answers == [201, 201, 429, 429]
    shopper = world.guest()
    await shopper.add(product_id, 5)
    too_big = await shopper.checkout(email="big@example.com")
    assert too_big.status_code == 422
    assert too_big.json()["type"].endswith("/checkout-too-large")
    assert (await world.stock(product_id))["available"] == 48
