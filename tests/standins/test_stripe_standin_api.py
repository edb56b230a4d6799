"""The Stripe stand-in answers the stripe SDK as Stripe does, for the calls Ember makes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from ember_devkit.testing.apps import serve_in_loop
from ember_devkit.testing.ports import free_port
from standins.stripe.app import create_app
from standins.stripe.errors import StripeError
from standins.stripe.forms import parse_form
from standins.stripe.settings import StandinSettings
from standins.stripe.store import Store


@pytest.fixture(scope="module")
async def standin(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = StandinSettings(
        public_url=url,
        webhook_url="http://127.0.0.1:9/unreachable",
        webhook_secret="whsec_api_tests",
        state_file=str(tmp_path_factory.mktemp("stripe") / "state.json"),
        retry_base_seconds=0.05,
        max_attempts=1,
        expiry_interval_seconds=0.2,
        async_settle_seconds=0,
        min_expiry_seconds=1800,
    )
    server, task = await serve_in_loop(create_app(settings), port, lifespan="auto")
    yield url
    server.should_exit = True
    await task


@pytest.fixture(scope="module")
def client(standin: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_api_tests",
        base_addresses={"api": standin},
        http_client=stripe.HTTPXClient(),
        max_network_retries=0,
    )


def session_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 2,
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 1250,
                    "product_data": {"name": "Yirgacheffe", "metadata": {"product_id": "p1"}},
                },
            },
            {
                "quantity": 1,
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 900,
                    "product_data": {"name": "Decaf"},
                },
            },
        ],
        "shipping_options": [
            {
                "shipping_rate_data": {
                    "type": "fixed_amount",
                    "display_name": "Standard",
                    "fixed_amount": {"amount": 600, "currency": "usd"},
                }
            }
        ],
        "success_url": "http://shop.test/order/o1?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://shop.test/cart",
        "customer_email": "ada@example.com",
        "client_reference_id": "o1",
        "metadata": {"order_id": "o1"},
        "payment_intent_data": {"metadata": {"order_id": "o1"}},
        "expires_at": int(time.time()) + 31 * 60,
    }
    params.update(overrides)
    return params


async def test_create_retrieve_list_and_line_items(
    client: stripe.StripeClient, standin: str
) -> None:
    session = await client.v1.checkout.sessions.create_async(params=session_params())  # type: ignore[arg-type]

    assert session.id.startswith("cs_test_")
    assert session.object == "checkout.session"
    assert session.status == "open"
    assert session.payment_status == "unpaid"
    assert session.amount_subtotal == 3400
    assert session.amount_total == 4000
    assert session.currency == "usd"
    assert session.total_details is not None
    assert session.total_details.amount_shipping == 600
    assert session.url == f"{standin}/pay/{session.id}"
    assert session.metadata is not None
    assert session.metadata.to_dict() == {"order_id": "o1"}
    again = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert again.id == session.id
    assert again.amount_total == 4000
    items = await client.v1.checkout.sessions.line_items.list_async(session.id)
    assert [
        (i.description, i.quantity, i.price.unit_amount if i.price else None) for i in items.data
    ] == [
        ("Yirgacheffe", 2, 1250),
        ("Decaf", 1, 900),
    ]
    listed = await client.v1.checkout.sessions.list_async(params={"limit": 100})
    assert session.id in [s.id for s in listed.data]
    expanded = await client.v1.checkout.sessions.retrieve_async(
        session.id, params={"expand": ["line_items"]}
    )
    assert len(expanded["line_items"]["data"]) == 2


async def test_idempotency_key_answers_the_first_result(client: stripe.StripeClient) -> None:
    params = session_params()
    first = await client.v1.checkout.sessions.create_async(
        params=params, options={"idempotency_key": "k-same"}
    )  # type: ignore[arg-type]
    second = await client.v1.checkout.sessions.create_async(
        params=params, options={"idempotency_key": "k-same"}
    )  # type: ignore[arg-type]
    assert first.id == second.id
    with pytest.raises(stripe.IdempotencyError):
        await client.v1.checkout.sessions.create_async(
            params=session_params(customer_email="other@example.com"),  # type: ignore[arg-type]
            options={"idempotency_key": "k-same"},
        )
    # Concurrent requests with one key: still one session.
    results = await asyncio.gather(
        *[
            client.v1.checkout.sessions.create_async(
                params=params, options={"idempotency_key": "k-race"}
            )  # type: ignore[arg-type]
            for _ in range(5)
        ]
    )
    assert len({r.id for r in results}) == 1


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"expires_at": int(time.time()) + 60}, "expires_at"),
        ({"expires_at": int(time.time()) + 25 * 3600}, "expires_at"),
        ({"line_items": []}, "line_items"),
        ({"success_url": "not a url"}, "success_url"),
        ({"mode": "setup"}, "mode"),
        ({"customer_email": "nobody"}, "customer_email"),
    ],
)
async def test_invalid_sessions_are_refused_like_stripe(
    client: stripe.StripeClient, overrides: dict[str, Any], param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async(params=session_params(**overrides))  # type: ignore[arg-type]
    assert caught.value.http_status == 400
    assert caught.value.param == param


async def test_mixed_currencies_and_bad_amounts_are_refused(client: stripe.StripeClient) -> None:
    items = session_params()["line_items"]
    items[1]["price_data"]["currency"] = "eur"
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.checkout.sessions.create_async(params=session_params(line_items=items))  # type: ignore[arg-type]
    items = session_params()["line_items"]
    items[0]["price_data"]["unit_amount"] = -5
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async(params=session_params(line_items=items))  # type: ignore[arg-type]
    assert caught.value.param == "line_items[0][price_data][unit_amount]"


async def test_unknown_objects_and_keys(client: stripe.StripeClient, standin: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.retrieve_async("cs_test_nope")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    live = stripe.StripeClient(
        "sk_live_not_here", base_addresses={"api": standin}, http_client=stripe.HTTPXClient()
    )
    with pytest.raises(stripe.AuthenticationError):
        await live.v1.checkout.sessions.retrieve_async("cs_test_nope")
    async with httpx.AsyncClient() as http:
        anonymous = await http.get(f"{standin}/v1/checkout/sessions")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["type"] == "invalid_request_error"
        unknown = await http.get(
            f"{standin}/v1/tax_rates", headers={"Authorization": "Bearer sk_test_x"}
        )
        assert unknown.status_code == 404
        assert "Unrecognized request URL" in unknown.json()["error"]["message"]


async def test_expire_pay_and_refund(client: stripe.StripeClient, standin: str) -> None:
    open_one = await client.v1.checkout.sessions.create_async(params=session_params())  # type: ignore[arg-type]
    expired = await client.v1.checkout.sessions.expire_async(open_one.id)
    assert expired.status == "expired"
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.checkout.sessions.expire_async(open_one.id)

    session = await client.v1.checkout.sessions.create_async(params=session_params())  # type: ignore[arg-type]
    async with httpx.AsyncClient() as http:
        paid = await http.post(
            f"{standin}/_standin/sessions/{session.id}/pay",
            json={"card_number": "4242424242424242"},
        )
    assert paid.json()["outcome"] == "paid"
    done = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert done.status == "complete"
    assert done.payment_status == "paid"
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.checkout.sessions.expire_async(session.id)
    assert done.payment_intent is not None
    intent = await client.v1.payment_intents.retrieve_async(str(done.payment_intent))
    assert intent.status == "succeeded"
    assert intent.amount == 4000
    assert intent.metadata is not None
    assert intent.metadata.to_dict() == {"order_id": "o1"}

    partial = await client.v1.refunds.create_async(
        params={"payment_intent": intent.id, "amount": 1000}
    )
    assert partial.amount == 1000
    assert partial.status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.refunds.create_async(params={"payment_intent": intent.id, "amount": 5000})
    assert caught.value.code == "amount_too_large"
    rest = await client.v1.refunds.create_async(params={"payment_intent": intent.id})
    assert rest.amount == 3000
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.refunds.create_async(params={"payment_intent": intent.id})
    assert caught.value.code == "charge_already_refunded"
    assert (await client.v1.refunds.retrieve_async(rest.id)).amount == 3000


def test_form_encoding_is_read_like_stripe_reads_it() -> None:
    parsed = parse_form(
        "line_items[0][quantity]=2&line_items[0][price_data][unit_amount]=1250"
        "&line_items[1][quantity]=1&metadata[order_id]=o1&expand[0]=line_items&mode=payment"
    )
    assert parsed == {
        "line_items": [{"quantity": "2", "price_data": {"unit_amount": "1250"}}, {"quantity": "1"}],
        "metadata": {"order_id": "o1"},
        "expand": ["line_items"],
        "mode": "payment",
    }
    with pytest.raises(StripeError):
        parse_form("a[b]=1&a=2&a[b][c]=3")


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = Store(public_url="http://x", state_path=state)
    session = first.create_session(
        {
            "mode": "payment",
            "success_url": "http://shop.test/ok",
            "line_items": [
                {
                    "quantity": "1",
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": "500",
                        "product_data": {"name": "Bag"},
                    },
                }
            ],
        }
    )
    first.close()  # a restart: the stand-in stops (its journal is written), then starts again
    second = Store(public_url="http://x", state_path=state)
    assert second.session(session["id"])["amount_total"] == 500
    assert second.session_line_items(session["id"])[0]["description"] == "Bag"


def subscription_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "subscription",
        "line_items": [
            {
                "quantity": 2,
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 1500,
                    "product_data": {"name": "Monthly Gesha"},
                    "recurring": {"interval": "week", "interval_count": 2},
                },
            }
        ],
        "customer_email": "ada@example.com",
        "metadata": {"subscription_id": "s1", "user_id": "u1"},
        "subscription_data": {"metadata": {"subscription_id": "s1", "user_id": "u1"}},
        "success_url": "http://shop.test/account?subscription=s1",
        "cancel_url": "http://shop.test/coffee/gesha",
    }
    params.update(overrides)
    return params


async def _control(standin: str, method: str, path: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient() as http:
        response = await http.request(method, f"{standin}/_standin{path}", **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


async def test_subscription_checkout_bills_renews_and_cancels(
    client: stripe.StripeClient, standin: str
) -> None:
    session = await client.v1.checkout.sessions.create_async(params=subscription_params())  # type: ignore[arg-type]
    assert session.mode == "subscription"
    assert session.amount_total == 3000
    assert session.subscription is None
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{standin}/pay/{session.id}")
        assert "billed every 2 weeks" in page.text
        declined = await http.post(
            f"{standin}/pay/{session.id}", data={"card_number": "4000000000000002", "cvc": "123"}
        )
        assert "Your card was declined." in declined.text
        paid = await http.post(
            f"{standin}/pay/{session.id}", data={"card_number": "4242424242424242", "cvc": "123"}
        )
    assert paid.status_code == 303
    assert paid.headers["location"] == "http://shop.test/account?subscription=s1"

    done = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert done.status == "complete"
    assert done.payment_status == "paid"
    assert str(done.customer).startswith("cus_")
    assert done.subscription is not None
    sub_id = str(done.subscription)
    assert sub_id.startswith("sub_")
    events = (await _control(standin, "GET", "/events", params={"session_id": session.id}))["data"]
    assert [e["type"] for e in events] == [
        "checkout.session.completed",
        "customer.subscription.created",
        "invoice.paid",
    ]
    first_invoice = events[2]["data"]["object"]
    assert first_invoice["id"].startswith("in_")
    assert first_invoice["amount_paid"] == 3000
    assert first_invoice["billing_reason"] == "subscription_create"
    assert first_invoice["parent"]["subscription_details"] == {
        "subscription": sub_id,
        "metadata": {"subscription_id": "s1", "user_id": "u1"},
    }

    sub = await client.v1.subscriptions.retrieve_async(sub_id)
    assert sub.status == "active"
    assert sub.metadata is not None
    assert sub.metadata.to_dict() == {"subscription_id": "s1", "user_id": "u1"}
    item = sub["items"]["data"][0]
    assert item["quantity"] == 2
    assert item["price"]["recurring"]["interval"] == "week"
    assert item["current_period_end"] - item["current_period_start"] == 14 * 86400
    first_end = item["current_period_end"]

    renewed = await _control(standin, "POST", f"/subscriptions/{sub_id}/renew")
    assert renewed["invoice"]["status"] == "paid"
    assert renewed["invoice"]["billing_reason"] == "subscription_cycle"
    assert renewed["invoice"]["lines"]["data"][0]["period"] == {
        "start": first_end,
        "end": first_end + 14 * 86400,
    }
    failed = await _control(standin, "POST", f"/subscriptions/{sub_id}/renew", params={"fail": 1})
    assert failed["invoice"]["status"] == "open"
    assert failed["subscription"]["status"] == "past_due"
    assert (await client.v1.invoices.retrieve_async(failed["invoice"]["id"])).amount_paid == 0
    recovered = await _control(standin, "POST", f"/subscriptions/{sub_id}/renew")
    assert recovered["subscription"]["status"] == "active"
    types = [
        e["type"]
        for e in (await _control(standin, "GET", "/events", params={"session_id": session.id}))[
            "data"
        ]
    ][3:]
    assert types == [
        "customer.subscription.updated",
        "invoice.paid",
        "invoice.payment_failed",
        "customer.subscription.updated",
        "customer.subscription.updated",
        "invoice.paid",
    ]

    updated = await client.v1.subscriptions.update_async(
        sub_id, params={"cancel_at_period_end": True}
    )
    assert updated.cancel_at_period_end is True
    assert updated.status == "active"
    ended = await _control(standin, "POST", f"/subscriptions/{sub_id}/renew")
    assert ended["invoice"] is None
    assert ended["subscription"]["status"] == "canceled"
    last = (await _control(standin, "GET", "/events", params={"session_id": session.id}))["data"]
    assert [e["type"] for e in last[-2:]] == [
        "customer.subscription.updated",
        "customer.subscription.deleted",
    ]
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.subscriptions.update_async(sub_id, params={"cancel_at_period_end": False})
    async with httpx.AsyncClient() as http:
        again = await http.post(f"{standin}/_standin/subscriptions/{sub_id}/renew")
    assert again.status_code == 400


async def test_subscription_delete_ends_it_now(client: stripe.StripeClient, standin: str) -> None:
    session = await client.v1.checkout.sessions.create_async(params=subscription_params())  # type: ignore[arg-type]
    await _control(standin, "POST", f"/sessions/{session.id}/pay", json={})
    sub_id = str((await client.v1.checkout.sessions.retrieve_async(session.id)).subscription)
    canceled = await client.v1.subscriptions.cancel_async(sub_id)
    assert canceled.status == "canceled"
    assert canceled.ended_at is not None
    assert (await client.v1.subscriptions.retrieve_async(sub_id)).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.subscriptions.cancel_async(sub_id)
    assert caught.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.subscriptions.retrieve_async("sub_nope")
    assert caught.value.code == "resource_missing"


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        (
            {
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": 100,
                            "product_data": {"name": "x"},
                            "recurring": {"interval": "fortnight"},
                        },
                    }
                ]
            },
            "line_items[0][price_data][recurring][interval]",
        ),
        (
            {
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": 100,
                            "product_data": {"name": "x"},
                        },
                    }
                ]
            },
            "line_items",
        ),
        ({"shipping_options": [{"shipping_rate_id": "shr_x"}]}, "shipping_options"),
    ],
)
async def test_invalid_subscription_sessions_are_refused(
    client: stripe.StripeClient, overrides: dict[str, Any], param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async(params=subscription_params(**overrides))  # type: ignore[arg-type]
    assert caught.value.http_status == 400
    assert caught.value.param == param


async def test_a_recurring_price_in_payment_mode_is_refused(client: stripe.StripeClient) -> None:
    items = subscription_params()["line_items"]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async(params=session_params(line_items=items))  # type: ignore[arg-type]
    assert caught.value.param == "line_items"


async def test_subscription_items_change_quantity_and_price_like_stripe(
    client: stripe.StripeClient, standin: str
) -> None:
    session = await client.v1.checkout.sessions.create_async(params=subscription_params())  # type: ignore[arg-type]
    await _control(standin, "POST", f"/sessions/{session.id}/pay", json={})
    sub_id = str((await client.v1.checkout.sessions.retrieve_async(session.id)).subscription)
    sub = (await client.v1.subscriptions.retrieve_async(sub_id)).to_dict()
    item = sub["items"]["data"][0]
    old_price, product = item["price"]["id"], item["price"]["product"]
    anchor, first_end = sub["billing_cycle_anchor"], item["current_period_end"]

    # Stripe's default would prorate: the stand-in models only what Ember asks for.
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.subscriptions.update_async(
            sub_id, params={"items": [{"id": item["id"], "quantity": 3}]}
        )
    assert caught.value.param == "proration_behavior"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.subscriptions.update_async(
            sub_id,
            params={"items": [{"id": "si_nope", "quantity": 3}], "proration_behavior": "none"},
        )
    assert (caught.value.http_status, caught.value.param) == (404, "items[0][id]")

    # The quantity, in Stripe's own form encoding: the period and the price stay.
    async with httpx.AsyncClient() as http:
        raw = await http.post(
            f"{standin}/v1/subscriptions/{sub_id}",
            content=f"items[0][id]={item['id']}&items[0][quantity]=3&proration_behavior=none",
            headers={
                "Authorization": "Bearer sk_test_api_tests",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
    assert raw.status_code == 200, raw.text
    changed = raw.json()
    assert changed["object"] == "subscription"
    assert changed["items"]["data"][0]["quantity"] == 3
    assert changed["items"]["data"][0]["price"]["id"] == old_price
    assert changed["items"]["data"][0]["current_period_end"] == first_end
    assert changed["billing_cycle_anchor"] == anchor
    events = (await _control(standin, "GET", "/events", params={"session_id": session.id}))["data"]
    assert events[-1]["type"] == "customer.subscription.updated"
    assert events[-1]["data"]["object"]["items"]["data"][0]["quantity"] == 3
    assert events[-1]["data"]["previous_attributes"]["items"]["data"][0]["quantity"] == 2

    # Another cadence: a price of the same product, then the item moved onto it.
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.prices.create_async(
            params={"product": "prod_nope", "currency": "usd", "unit_amount": 1500}
        )
    assert caught.value.param == "product"
    monthly = await client.v1.prices.create_async(
        params={
            "product": product,
            "currency": "usd",
            "unit_amount": 1500,
            "recurring": {"interval": "month", "interval_count": 1},
        }
    )
    assert (monthly.object, monthly.type, monthly.product) == ("price", "recurring", product)
    moved = await client.v1.subscriptions.update_async(
        sub_id,
        params={
            "items": [{"id": item["id"], "price": monthly.id, "quantity": 4}],
            "proration_behavior": "none",
        },
    )
    moved_item = moved.to_dict()["items"]["data"][0]
    assert moved_item["price"]["id"] == monthly.id
    assert moved_item["price"]["recurring"]["interval"] == "month"
    assert moved_item["quantity"] == 4
    # Another billing period restarts the cycle now and bills the new one at once.
    assert moved.billing_cycle_anchor >= anchor
    assert moved_item["current_period_start"] == moved.billing_cycle_anchor
    assert moved_item["current_period_end"] - moved_item["current_period_start"] >= 28 * 86400
    events = (await _control(standin, "GET", "/events", params={"session_id": session.id}))["data"]
    assert [e["type"] for e in events[-2:]] == ["customer.subscription.updated", "invoice.paid"]
    bill = events[-1]["data"]["object"]
    assert bill["billing_reason"] == "subscription_update"
    assert bill["amount_paid"] == 4 * 1500
    assert bill["lines"]["data"][0]["quantity"] == 4
    assert bill["lines"]["data"][0]["pricing"]["price_details"]["price"] == monthly.id

    renewed = await _control(standin, "POST", f"/subscriptions/{sub_id}/renew")
    assert renewed["invoice"]["amount_paid"] == 6000
    assert renewed["invoice"]["billing_reason"] == "subscription_cycle"


async def test_a_price_made_with_its_own_product_bills_under_that_products_name(
    client: stripe.StripeClient, standin: str
) -> None:
    session = await client.v1.checkout.sessions.create_async(params=subscription_params())  # type: ignore[arg-type]
    await _control(standin, "POST", f"/sessions/{session.id}/pay", json={})
    sub_id = str((await client.v1.checkout.sessions.retrieve_async(session.id)).subscription)
    item = (await client.v1.subscriptions.retrieve_async(sub_id)).to_dict()["items"]["data"][0]

    for bad, param in (
        ({"product": item["price"]["product"], "product_data": {"name": "x"}}, "product_data"),
        ({"product_data": {"metadata": {"a": "b"}}}, "product_data[name]"),
        ({"product_data": {"name": "x", "tax_code": "txcd_1"}}, "product_data[tax_code]"),
    ):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            await client.v1.prices.create_async(
                params={"currency": "usd", "unit_amount": 5200, **bad}  # type: ignore[typeddict-item]
            )
        assert caught.value.param == param
    kilo = await client.v1.prices.create_async(
        params={
            "currency": "usd",
            "unit_amount": 5200,
            "recurring": {"interval": "week", "interval_count": 2},
            "product_data": {"name": "Sidamo - 1 kg", "metadata": {"variant_id": "v-1kg"}},
            "metadata": {"variant_id": "v-1kg"},
        }
    )
    assert kilo.product.startswith("prod_")  # type: ignore[union-attr]
    assert kilo.product != item["price"]["product"]
    assert kilo.to_dict()["metadata"] == {"variant_id": "v-1kg"}
    moved = await client.v1.subscriptions.update_async(
        sub_id,
        params={"items": [{"id": item["id"], "price": kilo.id}], "proration_behavior": "none"},
    )
    assert moved.to_dict()["items"]["data"][0]["price"]["metadata"] == {"variant_id": "v-1kg"}
    # The same period: nothing billed now; the next renewal bills the kilo, by its name.
    events = (await _control(standin, "GET", "/events", params={"session_id": session.id}))["data"]
    assert events[-1]["type"] == "customer.subscription.updated"
    renewed = await _control(standin, "POST", f"/subscriptions/{sub_id}/renew")
    line = renewed["invoice"]["lines"]["data"][0]
    assert line["description"] == f"{item['quantity']} x Sidamo - 1 kg"
    assert renewed["invoice"]["amount_paid"] == 5200 * item["quantity"]
    # A later cadence change names the kilo's product, which Stripe now knows.
    monthly = await client.v1.prices.create_async(
        params={
            "product": str(kilo.product),
            "currency": "usd",
            "unit_amount": 5200,
            "recurring": {"interval": "month", "interval_count": 1},
        }
    )
    assert monthly.product == kilo.product


async def test_promotion_code_shipping_choice_and_automatic_tax(
    client: stripe.StripeClient, standin: str
) -> None:
    coupon = await client.v1.coupons.create_async(
        params={"percent_off": 10, "duration": "once", "name": "Ten off"}
    )
    assert coupon.object == "coupon"
    assert coupon.percent_off == 10
    promo = await client.v1.promotion_codes.create_async(
        params={
            "promotion": {"type": "coupon", "coupon": coupon.id},
            "code": "WELCOME10",
            "max_redemptions": 1,
        }
    )
    assert promo.code == "WELCOME10"
    assert promo.promotion.coupon == coupon.id
    found = await client.v1.promotion_codes.list_async(params={"code": "welcome10"})
    assert [p.id for p in found.data] == [promo.id]
    customer = await client.v1.customers.create_async(
        params={
            "email": "ada@example.com",
            "shipping": {
                "name": "Ada",
                "address": {
                    "line1": "1 Main St",
                    "city": "Sacramento",
                    "state": "CA",
                    "postal_code": "95814",
                    "country": "US",
                },
            },
        }
    )
    express = await client.v1.shipping_rates.create_async(
        params={
            "display_name": "Express",
            "type": "fixed_amount",
            "fixed_amount": {"amount": 1500, "currency": "usd"},
            "metadata": {"rate": "express"},
        }
    )
    params = session_params(
        customer=customer.id,
        discounts=[{"promotion_code": promo.id}],
        automatic_tax={"enabled": True},
        shipping_options=[
            {"shipping_rate": express.id},
            session_params()["shipping_options"][0],
        ],
    )
    del params["customer_email"]
    session = await client.v1.checkout.sessions.create_async(params=params)  # type: ignore[arg-type]

    # Lines 3400, 10 % off: 340 spread 250/90 over 2500/900; tax 7.25 % on 2250 and 810
    # (163.125 -> 163, 58.725 -> 59) and on express shipping 1500 (108.75 -> 109).
    assert session.total_details is not None
    assert session.total_details.amount_discount == 340
    assert session.total_details.amount_shipping == 1500
    assert session.total_details.amount_tax == 163 + 59 + 109
    assert session.amount_total == 3400 - 340 + 1500 + 331
    assert session.automatic_tax.enabled is True
    assert session.automatic_tax.status == "complete"
    assert session.discounts is not None
    assert session.discounts[0].promotion_code == promo.id
    assert session.discounts[0].coupon == coupon.id
    assert session.shipping_cost is not None
    assert session.shipping_cost.shipping_rate == express.id
    assert session.shipping_cost.amount_tax == 109
    assert session.shipping_options is not None
    assert [o.shipping_amount for o in session.shipping_options] == [1500, 600]
    items = await client.v1.checkout.sessions.line_items.list_async(session.id)
    assert [(i.amount_discount, i.amount_tax, i.amount_total) for i in items.data] == [
        (250, 163, 2413),
        (90, 59, 869),
    ]

    async with httpx.AsyncClient() as http:
        paid = await http.post(
            f"{standin}/_standin/sessions/{session.id}/pay",
            json={"card_number": "4242424242424242"},
        )
    assert paid.json()["outcome"] == "paid"
    done = await client.v1.checkout.sessions.retrieve_async(
        session.id, params={"expand": ["payment_intent"]}
    )
    assert isinstance(done.payment_intent, stripe.PaymentIntent)
    assert done.payment_intent.amount == session.amount_total
    assert (await client.v1.promotion_codes.retrieve_async(promo.id)).times_redeemed == 1
    assert (await client.v1.coupons.retrieve_async(coupon.id)).times_redeemed == 1

    again = session_params(discounts=[{"promotion_code": promo.id}])
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async(params=again)  # type: ignore[arg-type]
    assert caught.value.code == "promotion_code_invalid"


async def test_amount_off_coupon_without_tax_and_refusals(client: stripe.StripeClient) -> None:
    coupon = await client.v1.coupons.create_async(
        params={"amount_off": 500, "currency": "usd", "duration": "once", "max_redemptions": 1}
    )
    session = await client.v1.checkout.sessions.create_async(
        params=session_params(discounts=[{"coupon": coupon.id}])  # type: ignore[arg-type]
    )
    assert session.total_details is not None
    assert session.total_details.amount_discount == 500
    assert session.total_details.amount_tax == 0
    assert session.amount_total == 3400 - 500 + 600
    items = await client.v1.checkout.sessions.line_items.list_async(session.id)
    assert sum(i.amount_discount for i in items.data) == 500

    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.coupons.create_async(params={"amount_off": 500, "duration": "once"})
    assert caught.value.code == "parameter_missing"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async(
            params=session_params(discounts=[{"coupon": "nope"}])  # type: ignore[arg-type]
        )
    assert caught.value.code == "resource_missing"
    # Stripe Tax needs an address it can place the sale at.
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.checkout.sessions.create_async(
            params=session_params(automatic_tax={"enabled": True})  # type: ignore[arg-type]
        )
    assert caught.value.code == "customer_tax_location_invalid"
    eur = await client.v1.coupons.create_async(
        params={"amount_off": 100, "currency": "eur", "duration": "once"}
    )
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.checkout.sessions.create_async(
            params=session_params(discounts=[{"coupon": eur.id}])  # type: ignore[arg-type]
        )
    deleted = await client.v1.coupons.delete_async(eur.id)
    assert deleted.deleted is True
