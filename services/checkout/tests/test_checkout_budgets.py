"""Stock held without paying has a budget per client address and per email (issue 10, finding
3): one anonymous client opening checkout after checkout can no longer make a product sold out.

The budget is decided by one statement of its own that claims a place (issue 12), its locks
never held beyond that statement, let alone across catalog's or Stripe's call: checkouts from one address (everyone behind
one NAT) run side by side, many at once still never pass the budget, and a start that fails
after its claim gives the place back. Slow or failing peers are real HTTP servers here: an
interposer in front of the Stripe stand-in or catalog, or a port nobody answers on.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from checkout.payments import StripeGateway
from checkout.reconciliation.services import reconcile_once
from checkout.upstream import Upstream
from checkout_testkit import World, serve
from ember_devkit.testing.ports import free_port
from ember_devkit.testing.statements import (
    each_built_once,
    parameter_texts,
    statement_objects_sent,
    statements_sent,
)
from sqlalchemy import event, text
from sqlalchemy.util import await_only

PROBLEM = "application/problem+json"
#: What an interposer runs before forwarding a request: (method, path, body).
Before = Callable[[str, str, bytes], Awaitable[None]]


class Interposer:
    """A real HTTP server between checkout and one of its peers: each request is forwarded as
    it came, once ``before`` has run (which may hold it, or change the world first)."""

    def __init__(self, target: str, before: Before) -> None:
        self.target = target.rstrip("/")
        self.before = before
        self.http = httpx.AsyncClient(timeout=30.0)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.http.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await self.before(scope["method"], scope["path"], body)
        query = scope.get("query_string", b"").decode()
        answer = await self.http.request(
            scope["method"],
            self.target + scope["path"] + (f"?{query}" if query else ""),
            headers=[
                (k.decode(), v.decode())
                for k, v in scope["headers"]
                if k.lower() not in (b"host", b"content-length")
            ],
            content=body,
        )
        headers = [
            (k.encode(), v.encode())
            for k, v in answer.headers.items()
            if k.lower()
            not in ("content-length", "content-encoding", "transfer-encoding", "connection")
        ]
        headers.append((b"content-length", str(len(answer.content)).encode()))
        await send(
            {"type": "http.response.start", "status": answer.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": answer.content})


@contextlib.asynccontextmanager
async def interposed(target: str, before: Before) -> AsyncIterator[str]:
    server, task = await serve(Interposer(target, before), port := free_port())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def stripe_at(world: World, api_base: str, **changes: Any) -> AsyncIterator[None]:
    """Checkout's Stripe client talks to ``api_base`` for a while."""
    state = world.apps["checkout"].state
    usual = state.stripe
    gateway = StripeGateway(replace(usual.settings, stripe_api_base=api_base, **changes))
    state.stripe = gateway
    try:
        yield
    finally:
        state.stripe = usual
        await gateway.aclose()


@contextlib.asynccontextmanager
async def catalog_at(world: World, url: str) -> AsyncIterator[None]:
    """Checkout's calls to catalog go to ``url`` for a while."""
    state = world.apps["checkout"].state
    usual = state.upstream
    upstream = Upstream(state.checkout_settings.upstream_timeout_ms)
    upstream.catalog.base_url = httpx.URL(url)
    state.upstream = upstream
    try:
        yield
    finally:
        state.upstream = usual
        await upstream.aclose()


async def claims_of(world: World, ip: str) -> int:
    async with world.engine.connect() as connection:
        found = await connection.scalar(
            text("SELECT count(*) FROM checkout.hold_claims WHERE client_ip = :ip"), {"ip": ip}
        )
    return int(found or 0)


@pytest.fixture
def budgets(world: World) -> Iterator[None]:
    """The shipped defaults' shape, small: 2 open checkouts and 4 units per client or email."""
    state = world.apps["checkout"].state
    lifted = state.checkout_settings
    state.checkout_settings = replace(
        lifted, max_open_per_client=2, max_open_per_email=2, max_held_units=4
    )
    yield
    state.checkout_settings = lifted


