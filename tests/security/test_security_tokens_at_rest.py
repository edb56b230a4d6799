"""No live sign-up, reset or order-link token at rest (issue 10, finding 2), through the whole
stack: after a sign-up and a password reset have been mailed, and after a guest's order has been
paid, mailed and shipped, none of those secrets is in any Postgres table, any Redis key or
stream, the stack's log or any admin answer; yet each still works when the shopper uses it."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.stack

CARD_OK = "4242 4242 4242 4242"


@pytest.fixture(scope="module")
def gateway(stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=15) as client:
        yield client


def postgres_holding(stack: RunningStack, secret: str) -> list[str]:
    """Every table (schema.table) of the stack's database with ``secret`` in some row."""
    url = stack.env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    found = []
    try:
        with engine.connect() as connection:
            tables = connection.execute(
                # Every schema of the stack's database, not only the services' own.
                text(
                    "SELECT table_schema, table_name FROM information_schema.tables"
                    " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                    " AND table_schema NOT LIKE 'pg\\_%' AND table_type = 'BASE TABLE'"
                ),
            ).all()
            assert {"identity", "checkout", "orders", "notifier"} <= {s for s, _ in tables}
            for schema, table in tables:
                binary = connection.execute(
                    text(
                        "SELECT column_name FROM information_schema.columns WHERE"
                        " table_schema = :s AND table_name = :t AND data_type = 'bytea'"
                    ),
                    {"s": schema, "t": table},
                ).scalars()
                # Text and JSON through the row's JSON; bytea (event envelopes) byte for byte.
                where = ["position(:secret in to_jsonb(t)::text) > 0"] + [
                    f"position(convert_to(:secret, 'UTF8') in t.\"{column}\") > 0"
                    for column in binary
                ]
                hit = connection.execute(
                    text(
                        f'SELECT 1 FROM "{schema}"."{table}" t WHERE '
                        + " OR ".join(where)
                        + " LIMIT 1"
                    ),
                    {"secret": secret},
                ).first()
                if hit:
                    found.append(f"{schema}.{table}")
    finally:
        engine.dispose()
    return found


def redis_holding(stack: RunningStack, secret: str) -> list[str]:
    """Every Redis key of the stack whose value (string, hash, list, set, stream) has ``secret``."""
    needle = secret.encode()
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    found = []
    try:
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            if kind == "string":
                values = [client.get(key) or b""]
            elif kind == "hash":
                values = [k + b"=" + v for k, v in client.hgetall(key).items()]
            elif kind == "list":
                values = list(client.lrange(key, 0, -1))
            elif kind == "set":
                values = list(client.smembers(key))
            elif kind == "zset":
                values = list(client.zrange(key, 0, -1))
            elif kind == "stream":
                values = [
                    b"".join(k + v for k, v in fields.items())
                    for _, fields in client.xrange(key, "-", "+")
                ]
            else:
                values = []
            if any(needle in value for value in values):
                found.append(key.decode(errors="replace"))
    finally:
        client.close()
    return found


def admin_answers_holding(
    gateway: httpx.Client,
    admin: dict[str, str],
    address: str,
    secret: str,
    extra: tuple[str, ...] = (),
) -> list[str]:
    listed = gateway.get("/api/admin/emails", params={"to": address}, headers=admin)
    assert listed.status_code == 200, listed.text
    found = ["/api/admin/emails"] if secret in listed.text else []
    for item in listed.json()["items"]:
        one = gateway.get(f"/api/admin/emails/{item['id']}", headers=admin)
        assert one.status_code == 200
        if secret in one.text:
            found.append(f"/api/admin/emails/{item['id']}")
    for path in ("/api/admin/emails/dead-letters", "/api/admin/users", *extra):
        answer = gateway.get(path, headers=admin)
        assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:200]}"
        if secret in answer.text:
            found.append(path)
    return found


def sent(gateway: httpx.Client, admin: dict[str, str], address: str, count: int) -> None:
    """Waits until the notifier has handed ``count`` mails to ``address`` to Resend."""
    deadline = time.monotonic() + 60
    while True:
        items = gateway.get("/api/admin/emails", params={"to": address}, headers=admin).json()[
            "items"
        ]
        if sum(1 for i in items if i["status"] == "sent") >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} mail(s) to {address} not sent: {items}")
        time.sleep(0.25)


def test_no_live_token_rests_anywhere(
    stack: RunningStack, gateway: httpx.Client, tokens: TokenFactory
) -> None:
    admin_token, _ = tokens.admin()
    admin = tokens.bearer(admin_token)
    address = f"at-rest-{uuid.uuid4().hex[:10]}@example.com"
    password = "Roast-" + secrets.token_urlsafe(12)

    asked = gateway.post("/api/auth/register", json={"email": address, "password": password})
    assert asked.status_code == 202, asked.text
    sign_up = stack.mailed_token(address, "/verify-email")
    sent(gateway, admin, address, 1)
    # The search does see what is there: the link's hash, as identity keeps it.
    assert "identity.sign_ups" in postgres_holding(
        stack, hashlib.sha256(sign_up.encode()).hexdigest()
    )
    assert postgres_holding(stack, sign_up) == []
    assert redis_holding(stack, sign_up) == []
    assert admin_answers_holding(gateway, admin, address, sign_up) == []
    opened = gateway.post("/api/auth/verify-email", json={"token": sign_up})
    assert opened.status_code == 201, opened.text

    assert gateway.post("/api/auth/forgot-password", json={"email": address}).status_code == 202
    reset = stack.mailed_token(address, "/reset-password")
    sent(gateway, admin, address, 3)  # the link, the welcome, the reset
    assert postgres_holding(stack, reset) == []
    assert redis_holding(stack, reset) == []
    assert admin_answers_holding(gateway, admin, address, reset) == []
    # It was live all along: the shopper's reset works with it.
    new_password = "Brew-" + secrets.token_urlsafe(12)
    done = gateway.post("/api/auth/reset-password", json={"token": reset, "password": new_password})
    assert done.status_code == 200, done.text


