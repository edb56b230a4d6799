"""The fault suite: shoppers browse, stay signed in and buy through Caddy while Redis restarts,
Postgres restarts, processes are killed (-9) and poison lands on an event stream; afterwards the
books must balance.

Books: every Stripe session a shopper paid has exactly one paid order and one confirmation mail,
the stock sold is the stock paid for, every outbox is drained, and the dead letters hold the
poison and nothing else. Along the way: browsing and guest checkout answer (99 %) through the
Redis outage (``EMBER_CHAOS_REDIS_OUTAGE_S``, 8 s by default, 30 s in the issue's measure),
every route answers once Redis has been back 5 s (Postgres 10 s), and no valid token is ever
answered 401 (the services learn identity's key from its JWKS, again after each kill).

Key rotation is proven in ``shared/tests/test_auth_faults.py`` (one JWKS fetch for a burst with a
new key id). Prints its figures. Run with ``make chaos`` (``.ci/run`` runs it too).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
import redis
from ember_devkit.testing.tokens import TokenFactory
from ember_shared.events import DEAD_LETTER_STREAM, stream_for
from ember_shared.events.wire import DATA_FIELD, EVENT_ID_FIELD, TYPE_FIELD

#: Starting the stack and waiting out each killed process take minutes on a busy machine.
pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]

CARD_OK = "4242 4242 4242 4242"
ADDRESS = {
    "name": "Grace Hopper",
    "line1": "1 Chaos Court",
    "city": "Arlington",
    "postal_code": "22201",
    "country": "US",
}
STOCK = 400
#: The money path's services and the mail worker (orders also serves the signed-in traffic).
KILLED = ("checkout", "orders", "notifier-worker")
#: How long Redis stays down (the issue's measure is 30 s; CI keeps the suite short).
REDIS_OUTAGE_S = float(os.environ.get("EMBER_CHAOS_REDIS_OUTAGE_S", "8"))
#: How long every route has to be whole again once Redis is back (the issue's promise).
SETTLE_AFTER_REDIS_S = 5.0
#: Pools drop the connections the restart cut (pre-ping) and relays and consumers reconnect.
SETTLE_AFTER_POSTGRES_S = 10.0

Call = Callable[[httpx.Client], httpx.Response]


@dataclass
class Tally:
    """Every answer the traffic saw, by phase and route."""

    phase: str = "calm"
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: list[tuple[str, str, str]] = field(default_factory=list)

    def record(self, phase: str, route: str, outcome: httpx.Response | Exception) -> None:
        """``phase``: the one the request was sent in. One still in flight when the next phase
        began (a fault: Postgres shut down under it) belongs to neither whole phase: it is kept
        under "<sent in> -> <answered in>", printed, and asserted by no phase's rule."""
        with self.lock:
            if self.phase != phase:
                phase = f"{phase} -> {self.phase}"
            if isinstance(outcome, Exception):
                self.failed.append((phase, route, f"{type(outcome).__name__}: {outcome}"))
            elif outcome.status_code >= 400:
                self.failed.append((phase, route, f"{outcome.status_code} {outcome.text[:400]}"))
            else:
                self.ok[phase, route] += 1

    def count(self, phase: str, routes: tuple[str, ...] | None = None) -> tuple[int, list[str]]:
        with self.lock:
            ok = sum(
                n for (p, r), n in self.ok.items() if p == phase and (not routes or r in routes)
            )
            bad = [
                f"{r}: {why}"
                for p, r, why in self.failed
                if p == phase and (not routes or r in routes)
            ]
        return ok, bad

    def transitions(self) -> list[str]:
        """The "<sent in> -> <answered in>" phases that requests fell into, in order seen."""
        with self.lock:
            seen = [p for p, _ in self.ok] + [p for p, _, _ in self.failed]
        return [p for p in dict.fromkeys(seen) if " -> " in p]


@dataclass
class Purchase:
    email: str
    session_id: str = ""
    paid: bool = False
    error: str = ""


