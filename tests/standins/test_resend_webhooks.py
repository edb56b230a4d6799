"""The Resend stand-in's webhooks: Svix-signed, per Resend's test addresses, retried until taken."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from ember_devkit.testing.apps import serve
from ember_devkit.testing.waiting import eventually_async
from litestar import Litestar, Request, Response, post
from litestar.testing import AsyncTestClient
from standins.resend import LOCAL_WEBHOOK_SECRET, ResendStandinSettings, create_app

KEY = {"Authorization": "Bearer re_test_key"}
SECRET = "whsec_" + base64.b64encode(b"a test secret for the stand-in").decode()


@dataclass
class Receiver:
    """A webhook endpoint served over real HTTP that records what it gets."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    #: Answer this many requests with 500 before taking any.
    refuse: int = 0

    def app(self) -> Litestar:
        receiver = self

        @post("/hook", status_code=200)
        async def hook(request: Request[Any, Any, Any]) -> Response[Any]:
            body = await request.body()
            receiver.received.append(
                {"headers": dict(request.headers), "body": body, "json": json.loads(body)}
            )
            if receiver.refuse > 0:
                receiver.refuse -= 1
                return Response({"error": "not now"}, status_code=500)
            return Response({"ok": True})

        return Litestar([hook])


@pytest.fixture(scope="module")
def served_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with serve(receiver.app(), lifespan="auto") as url:
        receiver.url = f"{url}/hook"
        yield receiver


@pytest.fixture
def receiver(served_receiver: Receiver) -> Receiver:
    served_receiver.received.clear()
    served_receiver.refuse = 0
    return served_receiver


