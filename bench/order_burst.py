"""A burst of paid orders through a running shop: every order paid and mailed exactly once, and how
long from payment to the confirmation mail.

``uv run python -m bench.order_burst [orders]`` against a stack already running on this machine
(``make run``; ``EMBER_PORT_OFFSET`` shifts the ports, ``BURST_URL`` names the shop's address).
It signs in as the admin (``ADMIN_EMAIL`` / ``ADMIN_PASSWORD``), makes one product with enough
stock, then:

1. prepares ``orders`` guest checkouts through Caddy (cart, ``POST /api/checkout/session``), each
   for its own address;
2. pays them all at once at the Stripe stand-in (its control API, as the hosted page does), and
   notes when each payment was taken;
3. waits until every order has its confirmation in the Resend stand-in's inbox, and reads each
   order through Caddy.

Printed: orders paid, mails per order, and pay -> mail accepted by Resend (p50/p95/max, from the
mail's own ``created_at``), plus the stand-in's webhook deliveries (first-try successes, most
attempts).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from typing import Any

import httpx
from ember_shared.settings import port_of

ADDRESS = {
    "name": "Burst Buyer",
    "line1": "1 Queue Lane",
    "city": "Portland",
    "postal_code": "97201",
    "country": "US",
}
PREPARE_CONCURRENCY = 12


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _admin_token(shop: httpx.AsyncClient) -> str:
    signed_in = await shop.post(
        "/api/auth/login",
        json={
            "email": os.environ.get("ADMIN_EMAIL", "admin@ember.local"),
            "password": os.environ["ADMIN_PASSWORD"],
        },
    )
    signed_in.raise_for_status()
    return str(signed_in.json()["access_token"])


async def _prepare(base: str, product_id: str, email: str, number: int) -> tuple[str, str]:
    # Each shopper comes from an address of its own (the loopback network is 127/8), as real
    # shoppers do: checkout's stock-hold budget per client address stays what it is.
    source = f"127.0.{1 + number // 250}.{1 + number % 250}"
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=base, timeout=60, transport=transport) as guest:
        added = await guest.post("/api/cart/items", json={"product_id": product_id, "quantity": 1})
        added.raise_for_status()
        for _ in range(3):  # as a shopper would, once the shop answers again
            started = await guest.post(
                "/api/checkout/session", json={"email": email, "shipping_address": ADDRESS}
            )
            if started.status_code < 500:
                break
            print(f"checkout answered {started.status_code}: {started.text[:200]}", flush=True)
            await asyncio.sleep(2)
        started.raise_for_status()
        body = started.json()
        return str(body["order_id"]), str(body["checkout_url"]).rstrip("/").rsplit("/", 1)[-1]


async def main(orders: int) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    base = os.environ.get("BURST_URL") or f"http://127.0.0.1:{port_of('gateway')}"
    stripe_url = f"http://127.0.0.1:{port_of('stripe-standin')}"
    resend_url = f"http://127.0.0.1:{port_of('resend-standin')}"
    run = uuid.uuid4().hex[:8]
    async with (
        httpx.AsyncClient(base_url=base, timeout=60) as shop,
        httpx.AsyncClient(
            base_url=stripe_url, timeout=120, limits=httpx.Limits(max_connections=200)
        ) as stripe,
        httpx.AsyncClient(base_url=resend_url, timeout=60) as resend,
    ):
        token = await _admin_token(shop)
        made = await shop.post(
            "/api/admin/products/",
            json={
                "name": f"Burst Coffee {run}",
                "price": 1500,
                "on_hand": orders + 10,
                "currency": "USD",
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        made.raise_for_status()
        product_id = str(made.json()["id"])

        gate = asyncio.Semaphore(PREPARE_CONCURRENCY)
        emails = [f"burst-{run}-{i}@example.com" for i in range(orders)]

        async def prepare(number: int, email: str) -> tuple[str, str]:
            async with gate:
                return await _prepare(base, product_id, email, number)

        started = time.monotonic()
        prepared = await asyncio.gather(*(prepare(i, e) for i, e in enumerate(emails)))
        print(f"prepared {orders} checkouts in {time.monotonic() - started:.1f} s", flush=True)

        paid_at: dict[str, float] = {}

        async def pay(email: str, session_id: str) -> None:
            answer = await stripe.post(
                f"/_standin/sessions/{session_id}/pay", json={"card_number": "4242424242424242"}
            )
            answer.raise_for_status()
            assert answer.json()["outcome"] == "paid", answer.text
            paid_at[email] = time.time()

        started = time.monotonic()
        await asyncio.gather(*(pay(e, s) for e, (_, s) in zip(emails, prepared, strict=True)))
        print(f"paid {orders} at the stand-in in {time.monotonic() - started:.1f} s", flush=True)

        wanted = set(emails)
        mails: list[dict[str, Any]] = []
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            inbox = (await resend.get("/_standin/emails")).json()["data"]
            mails = [m for m in inbox if wanted & {a.lower() for a in m["to"]}]
            if {a for m in mails for a in m["to"]} >= wanted:
                break
            await asyncio.sleep(1)
        # A second mail for an order would come moments after its first: look once more.
        await asyncio.sleep(5)
        inbox = (await resend.get("/_standin/emails")).json()["data"]
        mails = [m for m in inbox if wanted & {a.lower() for a in m["to"]}]

        statuses: Counter[str] = Counter()
        for order_id, session_id in prepared:
            seen = await shop.get(f"/api/orders/{order_id}", params={"session_id": session_id})
            statuses[seen.json().get("status", str(seen.status_code))] += 1
        deliveries = (await stripe.get("/_standin/deliveries")).json()["data"]

    per_order = Counter(a for m in mails for a in m["to"] if a in wanted)
    latencies = []
    for mail in mails:
        to = next(a for a in mail["to"] if a in wanted)
        accepted = dt.datetime.fromisoformat(mail["created_at"].replace("Z", "+00:00")).timestamp()
        latencies.append(accepted - paid_at[to])
    firsts = [d for d in deliveries if d["attempt"] == 1]
    ok_first = sum(1 for d in firsts if d["status_code"] and 200 <= d["status_code"] < 300)
    print(f"orders: {orders}; order statuses: {dict(statuses)}")
    print(
        f"confirmation mails per order: {dict(Counter(per_order.values()))}; unmailed: "
        f"{len(wanted - set(per_order))}"
    )
    if latencies:
        p50, p95 = statistics.median(latencies), _percentile(latencies, 0.95)
        print(f"pay -> mail s: p50 {p50:.2f} p95 {p95:.2f} max {max(latencies):.2f}")
    print(
        f"stripe webhook deliveries: {ok_first}/{len(firsts)} first tries succeeded; most "
        f"attempts {max((d['attempt'] for d in deliveries), default=0)}"
    )
    exact = statuses == Counter({"paid": orders}) and set(per_order.values()) == {1}
    return 0 if exact and len(per_order) == orders else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)))