def _retrying(
    call: Callable[[], httpx.Response],
    ok: tuple[int, ...],
    tally: Tally | None = None,
    route: str = "",
) -> httpx.Response:
    """A shopper presses again when the shop stumbles (a 5xx or a dropped connection); every
    press is counted in ``tally`` under the phase it was made in."""
    last: httpx.Response | Exception | None = None
    for _ in range(6):
        phase = tally.phase if tally else ""
        try:
            response = call()
        except httpx.HTTPError as error:
            last = error
            if tally:
                tally.record(phase, route, error)
        else:
            if tally:
                tally.record(phase, route, response)
            if response.status_code in ok:
                return response
            last = response
            if response.status_code < 500:
                break
        time.sleep(0.5)
    raise AssertionError(
        f"{last.request.method} {last.request.url.path}: {last.status_code} {last.text[:200]}"
        if isinstance(last, httpx.Response)
        else repr(last)
    )


#: The guest purchase's own routes, counted like the browsing traffic.
GUEST_CHECKOUT = ("POST /api/cart/items (guest)", "POST /api/checkout/session (guest)")


def _buy(stack: Any, product_id: str, purchase: Purchase, tally: Tally) -> None:
    with (
        httpx.Client(base_url=stack.url, timeout=30) as browser,
        httpx.Client(base_url=stack.service_url("stripe-standin"), timeout=30) as stripe,
    ):
        line = {"product_id": product_id, "quantity": 1}
        add, start = GUEST_CHECKOUT
        _retrying(lambda: browser.post("/api/cart/items", json=line), (200, 201), tally, add)
        body = {"email": purchase.email, "shipping_address": ADDRESS}
        started = _retrying(
            lambda: browser.post("/api/checkout/session", json=body), (201,), tally, start
        )
        checkout_url = started.json()["checkout_url"]
        purchase.session_id = checkout_url.rstrip("/").rsplit("/", 1)[-1]
        card = {"card_number": CARD_OK, "exp": "12 / 34", "cvc": "123", "name": "Grace"}
        _retrying(lambda: stripe.post(checkout_url, data=card), (303,))
        purchase.paid = True


@contextmanager
def _traffic(
    stack: Any, tally: Tally, calls: Callable[[], list[tuple[str, Call]]], threads: int
) -> Iterator[None]:
    stop = threading.Event()

    def loop() -> None:
        mine = calls()
        with httpx.Client(base_url=stack.url, timeout=30) as client:
            while not stop.is_set():
                for route, call in mine:
                    phase = tally.phase
                    try:
                        tally.record(phase, route, call(client))
                    except httpx.HTTPError as error:
                        tally.record(phase, route, error)
                    time.sleep(0.05)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)


def _eventually(check: Callable[[], Any], what: str, within: float = 120.0) -> Any:
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def _db(stack: Any) -> psycopg.Connection[Any]:
    url = stack.env["DATABASE_URL"].replace("+asyncpg", "").replace("+psycopg", "")
    return psycopg.connect(url, autocommit=True)