@pytest.fixture
async def standin(receiver: Receiver) -> AsyncIterator[AsyncTestClient[Litestar]]:
    settings = ResendStandinSettings(
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        state_file="",
        webhook_delay_seconds=0.0,
        retry_base_seconds=0.05,
        max_attempts=4,
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    """Svix's verification, written out independently of the stand-in's code."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['svix-id']}.{headers['svix-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    versions = [s.split(",", 1) for s in headers["svix-signature"].split(" ")]
    fresh = abs(time.time() - int(headers["svix-timestamp"])) < 300
    return fresh and any(v == "v1" and hmac.compare_digest(s, expected) for v, s in versions)


async def send(standin: AsyncTestClient[Litestar], to: str) -> str:
    response = await standin.post(
        "/emails",
        json={
            "from": "Ember <orders@ember.local>",
            "to": [to],
            "subject": "Hello",
            "text": "Hi",
            "tags": [{"name": "template", "value": "welcome"}],
        },
        headers=KEY,
    )
    assert response.status_code == 200
    email_id: str = response.json()["id"]
    return email_id


async def all_sent(standin: AsyncTestClient[Litestar]) -> None:
    """Wait until no mail has webhooks still on their way (delivered, or given up)."""

    async def none_pending() -> bool:
        log = (await standin.get("/_standin/webhooks")).json()
        return bool(log["pending"] == 0)

    await eventually_async(none_pending, "no webhook on its way", within=10)


async def wait_for(receiver: Receiver, count: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while len(receiver.received) < count:
        assert time.monotonic() < deadline, f"got {len(receiver.received)} of {count} webhooks"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("to", "types"),
    [
        ("bounced@resend.dev", ["email.sent", "email.bounced"]),
        ("bounced+order-7@resend.dev", ["email.sent", "email.bounced"]),
        ("complained@resend.dev", ["email.sent", "email.delivered", "email.complained"]),
        ("delivered@resend.dev", ["email.sent", "email.delivered"]),
        ("shopper@example.com", ["email.sent", "email.delivered"]),
    ],
)
async def test_each_mail_is_reported_by_signed_webhooks(
    standin: AsyncTestClient[Litestar], receiver: Receiver, to: str, types: list[str]
) -> None:
    email_id = await send(standin, to)

    await wait_for(receiver, len(types))
    await asyncio.sleep(0.1)

    assert [r["json"]["type"] for r in receiver.received] == types
    ids = set()
    for request in receiver.received:
        headers, body, event = request["headers"], request["body"], request["json"]
        assert verify(headers, body)
        assert not verify(headers, body, secret=LOCAL_WEBHOOK_SECRET)
        assert headers["svix-id"].startswith("msg_")
        assert headers["content-type"] == "application/json"
        ids.add(headers["svix-id"])
        assert event["data"]["email_id"] == email_id
        assert event["data"]["to"] == [to]
        assert event["data"]["subject"] == "Hello"
        assert event["data"]["tags"] == {"template": "welcome"}
        assert event["created_at"].endswith("Z")
    assert len(ids) == len(types)  # every event has its own svix id
    if "email.bounced" in types:
        bounce = receiver.received[-1]["json"]["data"]["bounce"]
        assert bounce["type"] == "Permanent"
    fetched = (await standin.get(f"/emails/{email_id}", headers=KEY)).json()
    assert fetched["last_event"] == types[-1].removeprefix("email.")


async def test_a_refused_webhook_is_retried_with_the_same_id_and_a_fresh_signature(
    standin: AsyncTestClient[Litestar], receiver: Receiver
) -> None:
    receiver.refuse = 2
    email_id = await send(standin, "bounced@resend.dev")

    await wait_for(receiver, 4)  # sent x3 (two refused), then bounced

    sent = [r for r in receiver.received if r["json"]["type"] == "email.sent"]
    assert len(sent) == 3
    assert len({r["headers"]["svix-id"] for r in sent}) == 1
    assert all(verify(r["headers"], r["body"]) for r in sent)
    # The events keep their order: the bounce comes only after the sent event was taken.
    assert receiver.received[3]["json"]["type"] == "email.bounced"
    log = (await standin.get("/_standin/webhooks", params={"email_id": email_id})).json()
    attempts = [(d["type"], d["attempt"], d["status_code"]) for d in log["data"]]
    assert attempts[:3] == [("email.sent", 1, 500), ("email.sent", 2, 500), ("email.sent", 3, 200)]


async def test_a_webhook_that_is_never_taken_is_given_up(
    standin: AsyncTestClient[Litestar], receiver: Receiver
) -> None:
    receiver.refuse = 100
    email_id = await send(standin, "someone@example.com")

    await wait_for(receiver, 8)
    await all_sent(standin)  # every event given up: nothing more is coming

    # Each event is tried max_attempts times and then given up (Svix gives up on messages one
    # by one: the next event is still sent).
    types = [r["json"]["type"] for r in receiver.received]
    assert types == ["email.sent"] * 4 + ["email.delivered"] * 4
    log = (await standin.get("/_standin/webhooks", params={"email_id": email_id})).json()
    assert log["pending"] == 0
    assert [d["attempt"] for d in log["data"]] == [1, 2, 3, 4, 1, 2, 3, 4]
    assert (await standin.get(f"/emails/{email_id}", headers=KEY)).json()["last_event"] == "queued"


async def test_an_idempotent_replay_sends_no_new_webhooks(
    standin: AsyncTestClient[Litestar], receiver: Receiver
) -> None:
    body = {"from": "a@ember.local", "to": "x@example.com", "subject": "S", "text": "T"}
    headers = {**KEY, "Idempotency-Key": "replay-hooks"}
    await standin.post("/emails", json=body, headers=headers)
    await wait_for(receiver, 2)
    await standin.post("/emails", json=body, headers=headers)
    await all_sent(standin)  # a replay that scheduled webhooks would hold them here
    assert len(receiver.received) == 2


@pytest.mark.parametrize(
    ("to", "types", "last_event"),
    [
        ("shopper@example.com", ["email.delivered"], "delivered"),
        ("bounced@resend.dev", ["email.bounced"], "bounced"),
    ],
)
async def test_an_endpoint_gets_only_the_types_it_subscribes_to(
    receiver: Receiver, to: str, types: list[str], last_event: str
) -> None:
    """As a Resend endpoint set up for some event types: ``email.sent`` moves the mail on but
    sends no request (the notifier would only record it: one request and transaction per mail)."""
    settings = ResendStandinSettings(
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        state_file="",
        webhook_delay_seconds=0.0,
        webhook_events="email.delivered, email.bounced,email.complained",
    )
    async with AsyncTestClient(app=create_app(settings)) as standin:
        email_id = await send(standin, to)
        await wait_for(receiver, len(types))
        await all_sent(standin)
        fetched = (await standin.get(f"/emails/{email_id}", headers=KEY)).json()
    assert [r["json"]["type"] for r in receiver.received] == types
    assert fetched["last_event"] == last_event
