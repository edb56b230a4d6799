"""Shipping an order against the real 17track stand-in (over HTTP), and following the parcel."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import uuid

import httpx
import pytest
from ember_devkit.testing.waiting import eventually_async
from ember_shared.settings import service_settings
from litestar import Litestar
from orders.app import create_app
from orders.settings import OrdersSettings
from orders.tracking.client import TrackingClient
from orders.tracking.poller import TrackingPoller
from orders_testkit import Checkout, opened_order_link, problem, run_app, tracking_settings


@pytest.fixture
def admin(tokens) -> dict[str, str]:
    token, _ = tokens.admin()
    return tokens.bearer(token)


def number(prefix: str = "1Z") -> str:
    return f"{prefix}{uuid.uuid4().hex[:14].upper()}"


async def ship(client, admin, order_id, carrier="UPS", tracking_number=None):
    return await client.post(
        f"/api/admin/orders/{order_id}/ship",
        json={"carrier": carrier, "tracking_number": tracking_number or number()},
        headers=admin,
    )


async def test_ship_marks_shipped_registers_and_emits(
    client, admin, place, db, tracking_standin, orders_app: Litestar
) -> None:
    checkout = await place()
    tracking_number = number()
    response = await ship(client, admin, checkout.order_id, "ups", tracking_number.lower())
    assert response.status_code == 200, response.text
    order = response.json()
    assert order["status"] == "shipped"
    shipment = order["shipment"]
    assert shipment["carrier"] == "UPS"
    assert shipment["tracking_number"] == tracking_number
    assert shipment["shipped_at"] is not None
    assert shipment["tracking_url"] == f"https://www.ups.com/track?tracknum={tracking_number}"
    assert order["tracking_registered"] is True
    assert order["tracking_error"] is None
    assert order["history"][-1]["to_status"] == "shipped"

    # The stand-in heard of the number, with UPS's 17track carrier key.
    assert tracking_standin.registered(tracking_number)
    assert tracking_standin.carrier_of(tracking_number) == 100002

    emitted = await db.emitted("order.shipped.v1", checkout.order_id)
    # A guest's order link (the one the confirmation mailed) goes sealed for the notifier; the
    # plain page beside it opens nothing by itself.
    public_url = service_settings("orders").app.public_url.rstrip("/")
    order_page = f"{public_url}/order/{checkout.order_id}"
    sealed = (await db.order(checkout.order_id)).sealed_order_url
    assert emitted == [
        {
            "order_id": str(checkout.order_id),
            "email": checkout.email,
            "carrier": "UPS",
            "tracking_number": tracking_number,
            "tracking_url": shipment["tracking_url"],
            "order_url": order_page,
            "sealed_order_url": sealed,
        }
    ]
    assert opened_order_link(sealed).startswith(f"{order_page}?token=")

    # Shipping again with the same number changes nothing and tells nobody twice.
    again = await ship(client, admin, checkout.order_id, "UPS", tracking_number)
    assert again.status_code == 200
    assert again.json()["shipment"]["shipped_at"] == shipment["shipped_at"]
    assert len(await db.emitted("order.shipped.v1", checkout.order_id)) == 1


async def test_correcting_the_tracking_number(client, admin, place, db, tracking_standin) -> None:
    checkout = await place()
    first, second = number(), number("")
    await ship(client, admin, checkout.order_id, "UPS", first)
    response = await ship(client, admin, checkout.order_id, "FedEx", second)
    assert response.status_code == 200, response.text
    shipment = response.json()["shipment"]
    assert (shipment["carrier"], shipment["tracking_number"]) == ("FedEx", second)
    assert response.json()["history"][-1]["reason"].startswith("tracking corrected")
    assert tracking_standin.carrier_of(second) == 100003
    emitted = await db.emitted("order.shipped.v1", checkout.order_id)
    assert [e["tracking_number"] for e in emitted] == [first, second]


@pytest.mark.parametrize("paid", [False])
async def test_only_paid_orders_ship(client, admin, place, deliver, paid) -> None:
    pending = await place(paid=paid)
    body = problem(await ship(client, admin, pending.order_id), 409, "not-shippable")
    assert body["current"] == "pending_payment"

    refunded = await place()
    await deliver(refunded.refunded(refunded.total, full=True))
    problem(await ship(client, admin, refunded.order_id), 409, "not-shippable")
    problem(await ship(client, admin, uuid.uuid4()), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"carrier": "UPS"},
        {"tracking_number": "1Z999AA10123456784"},
        {"carrier": "UPS", "tracking_number": "1Z9"},
        {"carrier": "UPS", "tracking_number": "1Z999 AA1 0123"},
        {"carrier": "UPS", "tracking_number": "<script>alert(1)</script>"},
        {"carrier": "", "tracking_number": "1Z999AA10123456784"},
        {"carrier": "U" * 41, "tracking_number": "1Z999AA10123456784"},
        {"carrier": "UPS", "tracking_number": "1Z999AA10123456784", "notify": False},
    ],
)
async def test_ship_refuses_bad_input(client, admin, place, body) -> None:
    checkout = await place()
    problem(
        await client.post(f"/api/admin/orders/{checkout.order_id}/ship", json=body, headers=admin),
        400,
    )


async def test_ship_when_the_provider_is_down(ember_env, tokens, place, db, admin) -> None:
    """The parcel left all the same: the order ships; the poller registers it later."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/track/v2"
    app = create_app(OrdersSettings(tracking=tracking_settings(dead, timeout_ms=500)))
    stop, task = await run_app(app)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://orders.test"
        ) as client:
            checkout = await place()
            response = await ship(client, admin, checkout.order_id)
            assert response.status_code == 200, response.text
            order = response.json()
            assert order["status"] == "shipped"
            assert order["tracking_registered"] is False
            assert order["tracking_error"]
            assert len(await db.emitted("order.shipped.v1", checkout.order_id)) == 1
            problem(
                await client.post(
                    f"/api/admin/orders/{checkout.order_id}/tracking/sync", headers=admin
                ),
                503,
                "tracking-unavailable",
            )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_sync_stores_scans_and_delivers(
    client, admin, tokens, place, db, tracking_standin
) -> None:
    token, user_id = tokens.customer()
    checkout = await place(Checkout(user_id=user_id))
    tracking_number = number()
    await ship(client, admin, checkout.order_id, "UPS", tracking_number)
    sync = f"/api/admin/orders/{checkout.order_id}/tracking/sync"

    # Two stages into the journey: label created and picked up at least.
    await tracking_standin.advance(tracking_number, 100)
    response = await client.post(sync, headers=admin)
    assert response.status_code == 200, response.text
    tracking = response.json()
    assert tracking["order_status"] == "shipped"
    assert tracking["status"] == "InTransit"
    descriptions = [e["description"] for e in tracking["events"]]
    assert descriptions[-1] == "Shipping label created, awaiting item"
    assert "Package picked up by the carrier" in descriptions
    assert tracking["last_sync"] is not None

    # A second sync stores no scan twice.
    again = (await client.post(sync, headers=admin)).json()
    assert len(again["events"]) == len(tracking["events"])

    # Far later: delivered. The order follows and says when.
    await tracking_standin.advance(tracking_number, 3600)
    delivered = (await client.post(sync, headers=admin)).json()
    assert delivered["status"] == "Delivered"
    assert delivered["order_status"] == "delivered"
    assert delivered["events"][0]["description"].startswith("Delivered")
    assert delivered["delivered_at"] == delivered["events"][0]["occurred_at"]
    order = await db.order(checkout.order_id)
    assert order.status == "delivered"
    assert order.delivered_at is not None
    (arrived,) = await db.emitted("order.delivered.v1", checkout.order_id)
    assert arrived["carrier"] == "UPS"
    # A member signs in to see it: no session in their link.
    assert arrived["order_url"].endswith(f"/order/{checkout.order_id}")

    # The owner follows the parcel too; the scans are newest first.
    mine = await client.get(
        f"/api/orders/{checkout.order_id}/tracking", headers=tokens.bearer(token)
    )
    assert mine.status_code == 200, mine.text
    events = mine.json()["events"]
    assert len(events) == 6
    times = [e["occurred_at"] for e in events]
    assert times == sorted(times, reverse=True)
    assert all(e["location"] for e in events)

    # Syncing once more changes nothing and announces nothing new.
    await client.post(sync, headers=admin)
    assert len(await db.emitted("order.delivered.v1", checkout.order_id)) == 1


