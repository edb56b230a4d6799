"""A shopper reads their own orders, a guest the one they paid for; nobody reads anyone else's."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from orders_testkit import Checkout, line, opened_order_link, problem


async def test_my_orders_lists_only_mine_newest_first(client, tokens, place) -> None:
    token, user_id = tokens.customer()
    _, other_id = tokens.customer()
    now = dt.datetime.now(dt.UTC)
    mine = []
    for minutes_ago in (30, 20, 10):
        mine.append(
            await place(
                Checkout(user_id=user_id),
                occurred_at=now - dt.timedelta(minutes=minutes_ago),
            )
        )
    theirs = await place(Checkout(user_id=other_id))

    for path in ("/api/orders/my-orders", "/api/orders"):
        response = await client.get(path, headers=tokens.bearer(token))
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"].startswith(("no-store", "private"))
        page = response.json()
        assert page["total"] == 3
        assert [o["id"] for o in page["items"]] == [str(c.order_id) for c in reversed(mine)]
        assert str(theirs.order_id) not in response.text

    first = (await client.get("/api/orders", headers=tokens.bearer(token))).json()["items"][0]
    assert first["status"] == "paid"
    assert first["total"] == mine[-1].total
    assert first["currency"] == "USD"
    assert first["item_count"] == 3
    assert first["shipping_address"]["postal_code"] == "97201"
    assert first["shipment"] is None
    assert {i["name"] for i in first["items"]} == {item.name for item in mine[-1].lines}


async def test_my_orders_pages(client, tokens, place) -> None:
    token, user_id = tokens.customer()
    for _ in range(5):
        await place(Checkout(user_id=user_id))
    page1 = (
        await client.get("/api/orders?page=1&page_size=2", headers=tokens.bearer(token))
    ).json()
    page3 = (
        await client.get("/api/orders?page=3&page_size=2", headers=tokens.bearer(token))
    ).json()
    assert (page1["total"], len(page1["items"]), page1["page_size"]) == (5, 2, 2)
    assert len(page3["items"]) == 1
    assert not {o["id"] for o in page1["items"]} & {o["id"] for o in page3["items"]}


async def test_an_order_of_someone_else_is_not_found(client, tokens, place) -> None:
    _, owner = tokens.customer()
    intruder, _ = tokens.customer()
    checkout = await place(Checkout(user_id=owner))
    body = problem(
        await client.get(f"/api/orders/{checkout.order_id}", headers=tokens.bearer(intruder)),
        404,
        "not-found",
    )
    assert str(checkout.order_id) not in body["detail"]
    problem(
        await client.get(
            f"/api/orders/{checkout.order_id}/tracking", headers=tokens.bearer(intruder)
        ),
        404,
    )
    # Not the same as an order that does not exist? It is: the answer is identical.
    missing = await client.get(f"/api/orders/{uuid.uuid4()}", headers=tokens.bearer(intruder))
    assert missing.json()["detail"] == body["detail"]


async def test_owner_sees_pending_until_the_payment_event(client, tokens, deliver) -> None:
    token, user_id = tokens.customer()
    checkout = Checkout(user_id=user_id)
    await deliver(checkout.started())
    order = (
        await client.get(f"/api/orders/{checkout.order_id}", headers=tokens.bearer(token))
    ).json()
    assert order["status"] == "pending_payment"
    assert order["paid_at"] is None
    # Coming back from Stripe proves nothing: the redirect's session id changes nothing.
    response = await client.get(
        f"/api/orders/{checkout.order_id}?session_id={checkout.stripe_session_id}",
        headers=tokens.bearer(token),
    )
    assert response.json()["status"] == "pending_payment"

    await deliver(checkout.succeeded())
    order = (
        await client.get(f"/api/orders/{checkout.order_id}", headers=tokens.bearer(token))
    ).json()
    assert order["status"] == "paid"
    assert order["paid_at"] is not None


async def test_guest_reads_the_order_with_the_stripe_session_id(client, deliver) -> None:
    checkout = Checkout(user_id=None, email="guest@example.com", lines=[line(2200, 1)])
    path = f"/api/orders/{checkout.order_id}"
    await deliver(checkout.started())
    # Before the webhook-driven event nothing ties this session to the order: not found.
    problem(await client.get(f"{path}?session_id={checkout.stripe_session_id}"), 404)

    await deliver(checkout.succeeded())
    response = await client.get(f"{path}?session_id={checkout.stripe_session_id}")
    assert response.status_code == 200, response.text
    order = response.json()
    assert order["status"] == "paid"
    assert order["email"] == "guest@example.com"
    assert order["total"] == 2200 + checkout.shipping

    problem(await client.get(path), 404)
    problem(await client.get(f"{path}?session_id=cs_test_somebody_else"), 404)
    other = await client.get(f"/api/orders/{uuid.uuid4()}?session_id={checkout.stripe_session_id}")
    problem(other, 404)


async def test_guest_reads_the_order_with_the_mailed_links_token(client, place, db) -> None:
    checkout = await place(Checkout(user_id=None, email="guest@example.com"))
    other = await place(Checkout(user_id=None, email="guest@example.com"))
    path = f"/api/orders/{checkout.order_id}"
    order = await db.order(checkout.order_id)
    token = opened_order_link(order.sealed_order_url).split("?token=", 1)[1]

    response = await client.get(f"{path}?token={token}")
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "guest@example.com"
    # Only its hash rests; the hash itself, another order's token or a guess open nothing.
    problem(await client.get(f"{path}?token={order.guest_link_hash}"), 404)
    other_token = opened_order_link((await db.order(other.order_id)).sealed_order_url)
    problem(await client.get(f"{path}?token={other_token.split('?token=', 1)[1]}"), 404)
    problem(await client.get(f"{path}?token={'A' * 43}"), 404)
    problem(await client.get(f"/api/orders/{other.order_id}?token={token}"), 404)
    problem(await client.get(f"{path}/tracking?token={token}"), 404, "not-shipped")


async def test_the_stripe_session_id_opens_a_guest_order_only_briefly(client, place, db) -> None:
    """Stripe's session id rests in clear (checkout needs it), so it is no lasting key: it
    opens the order for the success page only, an hour after paying at most."""
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=61)
    paid_long_ago = await place(Checkout(user_id=None), occurred_at=long_ago)
    path = f"/api/orders/{paid_long_ago.order_id}"
    problem(await client.get(f"{path}?session_id={paid_long_ago.stripe_session_id}"), 404)
    # The mailed link still opens it.
    sealed = (await db.order(paid_long_ago.order_id)).sealed_order_url
    token = opened_order_link(sealed).split("?token=", 1)[1]
    assert (await client.get(f"{path}?token={token}")).status_code == 200

    just_paid = await place(
        Checkout(user_id=None), occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=59)
    )
    fresh = f"/api/orders/{just_paid.order_id}?session_id={just_paid.stripe_session_id}"
    assert (await client.get(fresh)).status_code == 200


@pytest.mark.parametrize("token", ["short", "a" * 101, "bad%20token" + "a" * 20])
async def test_a_malformed_token_is_a_problem(client, token) -> None:
    problem(await client.get(f"/api/orders/{uuid.uuid4()}?token={token}"), 400)


async def test_signed_in_shopper_reads_a_guest_order_they_paid_with_the_session(
    client, tokens, place
) -> None:
    token, _ = tokens.customer()
    checkout = await place(Checkout(user_id=None))
    path = f"/api/orders/{checkout.order_id}"
    problem(await client.get(path, headers=tokens.bearer(token)), 404)
    response = await client.get(
        f"{path}?session_id={checkout.stripe_session_id}", headers=tokens.bearer(token)
    )
    assert response.status_code == 200


async def test_lists_need_a_signed_in_shopper(client, tokens) -> None:
    problem(await client.get("/api/orders"), 401, "unauthenticated")
    problem(await client.get("/api/orders/my-orders"), 401, "unauthenticated")
    expired = tokens.mint(expires_in=-60)
    problem(await client.get("/api/orders", headers=tokens.bearer(expired)), 401, "token-expired")
    problem(await client.get("/api/orders", headers=tokens.bearer("not-a-token")), 401)


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=abc",
        "page_size=0",
        "page_size=51",
        "page_size=100000",
    ],
)
async def test_bad_paging_is_a_problem(client, tokens, query) -> None:
    token, _ = tokens.customer()
    problem(await client.get(f"/api/orders?{query}", headers=tokens.bearer(token)), 400)


@pytest.mark.parametrize(
    "session_id",
    ["pi_123", "cs_", "cs_test_%27%3B--", "cs_" + "a" * 300],
)
async def test_a_malformed_session_id_is_a_problem(client, session_id) -> None:
    problem(await client.get(f"/api/orders/{uuid.uuid4()}?session_id={session_id}"), 400)


async def test_a_malformed_order_id_is_a_problem(client, tokens) -> None:
    token, _ = tokens.customer()
    response = await client.get("/api/orders/not-a-uuid", headers=tokens.bearer(token))
    assert response.status_code in (400, 404)
    problem(response, response.status_code)


async def test_tracking_of_an_unshipped_order(client, tokens, place) -> None:
    token, user_id = tokens.customer()
    checkout = await place(Checkout(user_id=user_id))
    problem(
        await client.get(f"/api/orders/{checkout.order_id}/tracking", headers=tokens.bearer(token)),
        404,
        "not-shipped",
    )


async def test_shoppers_cannot_write_orders(client, tokens) -> None:
    token, _ = tokens.customer()
    response = await client.post("/api/orders", json={}, headers=tokens.bearer(token))
    problem(response, 405)


async def test_guest_orders_of_a_verified_address_are_the_account_holders(
    client, tokens, place
) -> None:
    """A guest's orders appear in the account later made (or signed into) with the same address,
    but only when identity proved that mailbox: an unproved address claims nothing."""
    email = f"Guest-{uuid.uuid4().hex[:8]}@Example.com"
    before = await place(Checkout(email=email))  # as a guest, before the account existed
    other_guest = await place(Checkout(email=f"other-{uuid.uuid4().hex[:8]}@example.com"))
    user_id = uuid.uuid4()
    verified = tokens.mint(user_id, email=email.lower(), email_verified=True)
    signed_in = await place(Checkout(user_id=user_id, email=email.lower()))
    after = await place(Checkout(email=email.upper()))  # signed out, later

    page = (await client.get("/api/orders/my-orders", headers=tokens.bearer(verified))).json()
    assert {o["id"] for o in page["items"]} == {str(c.order_id) for c in (before, signed_in, after)}
    assert page["total"] == 3
    shown = await client.get(f"/api/orders/{before.order_id}", headers=tokens.bearer(verified))
    assert shown.status_code == 200, shown.text
    problem(
        await client.get(f"/api/orders/{other_guest.order_id}", headers=tokens.bearer(verified)),
        404,
    )

    # Someone else's guest order under that address, once it belongs to an account, stays theirs.
    owner_id = uuid.uuid4()
    owned = await place(Checkout(user_id=owner_id, email=email))
    assert (
        str(owned.order_id)
        not in (await client.get("/api/orders/my-orders", headers=tokens.bearer(verified))).text
    )

    # The same address without identity's proof: only the order placed signed in.
    unproved = tokens.mint(user_id, email=email.lower())
    page = (await client.get("/api/orders/my-orders", headers=tokens.bearer(unproved))).json()
    assert [o["id"] for o in page["items"]] == [str(signed_in.order_id)]
    problem(
        await client.get(f"/api/orders/{before.order_id}", headers=tokens.bearer(unproved)), 404
    )
