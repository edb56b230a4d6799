"""The authorization matrix (issue 10), generated from the services' own OpenAPI documents.

Every operation of every service is classified (public, signed-in, admin, internal) from its
document: the ``/internal/`` prefix, an ``admin...`` tag, the security requirement (Bearer only:
signed in; Bearer or nothing: public). What a document cannot say is listed in ``UNDOCUMENTED``;
a route that is neither classified nor listed fails the test, so a route added later is covered
without anyone writing a test for it, and coverage cannot shrink silently.

Each operation is then called once per role (anonymous, shopper A who owns an order, an address,
a subscription, a session and a cart, shopper B, admin, the service credential): public routes
through Caddy, internal ones on the service's own port (Caddy must answer 404 for them). Path
parameters naming one of A's resources get A's id, so B's calls are attempts on A's resource.
Then forged tokens on every signed-in and admin route, and forged webhook signatures.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
import stripe
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import KeyPair, TokenFactory
from ember_devkit.testing.waiting import eventually
from security_testkit import (
    ADDRESS,
    ADMIN,
    CARD_OK,
    INTERNAL,
    PROBLEM,
    PUBLIC,
    ROLES,
    SIGNED_IN,
    UNDOCUMENTED,
    WEBHOOK,
    Operation,
    Shopper,
    documents,
    enumerate_operations,
    product,
    sign_up,
)
from security_testkit import request_for as call_for

pytestmark = pytest.mark.stack


@dataclass
class World:
    stack: RunningStack
    gateway: httpx.Client
    operations: list[Operation]
    a: Shopper
    b: Shopper
    admin: dict[str, str]
    service: dict[str, str]
    product_id: str
    #: In A's cart only: B's cart answers must never show it.
    a_cart_product_id: str
    owned: dict[str, str]

    def headers(self, role: str) -> dict[str, str]:
        return {
            "anonymous": {},
            "shopper-a": self.a.headers,
            "shopper-b": self.b.headers,
            "admin": self.admin,
            "service": self.service,
        }[role]


@pytest.fixture(scope="module")
def world(stack: RunningStack, tokens: TokenFactory) -> Iterator[World]:
    docs = documents(stack)
    operations, _ = enumerate_operations(docs)
    admin_token, _ = tokens.admin()
    admin = tokens.bearer(admin_token)
    service = {"X-Service-Token": stack.env["INTERNAL_SERVICE_TOKEN"]}
    with (
        httpx.Client(base_url=stack.url, timeout=30) as gateway,
        httpx.Client(base_url=stack.service_url("stripe-standin"), timeout=30) as stripe_page,
    ):
        product_id, a_cart_product_id = (product(gateway, admin) for _ in range(2))
        a, b = sign_up(stack, gateway, "a"), sign_up(stack, gateway, "b")

        address = gateway.post("/api/user/addresses", json=ADDRESS, headers=a.headers)
        assert address.status_code == 201, address.text
        subscribed = gateway.post(
            "/api/subscriptions",
            json={"product_id": product_id, "interval": "month", "shipping_address": ADDRESS},
            headers=a.headers,
        )
        assert subscribed.status_code == 201, subscribed.text
        subscription_id = str(subscribed.json()["subscription_id"])
        # Active, so A's pause, skip and the like run past the state checks.
        paid = stripe_page.post(
            subscribed.json()["checkout_url"],
            data={"card_number": CARD_OK, "exp": "12 / 34", "cvc": "123", "name": "Ada"},
        )
        assert paid.status_code == 303, paid.text[:300]
        eventually(
            lambda: (
                gateway.get(f"/api/subscriptions/{subscription_id}", headers=a.headers)
                .json()
                .get("status")
                == "active"
            ),
            "A's subscription to become active",
        )
        added = gateway.post(
            "/api/cart/items", json={"product_id": product_id, "quantity": 1}, headers=a.headers
        )
        assert added.status_code in (200, 201), added.text
        started = gateway.post(
            "/api/checkout/session",
            json={"email": a.email, "shipping_address": ADDRESS},
            headers=a.headers,
        )
        assert started.status_code == 201, started.text
        order_id = str(started.json()["order_id"])
        page = stripe_page.post(
            started.json()["checkout_url"],
            data={"card_number": CARD_OK, "exp": "12 / 34", "cvc": "123", "name": "Ada"},
        )
        assert page.status_code == 303, page.text[:300]
        eventually(
            lambda: gateway.get(f"/api/orders/{order_id}", headers=a.headers).status_code == 200,
            "A's paid order to reach orders",
        )
        # Shipped, so A can read its tracking and B's refusal there means something.
        shipped = eventually(
            lambda: (
                gateway.post(
                    f"/api/admin/orders/{order_id}/ship",
                    json={"carrier": "UPS", "tracking_number": "1Z999AA10123456784"},
                    headers=admin,
                ).status_code
                in (200, 201, 202)
            ),
            "A's order to ship",
        )
        assert shipped
        # A's cart holds a line again, so B's cart answers can be checked for it (the paid
        # order's event empties the cart meanwhile: 409 until that has landed).
        eventually(
            lambda: (
                gateway.post(
                    "/api/cart/items",
                    json={"product_id": a_cart_product_id, "quantity": 2},
                    headers=a.headers,
                ).status_code
                in (200, 201)
            ),
            "A's cart to take a line again",
        )
        gateway.cookies.clear()
        owned = {
            "order_id": order_id,
            "address_id": str(address.json()["id"]),
            "subscription_id": subscription_id,
            "session_id": a.session_id,
        }
        yield World(
            stack, gateway, operations, a, b, admin, service, product_id, a_cart_product_id, owned
        )


def path_ids(world: World) -> Callable[[str], str]:
    def ids(name: str) -> str:
        if name in world.owned:
            return world.owned[name]
        if name in ("product_id", "ref"):
            return world.product_id
        return str(uuid.uuid4())

    return ids


def request_for(world: World, op: Operation) -> dict[str, Any]:
    """The URL (path filled), query and body of one call of ``op``, with A's ids."""
    return call_for(op, path_ids(world))