async def test_sync_of_an_unshipped_order(client, admin, place) -> None:
    checkout = await place()
    problem(
        await client.post(f"/api/admin/orders/{checkout.order_id}/tracking/sync", headers=admin),
        409,
        "not-shipped",
    )


async def test_poller_syncs_only_what_is_due(
    client, admin, place, db, tracking_standin, orders_app: Litestar
) -> None:
    settings = tracking_settings(tracking_standin.api_url, sync_interval_s=600)
    poller_client = TrackingClient(settings)
    poller = TrackingPoller(orders_app.state.db_engine, poller_client, settings)
    try:
        fresh = await place()
        tracking_number = number()
        await ship(client, admin, fresh.order_id, "UPS", tracking_number)
        await tracking_standin.advance(tracking_number, 100)
        # Never synced: due at once.
        now = dt.datetime.now(dt.UTC)
        await poller.sync_due(now)
        order = await db.order(fresh.order_id)
        assert order.tracking_last_sync == now
        assert order.tracking_status == "InTransit"
        scans = await db.value(
            "SELECT count(*) FROM orders.tracking_events WHERE order_id = :id", id=fresh.order_id
        )
        assert scans >= 2

        # Synced a moment ago: not due again until the interval has passed.
        await tracking_standin.advance(tracking_number, 3600)
        await poller.sync_due(now + dt.timedelta(seconds=60))
        assert (await db.order(fresh.order_id)).status == "shipped"
        await poller.sync_due(now + dt.timedelta(seconds=601))
        assert (await db.order(fresh.order_id)).status == "delivered"
    finally:
        await poller_client.aclose()