def log_holding(stack: RunningStack, secret: str) -> bool:
    """Whether the stack's processes logged ``secret`` (their output goes to one file)."""
    if stack.log_path is None or not stack.log_path.exists():
        return False
    return secret in stack.log_path.read_text(errors="replace")


def mailed_order_link(stack: RunningStack, to: str, order_id: str, count: int) -> list[str]:
    """The order links (``/order/{id}?...``, with whatever key they carry) of the ``count``
    mails to ``to`` that link the order, read from the Resend stand-in's mailbox."""
    pattern = re.compile(rf"/order/{re.escape(order_id)}\?[^\s\"'<>]+")
    inbox = f"{stack.service_url('resend-standin')}/_standin/emails"
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=10) as client:
        while True:
            links = []
            for mail in client.get(inbox, params={"to": to}).json()["data"]:
                found = pattern.search(str(mail.get("text") or mail.get("html") or ""))
                if found:
                    links.append(found.group(0))
            if len(links) >= count:
                return links
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} mail(s) linking order {order_id} not sent: {links}")
            time.sleep(0.2)


def link_secret(link: str) -> str:
    """The capability in an order link: the value of its one query parameter."""
    query = link.split("?", 1)[1]
    assert "&" not in query, link
    return query.split("=", 1)[1]


def test_no_guest_order_link_rests_anywhere(
    stack: RunningStack, gateway: httpx.Client, tokens: TokenFactory
) -> None:
    admin_token, _ = tokens.admin()
    admin = tokens.bearer(admin_token)
    address = f"guest-{uuid.uuid4().hex[:10]}@example.com"
    created = gateway.post(
        "/api/admin/products/",
        json={
            "name": f"At Rest Coffee {uuid.uuid4().hex[:8]}",
            "price": 1800,
            "on_hand": 5,
            "currency": "USD",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    with httpx.Client(base_url=stack.url, timeout=20) as guest:
        added = guest.post("/api/cart/items", json={"product_id": created.json()["id"]})
        assert added.status_code in (200, 201), added.text
        started = guest.post(
            "/api/checkout/session",
            json={
                "email": address,
                "shipping_address": {
                    "name": "Ada Lovelace",
                    "line1": "12 Roastery Lane",
                    "city": "Portland",
                    "state": "OR",
                    "postal_code": "97201",
                    "country": "US",
                },
            },
        )
        assert started.status_code == 201, started.text
    order_id, checkout_url = started.json()["order_id"], started.json()["checkout_url"]
    paid = httpx.post(
        checkout_url,
        data={"card_number": CARD_OK, "exp": "12 / 34", "cvc": "123", "name": "Ada Lovelace"},
        timeout=20,
    )
    assert paid.status_code == 303, paid.text
    sent(gateway, admin, address, 1)  # the order's confirmation
    [confirmation] = mailed_order_link(stack, address, order_id, 1)
    secret = link_secret(confirmation)
    # Shipped: the shipment mail links the order as well.
    shipped = gateway.post(
        f"/api/admin/orders/{order_id}/ship",
        json={"carrier": "UPS", "tracking_number": f"1Z{uuid.uuid4().hex[:16].upper()}"},
        headers=admin,
    )
    assert shipped.status_code == 200, shipped.text
    sent(gateway, admin, address, 2)
    links = mailed_order_link(stack, address, order_id, 2)
    assert {link_secret(link) for link in links} == {secret}, links

    assert postgres_holding(stack, secret) == []
    assert redis_holding(stack, secret) == []
    assert not log_holding(stack, secret)
    admin_views = (
        f"/api/admin/orders/{order_id}",
        f"/api/admin/orders?q={address}",
        f"/api/checkout/session/{order_id}",
    )
    assert admin_answers_holding(gateway, admin, address, secret, admin_views) == []
    # The search does see what is there: the link's hash, as orders keeps it; the order in the log.
    assert "orders.orders" in postgres_holding(stack, hashlib.sha256(secret.encode()).hexdigest())
    assert stack.log_path is None or log_holding(stack, order_id)

    # It is live: the mailed link opens the order page, and the order through the API, from a
    # browser that never saw the checkout; without it, the order is nobody's business.
    with httpx.Client(base_url=stack.url, timeout=20) as elsewhere:
        page = elsewhere.get(confirmation)
        assert page.status_code == 200, page.text[:300]
        assert order_id.split("-")[-1][-8:].upper() in page.text
        assert "shipment-heading" in page.text
        assert elsewhere.get(f"/api/orders/{order_id}?token={secret}").status_code == 200
        assert elsewhere.get(f"/api/orders/{order_id}").status_code == 404
        assert elsewhere.get(f"/order/{order_id}").status_code == 404
    # Using it stored it nowhere either (no cache, limiter or log keyed by the URL).
    assert postgres_holding(stack, secret) == []
    assert redis_holding(stack, secret) == []
    assert not log_holding(stack, secret)
