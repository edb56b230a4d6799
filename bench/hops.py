"""Pay -> mail, hop by hop, for the orders paid since a moment (after ``bench checkout``).

``python -m bench.hops 2026-12-06T14:50:00+00:00`` with the stack's ``DATABASE_URL`` and
``REDIS_URL`` (printed by ``make run``) and its ``EMBER_PORT_OFFSET`` (for the Resend
stand-in). For each order it joins the timestamps that the path leaves behind:

- checkout's ``paid_at`` and its ``payment.succeeded`` outbox row (``created_at`` is the
  transaction's start, ``now()``; ``published_at`` is the relay's clock after the append);
- the entry id of each event on its Redis stream (milliseconds);
- orders' ``handled_events.handled_at`` (the handler's transaction start) and its
  ``order.paid`` outbox row (same transaction, so its ``created_at`` is that start);
- the notifier's handled row and mail row (same transaction), the worker's first delivery
  attempt (``started_at``: the mail claimed, about to be sent), and the stand-in's
  ``created_at`` of the mail.

A hop that holds a whole transaction (``pay outbox -> published``: the webhook's request and
the relay; ``order outbox -> published``: orders' handler and the relay) counts its work too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis

QUERY = """
select s.order_id, s.paid_at, s.email,
  co.id as pay_event, co.created_at as pay_created, co.published_at as pay_published,
  oh.handled_at as orders_handled,
  oo.id as order_event, oo.created_at as order_created, oo.published_at as order_published,
  nh.handled_at as notifier_handled,
  pe.created_at as mail_queued, da.started_at as attempt_started
from checkout.checkout_sessions s
join checkout.outbox_events co on co.type = 'payment.succeeded.v1'
  and (convert_from(co.envelope, 'UTF8')::jsonb -> 'data' ->> 'order_id')::uuid = s.order_id
left join orders.handled_events oh on oh.event_id = co.id and oh.handler like 'orders.%'
left join orders.outbox_events oo on oo.type = 'order.paid.v1'
  and (convert_from(oo.envelope, 'UTF8')::jsonb -> 'data' ->> 'order_id')::uuid = s.order_id
left join notifier.handled_events nh on nh.event_id = oo.id
left join notifier.pending_emails pe on pe.source_event_id = oo.id
left join notifier.delivery_attempts da on da.email_id = pe.id and da.attempt = 1
where s.paid_at >= $1
order by s.paid_at
"""


async def stream_times(redis: Redis, stream: str, since: dt.datetime) -> dict[str, dt.datetime]:
    """Each event id on ``stream`` since ``since``, with its entry id's time."""
    entries = await redis.xrange(stream, min=f"{int(since.timestamp() * 1000)}-0", max="+")
    return {
        fields[b"event_id"].decode(): dt.datetime.fromtimestamp(
            int(entry_id.split(b"-")[0]) / 1000, dt.UTC
        )
        for entry_id, fields in entries
    }


def percentile(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def hops(since: dt.datetime) -> dict[str, list[float]]:
    from ember_devkit.devstack import layout
    from ember_shared.settings import env_int

    resend = f"http://127.0.0.1:{layout.port('resend-standin', env_int('EMBER_PORT_OFFSET', 0))}"
    dsn = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    database = await asyncpg.connect(dsn)
    redis = Redis.from_url(os.environ["REDIS_URL"])
    try:
        paid = await stream_times(redis, "ember.events.payment.succeeded.v1", since)
        ordered = await stream_times(redis, "ember.events.order.paid.v1", since)
        rows = await database.fetch(QUERY, since)
        found: dict[str, list[float]] = {}
        async with httpx.AsyncClient(base_url=resend, timeout=10) as client:
            for row in rows:
                answer = await client.get("/_standin/emails", params={"to": row["email"]})
                mails = answer.json()["data"]
                mailed = dt.datetime.fromisoformat(mails[-1]["created_at"]) if mails else None
                steps: list[tuple[str, Any, Any]] = [
                    ("pay outbox -> published", row["pay_created"], row["pay_published"]),
                    (
                        "stream -> orders' handler",
                        paid.get(str(row["pay_event"])),
                        row["orders_handled"],
                    ),
                    ("order outbox -> published", row["order_created"], row["order_published"]),
                    (
                        "stream -> notifier's handler",
                        ordered.get(str(row["order_event"])),
                        row["notifier_handled"],
                    ),
                    ("mail queued -> send starts", row["mail_queued"], row["attempt_started"]),
                    ("send starts -> at Resend", row["attempt_started"], mailed),
                    ("paid_at -> at Resend", row["paid_at"], mailed),
                ]
                for name, start, end in steps:
                    if start is not None and end is not None:
                        found.setdefault(name, []).append((end - start).total_seconds() * 1000)
        return found
    finally:
        await database.close()
        await redis.aclose()


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m bench.hops <ISO time the run started>", file=sys.stderr)
        return 2
    found = asyncio.run(hops(dt.datetime.fromisoformat(sys.argv[1])))
    for name, values in found.items():
        print(
            f"{name:30s} n={len(values):4d} p50={percentile(values, 50):7.0f} ms "
            f"p95={percentile(values, 95):7.0f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