@dataclass
class Call:
    op: Operation
    role: str
    status: int
    content_type: str
    text: str


def send(world: World, client: httpx.Client, op: Operation, role: str) -> Call:
    call = request_for(world, op)
    headers = {**call.pop("headers", {}), **world.headers(role)}
    client.cookies.clear()
    answer = client.request(op.method, headers=headers, **call)
    return Call(op, role, answer.status_code, answer.headers.get("content-type", ""), answer.text)


def last_of_all(op: Operation, role: str) -> tuple[int, int]:
    """Calls that end or change something of A's (a delete, signing out) go after the others,
    and A ending A's own session goes last: A's token is spent by it."""
    if role == "shopper-a" and op.path == "/api/user/sessions/{session_id}":
        return (3, 0)
    if op.path == "/api/auth/logout":
        return (2, 0)  # revokes the caller's session: its token is spent by it
    if op.method == "DELETE" or op.path.endswith(("/cancel", "/refund", "/refunds")):
        return (1, 0)
    return (0, 0)


def problems_in(calls: list[Call]) -> list[str]:
    """Every way the calls break the matrix's rules."""
    wrong = []
    for c in calls:
        where = f"{c.role} {c.op.kind} {c.op.name} -> {c.status}"
        if c.status >= 500:
            wrong.append(f"{where}: server error {c.text[:160]}")
        if 400 <= c.status < 500 and not c.content_type.startswith(PROBLEM):
            wrong.append(f"{where}: refusal not problem+json ({c.content_type})")
        ok = 200 <= c.status < 300
        kind = c.op.kind
        if kind in (SIGNED_IN, ADMIN):
            if c.role in ("anonymous", "service") and c.status != 401:
                wrong.append(f"{where}: expected 401")
            if kind == ADMIN and c.role in ("shopper-a", "shopper-b") and c.status != 403:
                wrong.append(f"{where}: expected 403")
        if kind == INTERNAL:
            if c.role != "service" and c.status not in (401, 403, 404):
                wrong.append(f"{where}: internal route open without the service credential")
            if c.role == "service" and c.status in (401, 403):
                wrong.append(f"{where}: service credential refused on its own route")
        if kind == WEBHOOK and ok:
            wrong.append(f"{where}: webhook accepted without a signature")
        if c.op.owned and kind in (PUBLIC, SIGNED_IN):
            if c.role == "shopper-b" and c.status not in (403, 404):
                wrong.append(f"{where}: B reached A's resource (expected 403/404)")
            if c.role == "anonymous" and ok:
                wrong.append(f"{where}: anonymous reached A's resource")
    return wrong


def leaks_to_b(world: World, calls: list[Call]) -> list[str]:
    """A's ids (and, in cart answers, A's cart line) in any answer shopper B got."""
    wrong = []
    for c in calls:
        if c.role != "shopper-b" or not 200 <= c.status < 300:
            continue
        secrets_of_a = [*world.owned.values(), world.a.email]
        if c.op.service == "cart":
            secrets_of_a.append(world.a_cart_product_id)
        for value in secrets_of_a:
            if value in c.text:
                wrong.append(f"shopper-b {c.op.name}: answer holds A's {value}")
    return wrong