async def start(world: World, product_id: uuid.UUID, quantity: int, ip: str, email: str) -> int:
    shopper = world.guest()  # a fresh cookie jar each time: a new guest cart
    shopper.http.headers["X-Forwarded-For"] = ip
    await shopper.add(product_id, quantity)
    response = await shopper.checkout(email=email)
    if response.status_code == 429:
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["type"].endswith("/too-many-checkouts")
        assert int(response.headers["retry-after"]) > 0
    return response.status_code


@pytest.mark.usefixtures("budgets")
async def test_one_client_cannot_hold_a_product_sold_out(world: World) -> None:
    product_id = await world.product(on_hand=10)
    ip = "203.0.113.77"
    answers = [await start(world, product_id, 2, ip, f"hoarder-{i}@example.com") for i in range(6)]
    assert answers[:2] == [201, 201]
    assert set(answers[2:]) == {429}
    # A refusal claims nothing (the statement that reads the budget writes the claim only when
    # there is room).
    assert await claims_of(world, ip) == 0
    # Someone else still buys: the hoarder holds 4 of 10.
    assert (await world.stock(product_id))["available"] == 6
    assert await start(world, product_id, 1, "198.51.100.5", "someone@example.com") == 201


@pytest.mark.usefixtures("budgets")
async def test_one_email_from_many_addresses_and_one_big_cart_are_bounded(world: World) -> None:
    product_id = await world.product(on_hand=50)
    email = f"one-{uuid.uuid4().hex[:8]}@example.com"
    answers = [await start(world, product_id, 1, f"192.0.2.{10 + i}", email) for i in range(4)]
    assert answers == [201, 201, 429, 429]
    shopper = world.guest()
    await shopper.add(product_id, 5)
    too_big = await shopper.checkout(email="big@example.com")
    assert too_big.status_code == 422
    assert too_big.json()["type"].endswith("/checkout-too-large")
    assert (await world.stock(product_id))["available"] == 48


#: The advisory locks a backend holds on the budgets of the given subjects (checkout's keys).
_BUDGET_LOCKS_HELD = text(
    """
    SELECT count(*) FROM pg_locks
     WHERE locktype = 'advisory' AND pid = :pid
       AND ((classid::bigint << 32) | objid::bigint) IN (
           SELECT hashtextextended('checkout-budget:' || subject, 0)
             FROM unnest(CAST(:subjects AS text[])) AS subject)
    """
)


