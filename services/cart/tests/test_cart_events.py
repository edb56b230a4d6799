"""``payment.succeeded.v1`` converts and empties the cart it names, once."""

from __future__ import annotations

import asyncio
import uuid

from cart.events import empty_paid_cart
from ember_devkit.testing.events import envelope, publish
from ember_devkit.testing.waiting import eventually_async as wait_for
from ember_shared.events import stream_for
from ember_shared.events.contracts import Address, PaymentSucceeded
from ember_shared.ids import new_id
from sqlalchemy.ext.asyncio import AsyncSession


def payment(cart_id: uuid.UUID | None) -> PaymentSucceeded:
    return PaymentSucceeded(
        order_id=new_id(),
        checkout_session_id=new_id(),
        user_id=None,
        cart_id=cart_id,
        email="buyer@example.com",
        lines=[],
        subtotal=1000,
        shipping=0,
        total=1000,
        currency="USD",
        shipping_address=Address(
            name="Ada", line1="1 Bean St", city="Portland", postal_code="97201", country="US"
        ),
        reservation_id=new_id(),
        stripe_session_id="cs_test_1",
    )


async def guest_cart(browsers, catalog) -> tuple[object, uuid.UUID]:
    guest = browsers()
    response = await guest.add(catalog.add(), 2)
    await guest.add(catalog.add(), 1)
    return guest, uuid.UUID(response.json()["id"])


async def test_payment_event_empties_the_cart_once_even_when_delivered_twice(
    browsers, catalog, cart_app, db
):
    async def status(cart_id):
        return await db.value("SELECT status FROM cart.carts WHERE id = :id", id=cart_id)

    guest, cart_id = await guest_cart(browsers, catalog)
    data = payment(cart_id)
    event = envelope(data)
    await asyncio.wait_for(cart_app.state.events.consumer.wait_started(), 15)
    await publish(cart_app.state.redis, event)

    async def converted():
        return await status(cart_id) == "converted"

    await wait_for(converted)
    assert (
        await db.value("SELECT count(*) FROM cart.cart_items WHERE cart_id = :id", id=cart_id) == 0
    )
    assert str(
        await db.value("SELECT converted_order_id FROM cart.carts WHERE id = :id", id=cart_id)
    ) == str(data.order_id)
    # The guest's cookie now names no cart; their next add starts a new one.
    assert (await guest.get()).json()["id"] is None
    new_cart = (await guest.add(catalog.add(), 1)).json()
    assert new_cart["id"] != str(cart_id)

    # Make the converted cart look active and full again: only a handler that runs a second
    # time would empty it, so this proves the redelivery is skipped, not merely harmless.
    await db.execute("UPDATE cart.carts SET status = 'active' WHERE id = :id", id=cart_id)
    await db.execute(
        "INSERT INTO cart.cart_items (id, cart_id, product_id, variant_id, quantity)"
        " VALUES (:i, :c, :p, :p, 1)",
        i=new_id(),
        c=cart_id,
        p=uuid.uuid4(),
    )
    await publish(cart_app.state.redis, event)
    # A later event for another cart is handled after the duplicate.
    _, sentinel_cart = await guest_cart(browsers, catalog)
    await publish(cart_app.state.redis, envelope(payment(sentinel_cart)))

    async def sentinel_done():
        return await status(sentinel_cart) == "converted"

    await wait_for(sentinel_done)

    async def all_acknowledged():
        groups = await cart_app.state.redis.xinfo_groups(stream_for(event.type))
        return bool(groups) and all(group["pending"] == 0 for group in groups)

    # The sentinel came after the duplicate: nothing pending means the duplicate was handled.
    await wait_for(all_acknowledged)
    assert await status(cart_id) == "active"
    assert (
        await db.value("SELECT count(*) FROM cart.cart_items WHERE cart_id = :id", id=cart_id) == 1
    )
    assert (
        await db.value(
            "SELECT count(*) FROM cart.handled_events WHERE event_id = :id", id=uuid.UUID(event.id)
        )
        == 1
    )


async def test_payment_event_for_a_signed_in_cart_gives_the_shopper_a_fresh_cart(
    browsers, catalog, cart_app, tokens, db
):
    token, user_id = tokens.customer()
    shopper = browsers(token)
    cart_id = uuid.UUID((await shopper.add(catalog.add(), 1)).json()["id"])
    await publish(cart_app.state.redis, envelope(payment(cart_id)))

    async def emptied():
        return (await shopper.get()).json()["id"] is None

    await wait_for(emptied)
    fresh = (await shopper.add(catalog.add(), 1)).json()
    assert fresh["id"] != str(cart_id)
    assert await db.value("SELECT count(*) FROM cart.carts WHERE user_id = :u", u=user_id) == 2


async def test_handler_itself_is_idempotent_and_ignores_what_it_cannot_use(
    browsers, catalog, cart_app, db
):
    _, cart_id = await guest_cart(browsers, catalog)
    data = payment(cart_id)
    engine = cart_app.state.db_engine
    for _ in range(2):
        async with AsyncSession(engine) as session, session.begin():
            await empty_paid_cart(envelope(data), data, session)
    assert await db.value("SELECT status FROM cart.carts WHERE id = :id", id=cart_id) == "converted"
    # No cart id, or a cart we do not know: nothing to do, and no error.
    for other in (payment(None), payment(uuid.uuid4())):
        async with AsyncSession(engine) as session, session.begin():
            await empty_paid_cart(envelope(other), other, session)