async def test_poller_registers_numbers_the_provider_does_not_know(
    client, admin, place, db, tracking_standin, orders_app: Litestar
) -> None:
    checkout = await place()
    tracking_number = number()
    await ship(client, admin, checkout.order_id, "UPS", tracking_number)
    # The provider lost it (a restart of the stand-in, a deleted number...).
    del tracking_standin.app.state.tracking.parcels[tracking_number]
    settings = tracking_settings(tracking_standin.api_url)
    poller_client = TrackingClient(settings)
    poller = TrackingPoller(orders_app.state.db_engine, poller_client, settings)
    try:
        await poller.sync_due()
        order = await db.order(checkout.order_id)
        assert order.tracking_registered is False
        assert "-18019902" in order.tracking_error
        await poller.sync_due(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=601))
        order = await db.order(checkout.order_id)
        assert tracking_standin.registered(tracking_number)
        assert order.tracking_registered is True
        assert order.tracking_error is None
    finally:
        await poller_client.aclose()


async def test_the_background_poller_runs_with_the_app(
    ember_env, tracking_standin, place, db, admin
) -> None:
    settings = tracking_settings(
        tracking_standin.api_url, poller_enabled=True, poll_interval_s=1, sync_interval_s=10
    )
    app = create_app(OrdersSettings(tracking=settings))
    stop, task = await run_app(app)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://orders.test"
        ) as client:
            checkout = await place()
            tracking_number = number()
            await ship(client, admin, checkout.order_id, "UPS", tracking_number)
            await tracking_standin.advance(tracking_number, 3600)

            async def delivered() -> bool:
                return (await db.order(checkout.order_id)).status == "delivered"

            await eventually_async(delivered, "the poller to sync the delivery", within=20)
        assert app.state.tracking_poller.rounds >= 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