async def test_the_budgets_locks_last_no_longer_than_its_one_statement(world: World) -> None:
    """The budget is decided and claimed by one statement outside any transaction: once it has
    answered, its connection holds none of the address's and email's locks. Before, a
    transaction of four statements held them until its COMMIT, and every start from one address
    (a NAT; the benchmark's buyers) waited while the holder's process, busy, sent the next."""
    product_id = await world.product(on_hand=10)
    ip = f"198.51.100.{uuid.uuid4().int % 200 + 20}"
    email = f"once-{uuid.uuid4().hex[:8]}@example.com"
    checked: list[tuple[str, int]] = []

    async def budget_locks_held(pid: int) -> int:
        async with world.engine.connect() as connection:
            found = await connection.scalar(
                _BUDGET_LOCKS_HELD, {"pid": pid, "subjects": [ip, email]}
            )
        return int(found or 0)

    def after(conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if ip in parameter_texts(parameters) or f"checkout-budget:{ip}" in parameter_texts(
            parameters
        ):
            pid = conn.connection.driver_connection.get_server_pid()
            checked.append((" ".join(statement.split()), await_only(budget_locks_held(pid))))

    shopper = await guest_with(world, product_id, 1, ip)
    state = world.apps["checkout"].state
    engines = [state.db_engine.sync_engine, state.claim_engine.sync_engine]
    for engine in engines:
        event.listen(engine, "after_cursor_execute", after)
    try:
        response = await shopper.checkout(email=email)
    finally:
        for engine in engines:
            event.remove(engine, "after_cursor_execute", after)

    assert response.status_code == 201, response.text
    assert checked, "no statement carried the address"
    assert all(held == 0 for _, held in checked), checked
    [claim] = [s for s, _ in checked if "checkout.claim_hold_budget(" in s]
    assert claim.startswith("SELECT "), checked
    # Settled by the session row's transaction.
    assert await claims_of(world, ip) == 0


async def test_the_claim_is_settled_by_the_starts_own_transaction(world: World) -> None:
    """The request's transaction deletes the start's claim: a new checkout's by the statement
    that writes its row (and its event), a repeat of the open checkout's by a statement of its
    own. Either way no claim is left once the answer is given."""
    product_id = await world.product(on_hand=10)
    ip = f"198.51.100.{uuid.uuid4().int % 200 + 20}"

    def on_claims(statement: str, _parameters: Any, _connection: Any) -> str | None:
        flat = " ".join(statement.split())
        if "DELETE FROM checkout.hold_claims" not in flat:
            return None
        return "with the row" if "INSERT INTO checkout.checkout_sessions" in flat else "alone"

    shopper = await guest_with(world, product_id, 1, ip)
    email = f"settle-{uuid.uuid4().hex[:8]}@example.com"
    with statements_sent(world.apps["checkout"].state.db_engine, on_claims) as statements:
        first = await shopper.checkout(email=email)
        assert await claims_of(world, ip) == 0
        again = await shopper.checkout(email=email)

    assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
    assert again.json()["order_id"] == first.json()["order_id"]
    assert statements == ["with the row", "alone"]
    assert await claims_of(world, ip) == 0


#: Checkout's request transactions holding an advisory lock (a start's cart lock).
_CART_LOCKS_HELD = text(
    """
    SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted
       AND a.application_name = 'checkout' AND a.state = 'idle in transaction'
    """
)


async def test_a_start_takes_its_carts_lock_while_its_budget_is_claimed(world: World) -> None:
    """The claim is a statement on a pool of its own, sent beside the request's transaction:
    the cart's lock and the read of its open sessions do not wait for it (they did, one round
    trip each after it). Held up here by the budget's lock on the shopper's address, the claim
    lets the start's transaction take the cart's lock meanwhile; the start ends as before."""
    product_id = await world.product(on_hand=10)
    ip = f"198.51.100.{uuid.uuid4().int % 200 + 20}"
    shopper = await guest_with(world, product_id, 1, ip)
    async with world.engine.connect() as holder:
        await holder.execute(
            text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"),
            {"key": f"checkout-budget:{ip}"},
        )
        starting = asyncio.ensure_future(
            shopper.checkout(email=f"beside-{uuid.uuid4().hex[:8]}@example.com")
        )
        try:
            locked = 0
            for _ in range(200):
                # A connection per look: pg_stat_activity is read once per transaction.
                async with world.engine.connect() as looking:
                    locked = int(await looking.scalar(_CART_LOCKS_HELD) or 0)
                if locked or starting.done():
                    break
                await asyncio.sleep(0.05)
            assert locked == 1
            assert not starting.done()
        finally:
            await holder.execute(
                text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"),
                {"key": f"checkout-budget:{ip}"},
            )
            response = await starting
    assert response.status_code == 201, response.text
    assert await claims_of(world, ip) == 0


async def test_a_starts_statements_on_its_rows_are_built_once(world: World) -> None:
    """The read of the cart's open sessions and the new row's INSERT (with the claim's deletion)
    are one statement object each for every start, so their cache keys are memoized on them:
    they were built again for each start (the read in the repository, the INSERT by the unit
    of work's flush), their keys walked each time."""
    product_id = await world.product(on_hand=10)

    def kind_of(flat: str) -> str | None:
        if flat.startswith("SELECT checkout.checkout_sessions.id,") and "cart_id =" in flat:
            return "read"
        if "INSERT INTO checkout.checkout_sessions" in flat:  # (with its event's row)
            return "insert"
        return None

    shoppers = [await guest_with(world, product_id, 1, f"192.0.2.{30 + i}") for i in range(3)]
    with statement_objects_sent(world.apps["checkout"].state.db_engine, kind_of) as sent:
        for i, shopper in enumerate(shoppers):
            answer = await shopper.checkout(email=f"once-built-{i}@example.com")
            assert answer.status_code == 201, answer.text
    assert each_built_once(sent, {"read", "insert"}, 3), sent


async def guest_with(world: World, product_id: uuid.UUID, quantity: int, ip: str) -> Any:
    shopper = world.guest()
    shopper.http.headers["X-Forwarded-For"] = ip
    await shopper.add(product_id, quantity)
    return shopper


@pytest.mark.usefixtures("budgets")
async def test_many_checkouts_at_once_from_one_address_never_pass_its_budget(
    world: World,
) -> None:
    product_id = await world.product(on_hand=100)
    # Carts first, so that the checkouts themselves race.
    ip = f"203.0.113.{uuid.uuid4().int % 200 + 20}"
    shoppers = [await guest_with(world, product_id, 1, ip) for _ in range(10)]
    answers = await asyncio.gather(
        *(
            s.checkout(email=f"racer-{i}-{uuid.uuid4().hex[:6]}@example.com")
            for i, s in enumerate(shoppers)
        )
    )
    assert sorted(a.status_code for a in answers) == [201] * 2 + [429] * 8
    # One email from many addresses: 2 open checkouts.
    email = f"racer-{uuid.uuid4().hex[:8]}@example.com"
    shoppers = [await guest_with(world, product_id, 1, f"198.18.{i}.{i + 1}") for i in range(8)]
    answers = await asyncio.gather(*(s.checkout(email=email) for s in shoppers))
    assert sorted(a.status_code for a in answers) == [201] * 2 + [429] * 6
    # Units across one address's checkouts: 4, so of six carts of 3 only one is held.
    units_ip = "192.0.2.200"
    shoppers = [await guest_with(world, product_id, 3, units_ip) for _ in range(6)]
    answers = await asyncio.gather(
        *(s.checkout(email=f"units-{uuid.uuid4().hex[:8]}@example.com") for s in shoppers)
    )
    assert sorted(a.status_code for a in answers) == [201] + [429] * 5
    assert (await world.stock(product_id))["available"] == 100 - 2 - 2 - 3
    # Every claim became a session or was given back.
    assert await claims_of(world, ip) == 0
    assert await claims_of(world, units_ip) == 0


@pytest.mark.usefixtures("budgets")
async def test_checkouts_from_one_address_run_side_by_side(world: World) -> None:
    """One shopper's checkout waiting on a slow Stripe does not hold up another's from the same
    address: no budget lock is held across the call."""
    product_id = await world.product(on_hand=10)
    ip = "203.0.113.10"
    arrived, go = asyncio.Event(), asyncio.Event()

    async def stall(method: str, path: str, body: bytes) -> None:
        if method == "POST" and path == "/v1/checkout/sessions" and b"slow-buyer" in body:
            arrived.set()
            await go.wait()

    slow_shopper = await guest_with(world, product_id, 1, ip)
    quick_shopper = await guest_with(world, product_id, 1, ip)
    async with (
        interposed(world.standin_url, stall) as slow_stripe,
        stripe_at(world, slow_stripe),
    ):
        slow = asyncio.create_task(slow_shopper.checkout(email="slow-buyer@example.com"))
        try:
            await asyncio.wait_for(arrived.wait(), 15)
            # The slow checkout now sits inside Stripe's call, its stock reserved.
            quick = await asyncio.wait_for(quick_shopper.checkout(email="quick@example.com"), 15)
            assert quick.status_code == 201, quick.text
            assert not slow.done()
        finally:
            go.set()
        answer = await slow
    assert answer.status_code == 201, answer.text
    assert (await world.stock(product_id))["available"] == 8
    assert await claims_of(world, ip) == 0


@pytest.mark.usefixtures("budgets")
async def test_a_start_failing_after_its_claim_gives_the_claim_back(world: World) -> None:
    product_id = await world.product(on_hand=10)
    ip = "203.0.113.11"
    # Stripe down (nobody answers on its port): three refused starts from an address whose
    # budget is two open checkouts...
    async with stripe_at(world, f"http://127.0.0.1:{free_port()}", stripe_max_network_retries=0):
        for i in range(3):
            shopper = await guest_with(world, product_id, 1, ip)
            answer = await shopper.checkout(email=f"down-{i}@example.com")
            assert answer.status_code == 503, answer.text
            assert answer.json()["type"].endswith("/payment-provider-unavailable")
    assert await claims_of(world, ip) == 0
    assert (await world.stock(product_id))["available"] == 10

    # ... and catalog refusing the reservation (the stock went between pricing and reserving).
    async def sell_out(method: str, path: str, body: bytes) -> None:
        if path == "/internal/catalog/reservations":
            await world.set_stock(product_id, 0)

    async with interposed(world.catalog_url, sell_out) as catalog, catalog_at(world, catalog):
        for i in range(3):
            await world.set_stock(product_id, 10)
            shopper = await guest_with(world, product_id, 1, ip)
            answer = await shopper.checkout(email=f"gone-{i}@example.com")
            assert answer.status_code == 409, answer.text
            assert answer.json()["type"].endswith("/lines-unavailable")
    assert await claims_of(world, ip) == 0
    await world.set_stock(product_id, 10)
    # The address still has its whole budget.
    assert [await start(world, product_id, 1, ip, f"after-{i}@example.com") for i in range(3)] == [
        201,
        201,
        429,
    ]


async def test_a_stripe_that_does_not_answer_in_time_is_a_503_and_gives_everything_back(
    world: World,
) -> None:
    """``STRIPE_TIMEOUT_MS`` bounds each call to Stripe, whichever HTTP client the SDK is given:
    a session Stripe holds past it is answered 503 (retryable), its stock and claim given back."""
    product_id = await world.product(on_hand=10)
    ip = "203.0.113.12"
    held, never = asyncio.Event(), asyncio.Event()

    async def hold(method: str, path: str, body: bytes) -> None:
        if method == "POST" and path == "/v1/checkout/sessions":
            held.set()
            await never.wait()

    shopper = await guest_with(world, product_id, 1, ip)
    async with (
        interposed(world.standin_url, hold) as stuck_stripe,
        stripe_at(world, stuck_stripe, stripe_max_network_retries=0, stripe_timeout_ms=300),
    ):
        try:
            answer = await asyncio.wait_for(shopper.checkout(email="stuck@example.com"), 15)
        finally:
            never.set()
    assert held.is_set()
    assert answer.status_code == 503, answer.text
    assert answer.json()["type"].endswith("/payment-provider-unavailable")
    assert answer.headers["retry-after"]
    assert (await world.stock(product_id))["available"] == 10
    assert await claims_of(world, ip) == 0


async def test_the_tax_customer_is_made_while_catalog_reserves(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Stripe Tax, the customer carrying the shipping address is asked of Stripe while
    catalog holds the stock, not after: the reservation waits here until Stripe has been asked
    (for a customer made after the reservation, that never happens)."""
    monkeypatch.setenv("CHECKOUT_TAX", "true")
    product_id = await world.product(on_hand=10)
    asked = asyncio.Event()
    seen: list[bool] = []

    async def note_customer(method: str, path: str, body: bytes) -> None:
        if (method, path) == ("POST", "/v1/customers"):
            asked.set()

    async def wait_for_customer(method: str, path: str, body: bytes) -> None:
        if path == "/internal/catalog/reservations":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asked.wait(), 5)
            seen.append(asked.is_set())

    async with (
        interposed(world.standin_url, note_customer) as stripe,
        stripe_at(world, stripe),
        interposed(world.catalog_url, wait_for_customer) as catalog,
        catalog_at(world, catalog),
    ):
        shopper = await guest_with(world, product_id, 1, "192.0.2.201")
        answer = await shopper.checkout(email=f"taxed-{uuid.uuid4().hex[:8]}@example.com")

    assert seen == [True]
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["tax"] == (1800 + 600) // 5  # the GB rate, 20 %
    row = await world.row(body["order_id"])
    session = (await world.stripe_session(row["stripe_session_id"]))["session"]
    assert session["customer"].startswith("cus_")
    assert session["amount_total"] == body["total"]


async def test_a_refused_reservation_drops_the_customer_being_made(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The customer made beside the reservation is not waited for when catalog refuses: the
    shopper gets catalog's refusal, the claim is given back, and the next start goes through."""
    monkeypatch.setenv("CHECKOUT_TAX", "true")
    product_id = await world.product(on_hand=10)
    ip = "192.0.2.202"

    async def sell_out(method: str, path: str, body: bytes) -> None:
        if path == "/internal/catalog/reservations":
            await world.set_stock(product_id, 0)

    async with interposed(world.catalog_url, sell_out) as catalog, catalog_at(world, catalog):
        shopper = await guest_with(world, product_id, 1, ip)
        answer = await shopper.checkout(email=f"gone-{uuid.uuid4().hex[:8]}@example.com")
    assert answer.status_code == 409, answer.text
    assert answer.json()["type"].endswith("/lines-unavailable")
    assert await claims_of(world, ip) == 0

    await world.set_stock(product_id, 10)
    shopper = await guest_with(world, product_id, 1, ip)
    again = await shopper.checkout(email=f"back-{uuid.uuid4().hex[:8]}@example.com")
    assert again.status_code == 201, again.text
    assert again.json()["tax"] > 0


@pytest.mark.usefixtures("budgets")
async def test_a_claim_whose_request_died_lapses(world: World) -> None:
    product_id = await world.product(on_hand=10)
    ip = "203.0.113.12"
    async with world.engine.begin() as connection:
        for _ in range(2):
            await connection.execute(
                text(
                    "INSERT INTO checkout.hold_claims (id, cart_id, client_ip, email, units, "
                    "expires_at) VALUES (:id, :cart, :ip, 'crashed@example.com', 1, :at)"
                ),
                {
                    "id": uuid.uuid4(),
                    "cart": uuid.uuid4(),
                    "ip": ip,
                    "at": datetime.now(UTC) - timedelta(seconds=1),
                },
            )
    assert await start(world, product_id, 1, ip, "next@example.com") == 201
    assert await claims_of(world, ip) == 0
    # Those of an address that never comes back go with the reconciler's next pass.
    gone_ip = "203.0.113.13"
    async with world.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO checkout.hold_claims (id, cart_id, client_ip, email, units, "
                "expires_at) VALUES (:id, :cart, :ip, 'gone@example.com', 1, :at)"
            ),
            {
                "id": uuid.uuid4(),
                "cart": uuid.uuid4(),
                "ip": gone_ip,
                "at": datetime.now(UTC) - timedelta(seconds=1),
            },
        )
    state = world.apps["checkout"].state
    # (A batch of none: earlier tests' checkouts are not asked about at Stripe here.)
    await reconcile_once(
        world.engine, state.stripe, replace(state.checkout_settings, reconcile_batch=0)
    )
    assert await claims_of(world, gone_ip) == 0
