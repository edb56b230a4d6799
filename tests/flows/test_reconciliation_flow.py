"""A webhook withheld for good: checkout's reconciler asks Stripe about the unsettled checkout and
applies the answer through the webhook's own path, so the order is paid and mailed anyway (the
test stack reconciles every second, a checkout quiet for 3 s). The webhook that comes after all
changes nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any, TypeVar

import httpx
import pytest
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory
from ember_devkit.testing.waiting import eventually

pytestmark = pytest.mark.stack

T = TypeVar("T")
ADDRESS = {
    "name": "Grace Hopper",
    "line1": "1 Harbour Street",
    "city": "Arlington",
    "postal_code": "22201",
    "country": "US",
}


def test_a_withheld_webhook_is_reconciled_paid_and_mailed_once(
    stack: RunningStack, tokens: TokenFactory
) -> None:
    admin_token, _ = tokens.admin()
    email = f"reconcile-{uuid.uuid4().hex[:10]}@example.com"
    with (
        httpx.Client(base_url=stack.url, timeout=30) as shop,
        httpx.Client(base_url=stack.service_url("stripe-standin"), timeout=30) as stripe,
        httpx.Client(base_url=stack.service_url("resend-standin"), timeout=30) as resend,
    ):
        made = shop.post(
            "/api/admin/products/",
            json={
                "name": f"Reconciled Coffee {uuid.uuid4().hex[:8]}",
                "price": 2100,
                "on_hand": 3,
                "currency": "USD",
            },
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert made.status_code == 201, made.text
        added = shop.post("/api/cart/items", json={"product_id": made.json()["id"], "quantity": 1})
        assert added.status_code in (200, 201), added.text
        started = shop.post(
            "/api/checkout/session", json={"email": email, "shipping_address": ADDRESS}
        )
        assert started.status_code in (200, 201), started.text
        order_id = started.json()["order_id"]
        session_id = started.json()["checkout_url"].rstrip("/").rsplit("/", 1)[-1]

        # Stripe takes the money; its webhooks never reach the shop.
        held = stripe.post(f"/_standin/sessions/{session_id}/hold", json={"held": True})
        assert held.status_code == 201, held.text
        paid = stripe.post(
            f"/_standin/sessions/{session_id}/pay", json={"card_number": "4242424242424242"}
        )
        assert paid.json()["outcome"] == "paid", paid.text

        def order() -> dict[str, Any] | None:
            found = shop.get(f"/api/orders/{order_id}", params={"session_id": session_id})
            return (
                found.json()
                if found.status_code == 200 and found.json()["status"] == "paid"
                else None
            )

        assert eventually(order, "the order to be paid")["status"] == "paid"
        mails = eventually(
            lambda: resend.get("/_standin/emails", params={"to": email}).json()["data"],
            "the confirmation mail",
        )
        assert len(mails) == 1
        assert order_id[-8:].upper() in mails[0]["subject"].upper()
        completed = stripe.get(
            "/_standin/events",
            params={"session_id": session_id, "type": "checkout.session.completed"},
        ).json()["data"]
        assert len(completed) == 1
        # Nothing was delivered: the reconciler did it.
        assert (
            stripe.get("/_standin/deliveries", params={"event_id": completed[0]["id"]}).json()[
                "data"
            ]
            == []
        )

        # The webhook turns up after all: taken, and it changes nothing.
        late = stripe.post("/_standin/deliver", json={"event_ids": [completed[0]["id"]]})
        (delivery,) = late.json()["deliveries"]
        assert delivery["status_code"] == 200, delivery
        answer = json.loads(delivery["body"])
        assert answer["duplicate"] is False
        assert answer["outcome"].startswith("ignored: paid does not move")
        assert len(resend.get("/_standin/emails", params={"to": email}).json()["data"]) == 1
