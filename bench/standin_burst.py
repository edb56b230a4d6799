"""A payment burst through the Stripe stand-in alone: how its webhooks keep up.

``uv run python -m bench.standin_burst [sessions] [port]`` starts the stand-in in its own
process (state in a throwaway directory, as ``make run`` keeps it on disk) and a webhook endpoint
in this one, creates ``sessions`` Checkout Sessions with the stripe SDK, pays them all at once
through the stand-in's control API, and prints:

- how many deliveries succeeded on their first attempt, and the most attempts any event took;
- pay -> ``checkout.session.completed`` received, p50/p95/max (seconds).

The endpoint verifies every signature with the SDK and serves like a shop's webhook route with a
small connection pool: at most 8 at once, 10 ms each (checkout's insert + outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import stripe
import uvicorn
from litestar import Litestar, Request, Response, post

SECRET = "whsec_burst"  # noqa: S105 - a throwaway local secret
HANDLER_SLOTS = 8
HANDLER_SECONDS = 0.010


class _Server(uvicorn.Server):
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def _endpoint(arrivals: dict[str, float]) -> Litestar:
    slots = asyncio.Semaphore(HANDLER_SLOTS)

    @post("/hook", status_code=200)
    async def hook(request: Request[Any, Any, Any]) -> Response[Any]:
        payload = await request.body()
        event = stripe.Webhook.construct_event(
            payload, request.headers.get("stripe-signature"), SECRET
        )
        async with slots:
            await asyncio.sleep(HANDLER_SECONDS)
        if event.type == "checkout.session.completed":
            arrivals.setdefault(event.data.object["id"], time.monotonic())
        return Response({"received": True})

    return Litestar([hook])


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def main(sessions: int, port: int) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    arrivals: dict[str, float] = {}
    hook_port = port + 1
    server = _Server(uvicorn.Config(_endpoint(arrivals), port=hook_port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    with tempfile.TemporaryDirectory() as data:
        env = {
            **os.environ,
            "STRIPE_STANDIN_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "STRIPE_STANDIN_WEBHOOK_URL": f"http://127.0.0.1:{hook_port}/hook",
            "STRIPE_WEBHOOK_SECRET": SECRET,
            "STRIPE_STANDIN_STATE_FILE": str(Path(data) / "state"),
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "uvicorn", "--factory", "standins.stripe:create_app"]
        standin = subprocess.Popen(  # noqa: S603, ASYNC220 - our own module; started once
            [*command, "--port", str(port), "--log-level", "warning"], env=env
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(timeout=120) as http:
                for _ in range(1200):  # a loaded machine takes a while to start it
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"{base}/_standin/health")).status_code == 200:
                            break
                    await asyncio.sleep(0.05)
                client = stripe.StripeClient(
                    "sk_test_burst", base_addresses={"api": base}, http_client=stripe.HTTPXClient()
                )
                gate = asyncio.Semaphore(20)

                async def create(i: int) -> str:
                    async with gate:
                        made = await client.v1.checkout.sessions.create_async(
                            params={
                                "mode": "payment",
                                "line_items": [
                                    {
                                        "quantity": 1,
                                        "price_data": {
                                            "currency": "usd",
                                            "unit_amount": 1800,
                                            "product_data": {"name": f"Burst {i}"},
                                        },
                                    }
                                ],
                                "success_url": "http://shop.test/order/x",
                                "metadata": {"order_id": f"o{i}"},
                            },
                            options={"idempotency_key": f"burst-{i}-{time.time_ns()}"},
                        )
                        return str(made.id)

                ids = await asyncio.gather(*(create(i) for i in range(sessions)))
                paid_at: dict[str, float] = {}

                async def pay(session_id: str) -> None:
                    paid = await http.post(
                        f"{base}/_standin/sessions/{session_id}/pay",
                        json={"card_number": "4242424242424242"},
                    )
                    paid.raise_for_status()
                    paid_at[session_id] = time.monotonic()

                started = time.monotonic()
                await asyncio.gather(*(pay(s) for s in ids))
                pay_seconds = time.monotonic() - started
                deadline = time.monotonic() + 300
                while len(arrivals) < sessions and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                deliveries = (await http.get(f"{base}/_standin/deliveries")).json()["data"]
        finally:
            standin.terminate()
            standin.wait(10)
            server.should_exit = True
            await serving
    latencies = [arrivals[s] - paid_at[s] for s in ids if s in arrivals and s in paid_at]
    firsts = [d for d in deliveries if d["attempt"] == 1]
    ok_first = sum(1 for d in firsts if d["status_code"] and 200 <= d["status_code"] < 300)
    print(f"sessions paid: {len(paid_at)} in {pay_seconds:.1f} s")
    print(f"checkout.session.completed received: {len(arrivals)}/{sessions}")
    print(f"first deliveries succeeded: {ok_first}/{len(firsts)}")
    print(f"most attempts: {max((d['attempt'] for d in deliveries), default=0)}")
    if latencies:
        p50, p95 = statistics.median(latencies), _percentile(latencies, 0.95)
        print(f"pay->webhook s: p50 {p50:.2f} p95 {p95:.2f} max {max(latencies):.2f}")
    return 0 if len(arrivals) == sessions else 1


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    first_port = int(sys.argv[2]) if len(sys.argv) > 2 else 14_110
    raise SystemExit(asyncio.run(main(count, first_port)))
