"""``bench checkout``: the write path, N guest buyers, C at a time, each a whole purchase.

Each buyer, with its own cookie jar, through Caddy: ``POST /api/cart/items`` -> ``POST
/api/checkout/session`` -> pays on the Stripe stand-in (its no-browser control route, the same
store and webhook as its hosted page) -> waits until ``GET /api/checkout/session/{order}`` says
``paid`` (the stand-in's signed webhook reached checkout) -> waits until the Resend stand-in
holds the confirmation mail (orders and the notifier reacted to the events). Reported: paid
orders per second over the whole run, session creation p50/p99, pay->paid and pay->mail
p50/p95 (from the pay call's answer to checkout's ``paid_at`` and to the mail's ``created_at``
at Resend), and, from each service's own Prometheus histograms (the ``/metrics`` on its own port,
never through Caddy), the mean time Ember spent in each route, apart from the stand-ins'.

At the end it checks that every order was paid and mailed exactly once, and that the stock
moved by exactly the units sold.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

ADDRESS = {
    "name": "Bench Buyer",
    "line1": "1 Roastery Lane",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
}
#: How long a buyer's look at its order (``GET /api/checkout/session/{id}?wait=``) and at its
#: mailbox (the Resend stand-in's ``/_standin/emails?wait=``) may wait for a change: each is
#: answered when the payment or the mail lands. A buyer that polled every 0.5 s held its slot up
#: to 0.5 s past each, and at 16 buyers the run measured the poll period more than the shop.
#: The latencies come from the servers' own clocks (checkout's ``paid_at``, the mail's
#: ``created_at`` at Resend) either way.
WAIT_S = 10
#: Between looks that came back without the change (a wait that ran out).
POLL_S = 0.5
#: The services a purchase goes through: each one's routes are timed by its own histograms.
SERVICES = ("cart", "checkout", "catalog", "orders", "notifier")
_SAMPLE = re.compile(r"^(ember_request_duration_seconds_(?:sum|count))\{([^}]*)\} ([0-9.e+-]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


@dataclass
class Buyer:
    cart_s: float = 0.0
    session_s: float = 0.0
    pay_s: float = 0.0
    paid_after_pay_s: float = 0.0
    mail_after_pay_s: float = 0.0
    error: str = ""
    email: str = ""


@dataclass
class Run:
    buyers: list[Buyer] = field(default_factory=list)
    wall_s: float = 0.0


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float, every_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(every_s)
    return False


#: What a failed request raises: the run reports it as that buyer's error.
REQUEST_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)
TIMEOUT = aiohttp.ClientTimeout(total=60)


def client(
    url: str,
    connections: aiohttp.BaseConnector | None = None,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientSession:
    """A client with its own cookie jar, as a browser has; ``connections`` (a pool shared by
    every buyer: a connector made per buyer opens a new connection each time) is left open when
    it closes. The jar keeps cookies for an address (``127.0.0.1``), as a browser does, and sends
    them back as they were set (no quoting a browser would not do)."""
    return aiohttp.ClientSession(
        base_url=url,
        connector=connections,
        connector_owner=connections is None,
        cookie_jar=aiohttp.CookieJar(unsafe=True, quote_cookie=False),
        headers=headers,
        timeout=TIMEOUT,
    )


class LoopLag:
    """How late this process's own event loop wakes a task that asked to sleep ``every_s``:
    a latency measured here includes that lag when the client is busy, so the report says it.
    Every 50 ms: at 10 ms the watch itself was ~7 % of the client's CPU."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s = every_s
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            began = time.monotonic()
            await asyncio.sleep(self.every_s)
            self.lags.append(max(0.0, time.monotonic() - began - self.every_s))

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def one_purchase(
    url: str,
    stripe: aiohttp.ClientSession,
    resend: aiohttp.ClientSession,
    product_id: str,
    connections: aiohttp.BaseConnector,
) -> Buyer:
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    buyer = Buyer(email=email)
    async with client(url, connections) as browser:
        # Each latency is from sending the request to having read the whole answer.
        began = time.monotonic()
        async with browser.post(
            "/api/cart/items", json={"product_id": product_id, "quantity": 1}
        ) as added:
            await added.read()
        buyer.cart_s = time.monotonic() - began
        if added.status not in (200, 201):
            buyer.error = f"cart {added.status}"
            return buyer
        began = time.monotonic()
        async with browser.post(
            "/api/checkout/session", json={"email": email, "shipping_address": ADDRESS}
        ) as started:
            text = await started.text()
        buyer.session_s = time.monotonic() - began
        if started.status != 201:
            buyer.error = f"session {started.status}: {text[:120]}"
            return buyer
        body = json.loads(text)
        order_id, session_id = body["order_id"], body["checkout_url"].rstrip("/").rsplit("/", 1)[-1]
        began = time.monotonic()
        async with stripe.post(f"/_standin/sessions/{session_id}/pay", json={}) as paid:
            await paid.read()
        buyer.pay_s = time.monotonic() - began
        if paid.status not in (200, 201):
            buyer.error = f"pay {paid.status}"
            return buyer
        paid_at = time.time()
        seen: dict[str, str] = {}

        async def is_paid() -> bool:
            async with browser.get(
                f"/api/checkout/session/{order_id}", params={"wait": str(WAIT_S)}
            ) as answer:
                raw = await answer.read()
            if answer.status != 200:
                return False
            state = json.loads(raw)
            if state.get("status") != "paid":
                return False
            seen["paid"] = state["paid_at"]
            return True

        if not await eventually(is_paid, 60, POLL_S):
            buyer.error = "never paid"
            return buyer
        buyer.paid_after_pay_s = max(0.0, _unix(seen["paid"]) - paid_at)

        async def mailed() -> bool:
            async with resend.get(
                "/_standin/emails", params={"to": email, "wait": str(WAIT_S)}
            ) as answer:
                raw = await answer.read()
            if answer.status != 200:
                return False
            mails = json.loads(raw)["data"]
            if not mails:
                return False
            seen["mailed"] = mails[0]["created_at"]
            return True

        if not await eventually(mailed, 60, POLL_S):
            buyer.error = "never mailed"
            return buyer
        buyer.mail_after_pay_s = max(0.0, _unix(seen["mailed"]) - paid_at)
    return buyer


