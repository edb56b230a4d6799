"""A burst of payments through the Stripe stand-in: its webhooks go out a few at a time, every
one is taken on its first attempt, and its state is journaled so a restart owes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import stripe
from ember_devkit.testing.apps import serve_in_loop
from ember_devkit.testing.ports import free_port
from litestar import Litestar, Request, Response, post
from standins.stripe.app import create_app
from standins.stripe.settings import StandinSettings
from standins.stripe.store import Store

SECRET = "whsec_burst_tests"
CONCURRENCY = 3
SESSIONS = 24


@dataclass
class SlowEndpoint:
    """Verifies each delivery with the SDK and takes a while over it, counting how many overlap."""

    in_flight: int = 0
    most_in_flight: int = 0
    completed: set[str] = field(default_factory=set)

    def app(self) -> Litestar:
        @post("/hook", status_code=200)
        async def hook(request: Request[Any, Any, Any]) -> Response[Any]:
            event = stripe.Webhook.construct_event(
                await request.body(), request.headers.get("stripe-signature"), SECRET
            )
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                await asyncio.sleep(0.03)
            finally:
                self.in_flight -= 1
            if event.type == "checkout.session.completed":
                self.completed.add(event.data.object["id"])
            return Response({"received": True})

        return Litestar([hook])


async def test_a_burst_is_delivered_a_few_at_a_time_each_on_the_first_try(tmp_path: Path) -> None:
    endpoint = SlowEndpoint()
    hook_port, port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    state = tmp_path / "stripe" / "state.sqlite3"
    settings = StandinSettings(
        public_url=url,
        webhook_url=f"http://127.0.0.1:{hook_port}/hook",
        webhook_secret=SECRET,
        state_file=str(state),
        retry_base_seconds=0.2,
        max_attempts=3,
        delivery_concurrency=CONCURRENCY,
        # As Ember's endpoint at Stripe listens: the charge and intent events are not sent.
        enabled_events="checkout.session.completed,checkout.session.expired,charge.refunded",
        min_expiry_seconds=1,
    )
    servers = [
        await serve_in_loop(endpoint.app(), hook_port, lifespan="auto"),
        await serve_in_loop(create_app(settings), port, lifespan="auto"),
    ]
    try:
        client = stripe.StripeClient(
            "sk_test_burst", base_addresses={"api": url}, http_client=stripe.HTTPXClient()
        )
        ids = [
            (
                await client.v1.checkout.sessions.create_async(
                    params={
                        "mode": "payment",
                        "line_items": [
                            {
                                "quantity": 1,
                                "price_data": {
                                    "currency": "usd",
                                    "unit_amount": 900 + i,
                                    "product_data": {"name": f"Bag {i}"},
                                },
                            }
                        ],
                        "success_url": "http://shop.test/order/o1",
                    }
                )
            ).id
            for i in range(SESSIONS)
        ]
        async with httpx.AsyncClient(base_url=url) as http:
            paid = await asyncio.gather(
                *(
                    http.post(
                        f"/_standin/sessions/{s}/pay", json={"card_number": "4242424242424242"}
                    )
                    for s in ids
                )
            )
            assert {p.json()["outcome"] for p in paid} == {"paid"}
            deadline = time.monotonic() + 30
            while len(endpoint.completed) < SESSIONS and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            deliveries = (await http.get("/_standin/deliveries")).json()["data"]
    finally:
        for server, task in reversed(servers):
            server.should_exit = True
            await task

    assert endpoint.completed == set(ids)
    # One delivery a payment (its session; not its charge or intent), CONCURRENCY at once.
    assert len(deliveries) == SESSIONS
    assert {d["event_type"] for d in deliveries} == {"checkout.session.completed"}
    assert endpoint.most_in_flight == CONCURRENCY
    assert {d["attempt"] for d in deliveries} == {1}
    assert {d["status_code"] for d in deliveries} == {200}
    assert all(d["since_event_ms"] is not None for d in deliveries)

    # The stand-in has stopped: its journal holds one row per object (nothing rewritten whole),
    # and a new stand-in on the same file finds every session paid and nothing left to deliver.
    with contextlib.closing(sqlite3.connect(state)) as db:
        rows = dict(db.execute("SELECT kind, count(*) FROM objects GROUP BY kind").fetchall())
    assert rows["sessions"] == SESSIONS
    assert rows["events"] == SESSIONS * 3
    again = Store(public_url=url, state_path=state)
    try:
        assert {again.session(s)["payment_status"] for s in ids} == {"paid"}
        assert again.undelivered() == []
    finally:
        again.close()


def test_an_older_json_state_is_taken_over(tmp_path: Path) -> None:
    legacy = tmp_path / "state.json"
    first = Store(public_url="http://x", state_path=None)
    session = first.create_session(
        {
            "mode": "payment",
            "success_url": "http://shop.test/ok",
            "line_items": [
                {
                    "quantity": "2",
                    "price_data": {
                        "currency": "eur",
                        "unit_amount": "450",
                        "product_data": {"name": "Filter"},
                    },
                }
            ],
        }
    )
    first.state.held_sessions.add(session["id"])
    legacy.write_text(
        json.dumps(
            {
                "sessions": dict(first.state.sessions),
                "line_items": dict(first.state.line_items),
                "held_sessions": [session["id"]],
            }
        )
    )
    taken = Store(public_url="http://x", state_path=tmp_path / "state.sqlite3")
    taken.close()
    reopened = Store(public_url="http://x", state_path=tmp_path / "state.sqlite3")
    try:
        assert reopened.session(session["id"])["amount_total"] == 900
        assert reopened.state.held_sessions == {session["id"]}
        assert not legacy.exists()
        assert (tmp_path / "state.json.imported").exists()
    finally:
        reopened.close()
