"""No live sign-up or reset token at rest (issue 10, finding 2), through the whole stack: after a
sign-up and a password reset have been mailed, neither token is in any Postgres table, any Redis
key or stream, or any admin answer; yet each still works when the shopper uses it."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from ember_shared.testing.stack import RunningStack
from ember_shared.testing.tokens import TokenFactory
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.stack

SCHEMAS = ("identity", "catalog", "cart", "checkout", "orders", "notifier")


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
                text(
                    "SELECT table_schema, table_name FROM information_schema.tables"
                    " WHERE table_schema = ANY(:s) AND table_type = 'BASE TABLE'"
                ),
                {"s": list(SCHEMAS)},
            ).all()
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
    gateway: httpx.Client, admin: dict[str, str], address: str, secret: str
) -> list[str]:
    listed = gateway.get("/api/admin/emails", params={"to": address}, headers=admin)
    assert listed.status_code == 200, listed.text
    found = ["/api/admin/emails"] if secret in listed.text else []
    for item in listed.json()["items"]:
        one = gateway.get(f"/api/admin/emails/{item['id']}", headers=admin)
        assert one.status_code == 200
        if secret in one.text:
            found.append(f"/api/admin/emails/{item['id']}")
    for path in ("/api/admin/emails/dead-letters", "/api/admin/users"):
        answer = gateway.get(path, headers=admin)
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
