"""The stand-in's pay page and webhooks: test cards, signatures Stripe's SDK accepts, retries,
expiry, and the test controls for duplicates, ordering and forged deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import stripe
import uvicorn
from ember_devkit.testing.ports import free_port
from litestar import Litestar, Request, Response, post
from standins.stripe.app import create_app
from standins.stripe.settings import StandinSettings

SECRET = "whsec_webhook_tests"


class InLoopServer(uvicorn.Server):
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


async def start(app: Any, port: int) -> tuple[InLoopServer, asyncio.Task[None]]:
    server = InLoopServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
        await asyncio.sleep(0.02)
    return server, task


@dataclass
class Receiver:
    """A webhook endpoint that verifies with the stripe SDK, and can be told to fail."""

    fail_next: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    def app(self) -> Litestar:
        @post("/hook", status_code=200)
        async def hook(request: Request[Any, Any, Any]) -> Response[Any]:
            payload = await request.body()
            try:
                event = stripe.Webhook.construct_event(
                    payload, request.headers.get("stripe-signature"), SECRET
                )
            except stripe.SignatureVerificationError:
                self.refused += 1
                return Response({"error": "bad signature"}, status_code=400)
            if self.fail_next > 0:
                self.fail_next -= 1
                return Response({"error": "try later"}, status_code=503)
            self.received.append({"id": event.id, "type": event.type, "object": event.data.object})
            return Response({"ok": True})

        return Litestar([hook])


@dataclass
class Rig:
    url: str
    receiver: Receiver
    http: httpx.AsyncClient
    client: stripe.StripeClient

    async def session(self, **overrides: Any) -> Any:
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 2000,
                        "product_data": {"name": "Ethiopia <Guji>"},
                    },
                }
            ],
            "success_url": "http://shop.test/order/o9?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": "http://shop.test/cart",
            "customer_email": "ada@example.com",
            "metadata": {"order_id": "o9"},
            "expires_at": int(time.time()) + 1900,
        }
        params.update(overrides)
        return await self.client.v1.checkout.sessions.create_async(params=params)  # type: ignore[arg-type]

    async def received(self, type_: str, count: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = [e for e in self.receiver.received if e["type"] == type_]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"{type_} not received: {self.receiver.received}")


@pytest.fixture(scope="module")
async def rig() -> AsyncIterator[Rig]:
    receiver = Receiver()
    hook_port, port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    settings = StandinSettings(
        public_url=url,
        webhook_url=f"http://127.0.0.1:{hook_port}/hook",
        webhook_secret=SECRET,
        state_file="",
        retry_base_seconds=0.05,
        max_attempts=5,
        expiry_interval_seconds=0.1,
        async_settle_seconds=0.2,
        min_expiry_seconds=1,
    )
    servers = [await start(receiver.app(), hook_port), await start(create_app(settings), port)]
    http = httpx.AsyncClient()
    client = stripe.StripeClient(
        "sk_test_rig", base_addresses={"api": url}, http_client=stripe.HTTPXClient()
    )
    yield Rig(url, receiver, http, client)
    await http.aclose()
    for server, task in servers:
        server.should_exit = True
        await task


async def test_pay_page_shows_the_order_escaped(rig: Rig) -> None:
    session = await rig.session()
    page = await rig.http.get(session.url)
    assert page.status_code == 200
    assert "Ethiopia &lt;Guji&gt;" in page.text
    assert "<Guji>" not in page.text
    assert "$20.00" in page.text
    assert (await rig.http.get(f"{rig.url}/pay/cs_test_unknown")).status_code == 404


async def test_4242_pays_redirects_and_sends_a_verifiable_webhook(rig: Rig) -> None:
    session = await rig.session()
    paid = await rig.http.post(
        session.url, data={"card_number": "4242 4242 4242 4242", "cvc": "123"}
    )

    assert paid.status_code == 303
    assert paid.headers["location"] == f"http://shop.test/order/o9?session_id={session.id}"
    events = await rig.received("checkout.session.completed")
    done = next(e for e in events if e["object"]["id"] == session.id)["object"]
    assert done["payment_status"] == "paid"
    assert done["status"] == "complete"
    assert done["metadata"]["order_id"] == "o9"
    assert done["payment_intent"].startswith("pi_")
    # A paid page shows no form any more.
    again = await rig.http.get(session.url)
    assert "complete" in again.text
    assert "cardNumber" not in again.text


async def test_0002_declines_and_the_session_stays_open(rig: Rig) -> None:
    session = await rig.session()
    declined = await rig.http.post(
        session.url, data={"card_number": "4000000000000002", "cvc": "123"}
    )
    assert declined.status_code == 402
    assert "Your card was declined." in declined.text
    assert (await rig.client.v1.checkout.sessions.retrieve_async(session.id)).status == "open"
    unknown_card = await rig.http.post(session.url, data={"card_number": "1234", "cvc": "123"})
    assert unknown_card.status_code == 402
    assert "incorrect" in unknown_card.text
    no_cvc = await rig.http.post(session.url, data={"card_number": "4242424242424242", "cvc": ""})
    assert no_cvc.status_code == 402
    assert (await rig.client.v1.checkout.sessions.retrieve_async(session.id)).status == "open"


async def test_failed_deliveries_are_retried_with_backoff(rig: Rig) -> None:
    rig.receiver.fail_next = 2
    session = await rig.session()
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{rig.url}/_standin/sessions/{session.id}/pay",
            json={"card_number": "4242424242424242"},
        )
    completed = [
        e
        for e in await rig.received("checkout.session.completed", 2)
        if e["object"]["id"] == session.id
    ]
    assert completed
    deliveries = (await rig.http.get(f"{rig.url}/_standin/deliveries")).json()["data"]
    attempts = [d for d in deliveries if d["event_id"] == completed[0]["id"]]
    assert [d["status_code"] for d in attempts][-1] == 200
    assert len([d for d in deliveries if d["status_code"] == 503]) == 2


async def test_sessions_expire_on_time_with_a_webhook(rig: Rig) -> None:
    session = await rig.session(expires_at=int(time.time()) + 1)
    expired = await rig.received("checkout.session.expired")
    assert any(e["object"]["id"] == session.id for e in expired)
    assert (await rig.client.v1.checkout.sessions.retrieve_async(session.id)).status == "expired"
    page = await rig.http.get(session.url)
    assert page.status_code == 410


async def test_delayed_payment_settles_later(rig: Rig) -> None:
    session = await rig.session()
    pending = await rig.http.post(
        session.url, data={"card_number": "4000000000003220", "cvc": "123"}
    )
    assert pending.status_code == 303
    settled = await rig.received("checkout.session.async_payment_succeeded")
    assert any(
        e["object"]["id"] == session.id and e["object"]["payment_status"] == "paid" for e in settled
    )


async def test_controls_deliver_duplicates_in_order_and_forged(rig: Rig) -> None:
    session = await rig.session()
    control = f"{rig.url}/_standin"
    await rig.http.post(f"{control}/sessions/{session.id}/hold", json={"held": True})
    await rig.http.post(
        f"{control}/sessions/{session.id}/pay", json={"card_number": "4242424242424242"}
    )
    events = (await rig.http.get(f"{control}/events", params={"session_id": session.id})).json()[
        "data"
    ]
    completed = next(e for e in events if e["type"] == "checkout.session.completed")
    assert not [e for e in rig.receiver.received if e["id"] == completed["id"]]  # held back

    dupes = (
        await rig.http.post(f"{control}/deliver", json={"event_ids": [completed["id"]], "times": 3})
    ).json()
    assert [d["status_code"] for d in dupes["deliveries"]] == [200, 200, 200]
    assert len([e for e in rig.receiver.received if e["id"] == completed["id"]]) == 3

    refused_before = rig.receiver.refused
    for signature in ("wrong_secret", "old_timestamp", "missing", "tampered"):
        forged = (
            await rig.http.post(
                f"{control}/deliver", json={"event_ids": [completed["id"]], "signature": signature}
            )
        ).json()
        assert forged["deliveries"][0]["status_code"] == 400, signature
    assert rig.receiver.refused == refused_before + 4

    ordered_ids = [e["id"] for e in reversed(events)]
    before = len(rig.receiver.received)
    await rig.http.post(f"{control}/deliver", json={"event_ids": ordered_ids})
    assert [e["id"] for e in rig.receiver.received[before:]] == ordered_ids

    signed = (await rig.http.get(f"{control}/events/{completed['id']}/signed")).json()
    verified = stripe.Webhook.construct_event(
        signed["payload"], signed["headers"]["Stripe-Signature"], SECRET
    )
    assert verified.id == completed["id"]
    bad = await rig.http.post(f"{control}/deliver", json={"event_ids": []})
    assert bad.status_code == 400


async def test_dashboard_lists_sessions_and_deliveries(rig: Rig) -> None:
    session = await rig.session(client_reference_id="order-on-dashboard")
    page = await rig.http.get(f"{rig.url}/")
    assert page.status_code == 200
    assert "order-on-dashboard" in page.text
    assert session.id[:24] in page.text
    assert "Webhook deliveries" in page.text