def test_the_books_balance_through_redis_and_postgres_restarts_kills_and_poison(
    chaos_stack: Any, tokens: TokenFactory
) -> None:
    stack = chaos_stack
    # Tokens outlive the suite (a busy machine makes it long): a 401 here must mean a bug.
    admin, _ = tokens.admin(expires_in=3600)
    staff = {"Authorization": f"Bearer {admin}"}
    name = f"Chaos Coffee {uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        made = client.post(
            "/api/admin/products/",
            json={"name": name, "price": 1800, "on_hand": STOCK, "currency": "USD"},
            headers=staff,
        )
        assert made.status_code == 201, made.text
    product_id, slug = str(made.json()["id"]), str(made.json()["slug"])

    def browsing() -> list[tuple[str, Call]]:
        return [
            ("GET /api/products", lambda c: c.get("/api/products")),
            ("GET /api/products/{slug}", lambda c: c.get(f"/api/products/{slug}")),
            ("GET /api/categories", lambda c: c.get("/api/categories")),
            ("GET /coffee/{slug}", lambda c: c.get(f"/coffee/{slug}")),
        ]

    def signed_in() -> list[tuple[str, Call]]:
        token, _ = tokens.customer(expires_in=3600)
        me = {"Authorization": f"Bearer {token}"}
        return [
            ("GET /api/cart (signed in)", lambda c: c.get("/api/cart", headers=me)),
            ("GET /api/orders (signed in)", lambda c: c.get("/api/orders", headers=me)),
        ]

    run = uuid.uuid4().hex[:8]
    purchases: list[Purchase] = []
    plock = threading.Lock()
    buying = threading.Event()
    buying.set()

    def buyer(number: int) -> None:
        serial = 0
        while buying.is_set():
            purchase = Purchase(email=f"chaos-{run}-{number}-{serial}@example.com")
            serial += 1
            with plock:
                purchases.append(purchase)
            try:
                _buy(stack, product_id, purchase, tally)
            except AssertionError as error:
                purchase.error = str(error)

    tally = Tally()
    poison_ids: list[str] = []
    log: list[str] = []
    began = time.monotonic()
    buyers = [threading.Thread(target=buyer, args=(n,), daemon=True) for n in range(3)]
    with _traffic(stack, tally, browsing, 2), _traffic(stack, tally, signed_in, 1):
        for thread in buyers:
            thread.start()
        time.sleep(3)

        tally.phase = "redis down"
        stack.stop_redis()
        time.sleep(REDIS_OUTAGE_S)
        tally.phase = "redis back"
        stack.start_redis()
        time.sleep(SETTLE_AFTER_REDIS_S)
        tally.phase = "redis settled"
        time.sleep(6)

        tally.phase = "postgres restart"
        stack.restart_postgres()
        tally.phase = "postgres back"
        time.sleep(SETTLE_AFTER_POSTGRES_S)
        tally.phase = "postgres settled"
        time.sleep(6)

        tally.phase = "kills"
        poison_ids = _poison(stack.redis_url)
        for process in KILLED:
            stack.kill(stack.processes(process)[0])
            stack.wait_ready(stack.processes(process)[0], timeout=120)
            log.append(process)
            time.sleep(1)
        tally.phase = "after"
        time.sleep(4)
        buying.clear()
        for thread in buyers:
            thread.join(120)
    took = time.monotonic() - began

    for phase in (
        "calm",
        "redis down",
        "redis back",
        "redis settled",
        "postgres restart",
        "postgres back",
        "postgres settled",
        "kills",
        "after",
        *tally.transitions(),
    ):
        ok, bad = tally.count(phase)
        print(
            f"\n{phase}: {ok} answered, {len(bad)} failed {Counter(b.split(':')[0] for b in bad)}"
        )
    paid = [p for p in purchases if p.paid]
    print(
        f"{len(purchases)} purchases in {took:.0f}s, {len(paid)} paid; gave up on: "
        f"{Counter(p.error.split(':')[0] for p in purchases if p.error)}"
    )

    browse = tuple(route for route, _ in browsing())
    for during in (browse, GUEST_CHECKOUT):
        ok, bad = tally.count("redis down", during)
        print(f"redis down, {during[0]}...: {ok} answered, {len(bad)} failed")
        assert ok, during
        assert len(bad) <= (ok + len(bad)) // 100, bad[:10]
    # Every route the steady traffic calls is whole again once Redis (Postgres) has settled.
    # The buyers' own presses are counted and printed, not asserted here: a press that stumbles
    # on a busy machine is pressed again, and the books below judge the purchases.
    steady = (*browse, *(route for route, _ in signed_in()))
    for phase in ("calm", "redis settled", "postgres settled", "after"):
        ok, bad = tally.count(phase, steady)
        assert ok, phase
        assert not bad, (phase, bad[:10])
        print(f"{phase}, guest checkout: {tally.count(phase, GUEST_CHECKOUT)[1][:3]}")
    unauthorised = [f for f in tally.failed if f[2].startswith("401")]
    assert not unauthorised, unauthorised[:10]
    # An outage is a 503 (or Caddy's 502 while a lone process restarts), never a 500.
    internal = [f for f in tally.failed if f[2].startswith("500")]
    assert not internal, internal[:10]
    assert log == list(KILLED)
    _assert_books(stack, staff, product_id, name, paid, poison_ids)