def test_every_route_is_classified(stack: RunningStack) -> None:
    operations, unclassified = enumerate_operations(documents(stack))
    assert not unclassified, (
        "routes neither classified by their OpenAPI document (security, admin tag, /internal/) "
        f"nor listed in UNDOCUMENTED: {unclassified}"
    )
    listed = {(o.method, o.path) for o in operations}
    stale = sorted(f"{m} {p}" for m, p in UNDOCUMENTED if (m, p) not in listed)
    assert not stale, f"UNDOCUMENTED lists routes no service has: {stale}"
    kinds = Counter(o.kind for o in operations)
    # Each kind is really there: a document that stopped saying anything would show here.
    assert min(kinds[k] for k in (PUBLIC, SIGNED_IN, ADMIN, INTERNAL, WEBHOOK)) > 0, kinds


def test_a_route_nobody_classified_is_caught() -> None:
    """The guard above, on a made-up document: a new route with no security requirement, no
    admin tag and no /internal/ prefix, and not listed, is reported rather than skipped."""
    document = {
        "paths": {
            "/api/new-thing": {"get": {"tags": ["things"]}},
            "/api/new-thing/{thing_id}": {"delete": {"security": [{"BearerToken": []}]}},
            "/internal/new-thing": {"post": {}},
            "/api/admin/new-thing": {"get": {"tags": ["admin: things"]}},
            "/api/products": {"get": {"tags": ["products"]}},
        }
    }
    operations, unclassified = enumerate_operations({"made-up": document})
    assert unclassified == ["made-up GET /api/new-thing"]
    assert {(o.path, o.kind) for o in operations} == {
        ("/api/new-thing/{thing_id}", SIGNED_IN),
        ("/internal/new-thing", INTERNAL),
        ("/api/admin/new-thing", ADMIN),
        ("/api/products", PUBLIC),
    }


def test_every_operation_as_every_role(world: World) -> None:
    plan = sorted(
        ((op, role) for op in world.operations for role in ROLES),
        key=lambda pair: last_of_all(*pair),
    )
    calls: list[Call] = []
    direct: dict[str, httpx.Client] = {}
    try:
        for op, role in plan:
            if op.kind == INTERNAL:
                client = direct.setdefault(
                    op.service,
                    httpx.Client(base_url=world.stack.service_url(op.service), timeout=30),
                )
            else:
                client = world.gateway
            calls.append(send(world, client, op, role))
        # Caddy never routes /internal/*, whoever asks.
        for op in {o.path: o for o in world.operations if o.kind == INTERNAL}.values():
            calls.append(send(world, world.gateway, op, "service"))
            through = calls.pop()
            assert through.status == 404, f"Caddy routed {op.path}: {through.status}"
            assert through.content_type.startswith(PROBLEM), through.content_type
    finally:
        for client in direct.values():
            client.close()
    wrong = problems_in(calls) + leaks_to_b(world, calls)
    # B's refusals only mean something if the resource is there: A reads each one.
    wrong += [
        f"shopper-a {c.op.name} -> {c.status}: the owner cannot read it"
        for c in calls
        if c.role == "shopper-a" and c.op.owned and c.op.method == "GET"
        if c.op.kind in (PUBLIC, SIGNED_IN) and c.status != 200
    ]
    granted = Counter(c.role for c in calls if 200 <= c.status < 300)
    refusals = Counter(c.status for c in calls if c.status >= 400)
    print(
        f"authorization matrix: {len(world.operations)} operations x {len(ROLES)} roles = "
        f"{len(calls)} calls; refusals by status: "
        + ", ".join(f"{s}: {n}" for s, n in sorted(refusals.items()))
        + "; 2xx by role: "
        + ", ".join(f"{r}: {granted[r]}" for r in ROLES)
    )
    assert not wrong, "\n".join(wrong)
    # Admin gets in where it should: a matrix of refusals alone would prove nothing.
    assert granted["admin"] >= sum(1 for o in world.operations if o.kind == ADMIN) // 2, granted


# --- forged tokens -----------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hs256(claims: dict[str, Any], secret: bytes, kid: str | None) -> str:
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(mac)}"


def forgeries(world: World, tokens: TokenFactory) -> tuple[str, dict[str, str]]:
    """A genuine admin token for shopper A's account on a session of its own, and tokens with
    the same claims, each wrong in one way: only the forgery can be why one is refused."""
    user = uuid.UUID(world.a.user_id)
    admin = ("customer", "admin")
    sid = uuid.uuid4().hex
    genuine = tokens.mint(user, roles=admin, session_id=sid)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    key = world.gateway.get("/api/auth/jwks.json").json()["keys"][0]
    kid = key.get("kid")
    public_pem = world.stack.env.get("AUTH_PUBLIC_KEY_PEM", "")
    none = {"alg": "none", "typ": "JWT", "kid": kid}
    return genuine, {
        "alg-none": f"{_b64(json.dumps(none).encode())}.{_b64(json.dumps(claims).encode())}.",
        "hs256-jwks-x": _hs256(claims, key["x"].encode(), kid),
        "hs256-jwks-json": _hs256(claims, json.dumps(key).encode(), kid),
        "hs256-public-pem": _hs256(claims, public_pem.encode(), kid),
        "expired": tokens.mint(user, roles=admin, session_id=sid, expires_in=-120),
        "wrong-audience": tokens.mint(user, roles=admin, session_id=sid, aud="another-api"),
        "wrong-issuer": tokens.mint(
            user, roles=admin, session_id=sid, iss="https://issuer.invalid"
        ),
        "unknown-key": tokens.mint(
            user, roles=admin, session_id=sid, key_pem=KeyPair.generate().private_pem
        ),
    }