def _unix(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def route_times(
    service_urls: dict[str, str],
) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(sum of seconds, count) per (service, method, route) from each service's histograms."""
    found: dict[tuple[str, str, str], tuple[float, float]] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as scraper:
        for service in SERVICES:
            try:
                async with scraper.get(service_urls[service] + "/metrics") as answer:
                    text = await answer.text()
            except REQUEST_ERRORS:
                continue
            for line in text.splitlines():
                match = _SAMPLE.match(line)
                if not match:
                    continue
                labels = dict(_LABEL.findall(match.group(2)))
                key = (service, labels.get("method", ""), labels.get("path", ""))
                total, count = found.get(key, (0.0, 0.0))
                if match.group(1).endswith("_sum"):
                    total += float(match.group(3))
                else:
                    count += float(match.group(3))
                found[key] = (total, count)
    return found


async def run(
    url: str,
    *,
    stripe_url: str,
    resend_url: str,
    service_urls: dict[str, str],
    admin: Callable[[], dict[str, str]],
    buyers: int,
    concurrency: int,
    warmup: int = 0,
) -> dict[str, Any]:
    """``warmup`` purchases first, at the same concurrency, not in the figures: the services'
    pools open their connections, asyncpg prepares each statement on each, and the buyers stop
    arriving in one burst, as the read scenarios' ``BENCH_WARMUP`` seconds do for them. They are
    counted by the exactly-once checks with the others."""
    async with (
        client(url, headers=admin()) as staff,
        client(stripe_url) as stripe,
        client(resend_url) as resend,
        aiohttp.TCPConnector(limit=concurrency * 2) as connections,
    ):
        name = f"Bench Beans {uuid.uuid4().hex[:8]}"
        async with staff.post(
            "/api/admin/products/",
            json={
                "name": name,
                "price": 1500,
                "currency": "USD",
                "on_hand": buyers + warmup + 10,
            },
        ) as made:
            made.raise_for_status()
            product_id = str((await made.json())["id"])
        gate = asyncio.Semaphore(concurrency)
        outcome = Run()

        async def guarded() -> Buyer:
            async with gate:
                try:
                    return await one_purchase(url, stripe, resend, product_id, connections)
                except REQUEST_ERRORS as exc:
                    return Buyer(error=f"{type(exc).__name__}: {exc}")

        warmed = await asyncio.gather(*(guarded() for _ in range(warmup)))
        before = await route_times(service_urls)
        with LoopLag() as lag:
            began = time.monotonic()
            outcome.buyers = list(await asyncio.gather(*(guarded() for _ in range(buyers))))
            outcome.wall_s = time.monotonic() - began
        after = await route_times(service_urls)
        # A fresh token: the run may outlast the first one.
        async with staff.get("/api/admin/inventory/", params={"q": name}, headers=admin()) as stock:
            stocked: dict[str, Any] = await stock.json()
        row: dict[str, Any] = next(
            (r for r in stocked.get("items", []) if r["product_id"] == product_id), {}
        )
        async with resend.get("/_standin/emails") as answer:
            mails = await answer.json()
    done = [b for b in outcome.buyers if not b.error]
    everyone = [*warmed, *outcome.buyers]
    errors: dict[str, int] = {}
    for b in everyone:
        if b.error:
            errors[b.error] = errors.get(b.error, 0) + 1
    ours = {b.email for b in everyone}
    bench_mails: dict[str, int] = {}
    for mail in mails.get("data", []):
        for to in mail.get("to", []):
            if to in ours:
                bench_mails[to] = bench_mails.get(to, 0) + 1
    ms = 1000.0

    def stat(values: list[float], *ps: int) -> dict[str, float]:
        return {f"p{p}_ms": round(percentile(values, p) * ms, 1) for p in ps}

    ember: dict[str, Any] = {}
    for key, (total1, count1) in sorted(after.items()):
        total0, count0 = before.get(key, (0.0, 0.0))
        if count1 > count0 and not key[2].startswith(("/metrics", "/api/health")):
            ember[" ".join(key)] = {
                "requests": int(count1 - count0),
                "mean_ms": round((total1 - total0) / (count1 - count0) * ms, 1),
            }
    sold = int(row.get("on_hand", -1))
    return {
        "buyers": buyers,
        "concurrency": concurrency,
        "paid_and_mailed": len(done),
        # Before the measured buyers, not in the figures below (but in the errors and checks).
        "warmup": {
            "buyers": warmup,
            "paid_and_mailed": len([b for b in warmed if not b.error]),
            "session_creation": stat([b.session_s for b in warmed if not b.error], 50, 99)
            if warmup
            else {},
        },
        "errors": errors,
        "wall_s": round(outcome.wall_s, 1),
        "paid_orders_per_s": round(len(done) / outcome.wall_s, 2) if outcome.wall_s else 0.0,
        "cart_add": stat([b.cart_s for b in done], 50, 99),
        "session_creation": stat([b.session_s for b in done], 50, 99),
        "standin_pay": stat([b.pay_s for b in done], 50, 99),
        "pay_to_paid": stat([b.paid_after_pay_s for b in done], 50, 95),
        "pay_to_mail": stat([b.mail_after_pay_s for b in done], 50, 95),
        "ember_route_means": ember,
        # Included in every latency above: how late this client's own loop ran its tasks.
        "client_loop_lag": stat(lag.lags, 50, 99),
        "exactly_once": {
            "mails_per_buyer": sorted(set(bench_mails.values())),
            "buyers_mailed": len(bench_mails),
            "stock_taken": (buyers + warmup + 10 - sold) if sold >= 0 else None,
            "stock_reserved_left": row.get("reserved"),
        },
    }