def _poison(redis_url: str) -> list[str]:
    """Entries no consumer can read, on a stream four services consume."""
    client = redis.Redis.from_url(redis_url)
    try:
        ids = [str(uuid.uuid4()) for _ in range(2)]
        for event_id in ids:
            client.xadd(
                stream_for("payment.succeeded.v1"),
                {DATA_FIELD: b"\x00 not an envelope", EVENT_ID_FIELD: event_id, TYPE_FIELD: b"x"},
            )
        return ids
    finally:
        client.close()


def _assert_books(
    stack: Any,
    staff: dict[str, str],
    product_id: str,
    name: str,
    paid: list[Purchase],
    poison_ids: list[str],
) -> None:
    assert len(paid) >= 10, "too few purchases went through to judge the books"
    sessions = {p.session_id: p for p in paid}
    assert len(sessions) == len(paid)

    def orders() -> dict[str, tuple[str, int]] | None:
        with _db(stack) as db:
            rows = db.execute(
                "SELECT stripe_session_id, status, count(*) OVER (PARTITION BY stripe_session_id)"
                " FROM orders.orders WHERE stripe_session_id = ANY(%s)",
                (list(sessions),),
            ).fetchall()
        found = {row[0]: (row[1], row[2]) for row in rows}
        done = len(found) == len(sessions) and all(s == "paid" for s, _ in found.values())
        return found if done else None

    found = _eventually(orders, "one paid order for every paid session")
    assert {count for _, count in found.values()} == {1}

    with httpx.Client(base_url=stack.service_url("resend-standin"), timeout=30) as resend:

        def mails() -> dict[str, int] | None:
            counts = {
                p.email: len(resend.get("/_standin/emails", params={"to": p.email}).json()["data"])
                for p in paid
            }
            return counts if all(counts.values()) else None

        _eventually(mails, "a confirmation mail for every paid session")
        time.sleep(2)  # a duplicate would come within the next relay pass
        assert set((mails() or {}).values()) == {1}

    def drained() -> list[str] | None:
        with _db(stack) as db:
            schemas = [
                row[0]
                for row in db.execute(
                    "SELECT table_schema FROM information_schema.tables"
                    " WHERE table_name = 'outbox_events'"
                ).fetchall()
            ]
            waiting = [
                schema
                for schema in schemas
                if db.execute(
                    f'SELECT count(*) FROM "{schema}".outbox_events WHERE published_at IS NULL'
                ).fetchone()[0]  # type: ignore[index]
            ]
        return schemas if schemas and not waiting else None

    assert len(_eventually(drained, "every outbox drained")) >= 6

    with httpx.Client(base_url=stack.url, timeout=30) as client:
        inventory = client.get("/api/admin/inventory/", params={"q": name}, headers=staff).json()
    row = next(r for r in inventory["items"] if r["product_id"] == product_id)
    assert row["on_hand"] == STOCK - len(paid), row

    client = redis.Redis.from_url(stack.redis_url)
    try:

        def dead() -> set[str] | None:
            ids = {
                fields.get(b"event_id", b"").decode()
                for _, fields in client.xrange(DEAD_LETTER_STREAM)
            }
            return ids if set(poison_ids) <= ids else None

        assert _eventually(dead, "the poison in the dead letters", within=60) == set(poison_ids)
    finally:
        client.close()