def test_forged_tokens_are_refused_on_every_signed_in_route(
    world: World, tokens: TokenFactory
) -> None:
    genuine, forged = forgeries(world, tokens)
    guarded = [o for o in world.operations if o.kind in (SIGNED_IN, ADMIN)]
    for path in ("/api/auth/me", "/api/admin/users", "/api/admin/orders"):
        control = world.gateway.get(path, headers=tokens.bearer(genuine))
        assert control.status_code == 200, f"the genuine token on {path}: {control.text[:200]}"
    wrong: list[str] = []
    refusals: Counter[int] = Counter()
    for op in guarded:
        for label, token in forged.items():
            call = request_for(world, op)
            headers = {**call.pop("headers", {}), "Authorization": f"Bearer {token}"}
            world.gateway.cookies.clear()
            answer = world.gateway.request(op.method, headers=headers, **call)
            refusals[answer.status_code] += 1
            if answer.status_code != 401:
                wrong.append(f"{label} {op.name} -> {answer.status_code} {answer.text[:120]}")
            elif not answer.headers.get("content-type", "").startswith(PROBLEM):
                wrong.append(f"{label} {op.name}: refusal not problem+json")
    print(
        f"forged tokens: {len(guarded)} operations x {len(forged)} forgeries; "
        f"answers: {dict(refusals)}"
    )
    assert not wrong, "\n".join(wrong)


# --- forged webhooks ---------------------------------------------------------------------------


def test_forged_stripe_and_resend_webhooks_are_refused(world: World) -> None:
    webhooks = {o.service: o.path for o in world.operations if o.kind == WEBHOOK}
    assert set(webhooks) == {"checkout", "notifier"}, webhooks
    stripe_payload = json.dumps(
        {
            "id": f"evt_matrix_{uuid.uuid4().hex[:8]}",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_test_matrix", "payment_status": "paid"}},
        }
    )
    secret = world.stack.env["STRIPE_WEBHOOK_SECRET"]
    # A made-up secret, the stand-in's public one, and the real one's signature on a payload
    # changed after signing.
    for key, body in (
        ("whsec_forged", stripe_payload),
        ("whsec_ember_local_standin", stripe_payload),
        (secret, stripe_payload + " "),
    ):
        signed = stripe.WebhookSignature.generate_signature_header(stripe_payload, key)
        answer = world.gateway.post(
            webhooks["checkout"],
            content=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": signed},
        )
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
    genuine = stripe.WebhookSignature.generate_signature_header(stripe_payload, secret)
    answer = world.gateway.post(
        webhooks["checkout"],
        content=stripe_payload,
        headers={"Content-Type": "application/json", "Stripe-Signature": genuine},
    )
    assert answer.status_code == 200, answer.text

    resend_payload = json.dumps(
        {"type": "email.bounced", "created_at": "2026-01-01T00:00:00Z", "data": {"email_id": "x"}}
    )
    msg_id, stamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    wrong_key = secrets.token_bytes(24)
    mac = hmac.new(wrong_key, f"{msg_id}.{stamp}.{resend_payload}".encode(), hashlib.sha256)
    for signature in (f"v1,{base64.b64encode(mac.digest()).decode()}", "", "v1,"):
        answer = world.gateway.post(
            webhooks["notifier"],
            content=resend_payload,
            headers={
                "Content-Type": "application/json",
                "svix-id": msg_id,
                "svix-timestamp": stamp,
                "svix-signature": signature,
            },
        )
        assert answer.status_code in (400, 401), answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
    # The same request signed with the endpoint's secret is taken: the refusals were the
    # signature's doing.
    real_key = base64.b64decode(world.stack.env["RESEND_WEBHOOK_SECRET"].removeprefix("whsec_"))
    mac = hmac.new(real_key, f"{msg_id}.{stamp}.{resend_payload}".encode(), hashlib.sha256)
    answer = world.gateway.post(
        webhooks["notifier"],
        content=resend_payload,
        headers={
            "Content-Type": "application/json",
            "svix-id": msg_id,
            "svix-timestamp": stamp,
            "svix-signature": f"v1,{base64.b64encode(mac.digest()).decode()}",
        },
    )
    assert answer.status_code == 200, answer.text
