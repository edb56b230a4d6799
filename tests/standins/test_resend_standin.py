"""The Resend stand-in speaks Resend's API: shapes, auth, idempotency, injected failures, inbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ember_devkit.testing.waiting import eventually_async as eventually
from litestar import Litestar
from litestar.testing import AsyncTestClient
from standins.resend import ResendStandinSettings, Store, create_app

KEY = {"Authorization": "Bearer re_test_key"}


def mail(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": "Ember Coffee <orders@ember.local>",
        "to": ["shopper@example.com"],
        "subject": "Your order",
        "html": "<p>Thanks!</p>",
        "text": "Thanks!",
        "tags": [{"name": "template", "value": "order_confirmation"}],
        "headers": {"X-Entity-Ref-ID": "abc"},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def settings(**changes: Any) -> ResendStandinSettings:
    values: dict[str, Any] = {"webhook_url": "off", "state_file": ""}
    values.update(changes)
    return ResendStandinSettings(**values)


@pytest.fixture
async def standin() -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings())) as client:
        yield client


async def test_a_look_that_waits_is_answered_when_the_mail_arrives() -> None:
    # The store itself: the test client runs the app behind a blocking portal, so a request
    # that waits would hold the test's loop.
    store = Store(None)
    look = asyncio.create_task(store.first_to("Shopper@example.com", 20))

    async def waiting() -> bool:
        return "shopper@example.com" in store._awaited

    await eventually(waiting, "the look waiting")
    assert not look.done()

    sent = {"id": "mail-1", "to": ["shopper@example.com"], "subject": "Your order"}
    store.add(sent, None, "fingerprint")

    assert await asyncio.wait_for(look, 10) == [sent]
    assert store._awaited == {}
    # A look for an address with mail already is answered at once, whatever its wait.
    assert await asyncio.wait_for(store.first_to("shopper@example.com", 20), 10) == [sent]


async def test_a_wait_out_of_bounds_is_refused(standin: AsyncTestClient[Litestar]) -> None:
    answered = await standin.get("/_standin/emails", params={"to": "a@b.c", "wait": "0.1"})
    assert answered.json() == {"data": []}
    for wait in ("31", "-1", "soon"):
        refused = await standin.get("/_standin/emails", params={"to": "a@b.c", "wait": wait})
        assert refused.status_code == 422, wait  # Resend says 422 to what it cannot take


async def test_a_send_answers_an_id_and_the_mail_can_be_read_back(
    standin: AsyncTestClient[Litestar],
) -> None:
    response = await standin.post("/emails", json=mail(), headers=KEY)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    email_id = response.json()["id"]
    assert set(response.json()) == {"id"}

    fetched = await standin.get(f"/emails/{email_id}", headers=KEY)
    assert fetched.status_code == 200
    body = fetched.json()
    assert body["object"] == "email"
    assert body["id"] == email_id
    assert body["to"] == ["shopper@example.com"]
    assert body["from"] == "Ember Coffee <orders@ember.local>"
    assert body["subject"] == "Your order"
    assert body["html"] == "<p>Thanks!</p>"
    assert body["text"] == "Thanks!"
    assert body["last_event"] in {"queued", "sent", "delivered"}
    assert body["created_at"].endswith("Z")

    listed = (await standin.get("/_standin/emails", params={"to": "SHOPPER@example.com"})).json()
    assert [e["id"] for e in listed["data"]] == [email_id]
    assert listed["data"][0]["headers"] == {"X-Entity-Ref-ID": "abc"}
    assert (await standin.get("/_standin/emails", params={"to": "other@example.com"})).json() == {
        "data": []
    }
    resend_list = (await standin.get("/emails", headers=KEY)).json()
    assert resend_list["object"] == "list"
    assert [e["id"] for e in resend_list["data"]] == [email_id]


async def test_a_single_recipient_string_and_named_addresses_are_accepted(
    standin: AsyncTestClient[Litestar],
) -> None:
    response = await standin.post(
        "/emails", json=mail(to="Ada <ada@example.com>", html=None), headers=KEY
    )
    assert response.status_code == 200
    (stored,) = (await standin.get("/_standin/emails", params={"to": "ada@example.com"})).json()[
        "data"
    ]
    assert stored["to"] == ["ada@example.com"]
    assert stored["html"] is None


@pytest.mark.parametrize(
    ("headers", "status", "name"),
    [
        ({}, 401, "missing_api_key"),
        ({"Authorization": "Bearer "}, 401, "missing_api_key"),
        ({"Authorization": "Basic cmVfeDp4"}, 401, "missing_api_key"),
        ({"Authorization": "Bearer sk_test_123"}, 403, "invalid_api_key"),
    ],
)
async def test_the_api_needs_a_resend_key(
    standin: AsyncTestClient[Litestar], headers: dict[str, str], status: int, name: str
) -> None:
    for method, path in (("POST", "/emails"), ("GET", "/emails/x"), ("GET", "/emails")):
        response = await standin.request(method, path, json=mail(), headers=headers)
        assert response.status_code == status
        assert response.json() == {
            "statusCode": status,
            "message": response.json()["message"],
            "name": name,
        }
    assert (await standin.get("/_standin/emails")).json() == {"data": []}


@pytest.mark.parametrize(
    ("body", "name", "fragment"),
    [
        (mail(**{"from": None}), "missing_required_field", "`from`"),
        (mail(**{"from": "nobody"}), "validation_error", "`from`"),
        (mail(to=None), "missing_required_field", "`to`"),
        (mail(to=[]), "missing_required_field", "`to`"),
        (mail(to=["not-an-address"]), "validation_error", "`to`"),
        (mail(to=[f"a{i}@example.com" for i in range(51)]), "validation_error", "`to`"),
        (mail(subject=None), "missing_required_field", "`subject`"),
        (mail(html=None, text=None), "missing_required_field", "`html`"),
        (mail(tags=[{"name": "bad name!", "value": "x"}]), "validation_error", "`tags`"),
        (mail(cc=["nope"]), "validation_error", "`cc`"),
        (["not", "an", "object"], "validation_error", "JSON object"),
    ],
)
async def test_invalid_sends_are_refused_as_resend_does(
    standin: AsyncTestClient[Litestar], body: Any, name: str, fragment: str
) -> None:
    response = await standin.post("/emails", json=body, headers=KEY)
    assert response.status_code == 422
    assert response.json()["name"] == name
    assert response.json()["statusCode"] == 422
    assert fragment in response.json()["message"]
    assert (await standin.get("/_standin/emails")).json() == {"data": []}


async def test_a_body_that_is_not_json_is_refused(standin: AsyncTestClient[Litestar]) -> None:
    response = await standin.post(
        "/emails", content=b"{nope", headers={**KEY, "content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["name"] == "validation_error"


async def test_the_same_idempotency_key_and_body_give_the_same_id_and_one_mail(
    standin: AsyncTestClient[Litestar],
) -> None:
    headers = {**KEY, "Idempotency-Key": "evt-1:order_confirmation"}

    first = await standin.post("/emails", json=mail(), headers=headers)
    second = await standin.post("/emails", json=mail(), headers=headers)

    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert len((await standin.get("/_standin/emails")).json()["data"]) == 1

    # Another key is another mail.
    third = await standin.post("/emails", json=mail(), headers={**KEY, "Idempotency-Key": "k2"})
    assert third.json()["id"] != first.json()["id"]
    assert len((await standin.get("/_standin/emails")).json()["data"]) == 2


async def test_the_same_key_with_another_body_is_a_conflict(
    standin: AsyncTestClient[Litestar],
) -> None:
    headers = {**KEY, "Idempotency-Key": "evt-2:welcome"}
    assert (await standin.post("/emails", json=mail(), headers=headers)).status_code == 200

    response = await standin.post("/emails", json=mail(subject="Changed"), headers=headers)

    assert response.status_code == 409
    assert response.json()["name"] == "invalid_idempotent_request"
    assert len((await standin.get("/_standin/emails")).json()["data"]) == 1


async def test_an_overlong_idempotency_key_is_refused(standin: AsyncTestClient[Litestar]) -> None:
    response = await standin.post(
        "/emails", json=mail(), headers={**KEY, "Idempotency-Key": "k" * 257}
    )
    assert response.status_code == 400
    assert response.json()["name"] == "invalid_idempotency_key"


async def test_injected_failures_answer_the_next_sends_then_stop(
    standin: AsyncTestClient[Litestar],
) -> None:
    switch = await standin.post("/_standin/fail", json={"count": 2, "status": 500})
    assert switch.status_code == 200

    statuses = [
        (await standin.post("/emails", json=mail(), headers=KEY)).status_code for _ in range(3)
    ]

    assert statuses == [500, 500, 200]
    assert len((await standin.get("/_standin/emails")).json()["data"]) == 1


async def test_an_injected_rate_limit_carries_retry_after(
    standin: AsyncTestClient[Litestar],
) -> None:
    await standin.post("/_standin/fail", json={"count": 1, "status": 429, "retry_after": 3})

    response = await standin.post("/emails", json=mail(), headers=KEY)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["name"] == "rate_limit_exceeded"


async def test_a_lost_answer_keeps_the_mail_and_the_retry_gets_its_id(
    standin: AsyncTestClient[Litestar],
) -> None:
    await standin.post("/_standin/fail", json={"count": 1, "status": 500, "after_accept": True})
    headers = {**KEY, "Idempotency-Key": "lost-1"}

    lost = await standin.post("/emails", json=mail(), headers=headers)
    retried = await standin.post("/emails", json=mail(), headers=headers)

    assert lost.status_code == 500
    assert retried.status_code == 200
    (stored,) = (await standin.get("/_standin/emails")).json()["data"]
    assert stored["id"] == retried.json()["id"]


@pytest.mark.parametrize("body", [{"count": -1}, {"count": 1, "status": 200}, {}])
async def test_the_failure_switch_validates_its_input(
    standin: AsyncTestClient[Litestar], body: dict[str, Any]
) -> None:
    response = await standin.post("/_standin/fail", json=body)
    assert response.status_code == 422


async def test_the_inbox_pages_escape_everything(standin: AsyncTestClient[Litestar]) -> None:
    nasty = "<script>alert(1)</script>"
    sent = await standin.post(
        "/emails",
        json=mail(subject=f"Hi {nasty}", html=f'<p>{nasty}</p>"', text=f"Hi {nasty}"),
        headers=KEY,
    )
    email_id = sent.json()["id"]

    inbox = await standin.get("/")
    assert inbox.status_code == 200
    assert inbox.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in inbox.headers["content-security-policy"]
    assert nasty not in inbox.text
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;" in inbox.text
    assert f'href="/inbox/{email_id}"' in inbox.text

    page = await standin.get(f"/inbox/{email_id}")
    assert page.status_code == 200
    assert nasty not in page.text
    # The mail's HTML is shown in a sandboxed frame, escaped into its srcdoc attribute.
    assert 'sandbox=""' in page.text
    assert 'srcdoc="&lt;p&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;/p&gt;&quot;"' in page.text
    assert "Hi &lt;script&gt;" in page.text

    missing = await standin.get("/inbox/no-such-mail")
    assert "No such mail" in missing.text


async def test_unknown_routes_and_mails_answer_in_resends_shape(
    standin: AsyncTestClient[Litestar],
) -> None:
    missing = await standin.get("/emails/does-not-exist", headers=KEY)
    assert missing.status_code == 404
    assert missing.json()["name"] == "not_found"
    route = await standin.get("/domains/x", headers=KEY)
    assert route.status_code == 404
    assert route.json()["statusCode"] == 404


async def test_clearing_forgets_mail_and_keys(standin: AsyncTestClient[Litestar]) -> None:
    headers = {**KEY, "Idempotency-Key": "clear-1"}
    first = (await standin.post("/emails", json=mail(), headers=headers)).json()["id"]
    assert (await standin.delete("/_standin/emails")).status_code == 204
    assert (await standin.get("/_standin/emails")).json() == {"data": []}
    second = (await standin.post("/emails", json=mail(), headers=headers)).json()["id"]
    assert second != first


async def test_the_inbox_survives_a_restart_with_a_state_file(tmp_path: Path) -> None:
    state = tmp_path / "resend" / "state.json"
    headers = {**KEY, "Idempotency-Key": "persist-1"}
    async with AsyncTestClient(app=create_app(settings(state_file=str(state)))) as client:
        email_id = (await client.post("/emails", json=mail(), headers=headers)).json()["id"]
    assert state.exists()

    async with AsyncTestClient(app=create_app(settings(state_file=str(state)))) as client:
        assert (await client.get(f"/emails/{email_id}", headers=KEY)).status_code == 200
        # The idempotency key survived too: no second mail.
        again = await client.post("/emails", json=mail(), headers=headers)
        assert again.json()["id"] == email_id
        assert len((await client.get("/_standin/emails")).json()["data"]) == 1


def test_the_default_settings_point_at_the_notifier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESEND_STANDIN_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("NOTIFIER_URL", raising=False)
    monkeypatch.setenv("EMBER_PORT_OFFSET", "0")
    defaults = ResendStandinSettings()
    assert defaults.webhook_url == "http://127.0.0.1:8106/api/webhooks/resend"
    assert defaults.webhook_secret.startswith("whsec_")
    assert defaults.webhooks_on
    assert not settings().webhooks_on


def test_the_state_file_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMBER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RESEND_STANDIN_STATE_FILE", "")
    assert ResendStandinSettings().state_file == str(tmp_path / "resend-standin" / "state.sqlite3")
    monkeypatch.setenv("RESEND_STANDIN_STATE_FILE", "memory")
    assert ResendStandinSettings().state_path is None
