"""Stripe's REST API, as far as Ember's checkout uses it (``/v1/...``).

Requests are form-encoded with bracketed keys and authenticated with ``Authorization: Bearer
sk_test_...`` (any test key). ``Idempotency-Key`` is honoured like Stripe does: the same key
with the same parameters answers the first response again; with other parameters, an
``idempotency_error``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request, Response, Router, delete, get, post

from standins.stripe import billing, pricing
from standins.stripe.errors import StripeError
from standins.stripe.forms import as_int, parse_form, parse_pairs
from standins.stripe.store import Store, new_object_id

MAX_LIST_LIMIT = 100
TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")

_idempotency_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


def _store(request: Request[Any, Any, Any]) -> Store:
    store: Store = request.app.state.store
    return store


def authorize(request: Request[Any, Any, Any]) -> None:
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not key:
        raise StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the Authorization "
            "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
    if not key.startswith(TEST_KEY_PREFIXES):
        shown = key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else "***"
        raise StripeError(
            401, f"Invalid API Key provided: {shown}. The Stripe stand-in takes test keys only."
        )


def stripe_json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response[Any]:
    all_headers = {"Request-Id": new_object_id("req"), "Stripe-Version": "standin"}
    all_headers.update(headers or {})
    return Response(body, status_code=status, headers=all_headers, media_type="application/json")


async def _params(request: Request[Any, Any, Any]) -> dict[str, Any]:
    if request.method == "GET":
        return parse_pairs(list(request.query_params.multi_items()))
    return parse_form(await request.body())


async def _idempotent(request: Request[Any, Any, Any], operation: Any) -> Response[Any]:
    """Run a POST once per Idempotency-Key and parameters; replay the answer afterwards."""
    authorize(request)
    body = await request.body()
    params = parse_form(body)
    key = request.headers.get("idempotency-key", "")
    if not key:
        return stripe_json(operation(params))
    fingerprint = hashlib.sha256(
        (request.method + " " + request.url.path + "\n").encode()
        + repr(sorted(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))).encode()
    ).hexdigest()
    store = _store(request)
    async with _idempotency_locks[key]:
        saved = store.idempotent_response(key, fingerprint)
        if saved is not None:
            status, saved_body = saved
            return stripe_json(
                saved_body, status, {"Idempotent-Replayed": "true", "Idempotency-Key": key}
            )
        try:
            result = operation(params)
            status = 200
        except StripeError as exc:
            # Stripe saves 4xx results too (not 5xx); a retry with the same key answers them again.
            result, status = exc.body(), exc.status
        store.remember_response(key, fingerprint, status, result)
    _idempotency_locks.pop(key, None)
    return stripe_json(result, status, {"Idempotency-Key": key})


def _list(items: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
    limit = as_int(params, "limit", minimum=1) or 10
    if limit > MAX_LIST_LIMIT:
        raise StripeError(400, f"Invalid limit: must be at most {MAX_LIST_LIMIT}", param="limit")
    starting_after = params.get("starting_after")
    if starting_after:
        ids = [item["id"] for item in items]
        if starting_after not in ids:
            raise StripeError(400, f"No such object: '{starting_after}'", param="starting_after")
        items = items[ids.index(starting_after) + 1 :]
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}


def _expand(store: Store, session: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    expand = params.get("expand") or []
    if isinstance(expand, str):
        expand = [expand]
    if not expand:
        return session
    out = dict(session)
    if "line_items" in expand:
        out["line_items"] = _list(
            store.session_line_items(session["id"]),
            {"limit": "100"},
            f"/v1/checkout/sessions/{session['id']}/line_items",
        )
    if "payment_intent" in expand and session.get("payment_intent"):
        out["payment_intent"] = store.payment_intent(session["payment_intent"])
    return out


@post("/checkout/sessions", summary="Create a Checkout Session")
async def create_session(request: Request[Any, Any, Any]) -> Response[Any]:
    store = _store(request)
    return await _idempotent(
        request, lambda params: _expand(store, store.create_session(params), params)
    )


@get("/checkout/sessions", summary="List Checkout Sessions")
async def list_sessions(request: Request[Any, Any, Any]) -> Response[Any]:
    authorize(request)
    params = await _params(request)
    return stripe_json(
        _list(_store(request).list_sessions(params), params, "/v1/checkout/sessions")
    )


@get("/checkout/sessions/{session_id:str}", summary="Retrieve a Checkout Session")
async def retrieve_session(request: Request[Any, Any, Any], session_id: str) -> Response[Any]:
    authorize(request)
    store = _store(request)
    return stripe_json(_expand(store, store.session(session_id), await _params(request)))


@post("/checkout/sessions/{session_id:str}/expire", summary="Expire a Checkout Session")
async def expire_session(request: Request[Any, Any, Any], session_id: str) -> Response[Any]:
    store = _store(request)
    return await _idempotent(request, lambda _params: store.expire_session(session_id))


@get("/checkout/sessions/{session_id:str}/line_items", summary="A Checkout Session's line items")
async def session_line_items(request: Request[Any, Any, Any], session_id: str) -> Response[Any]:
    authorize(request)
    params = await _params(request)
    items = _store(request).session_line_items(session_id)
    return stripe_json(_list(items, params, f"/v1/checkout/sessions/{session_id}/line_items"))


@post("/refunds", summary="Create a refund")
async def create_refund(request: Request[Any, Any, Any]) -> Response[Any]:
    store = _store(request)
    return await _idempotent(request, store.create_refund)


@get("/refunds/{refund_id:str}", summary="Retrieve a refund")
async def retrieve_refund(request: Request[Any, Any, Any], refund_id: str) -> Response[Any]:
    authorize(request)
    return stripe_json(_store(request).refund(refund_id))


@get("/payment_intents/{intent_id:str}", summary="Retrieve a PaymentIntent")
async def retrieve_payment_intent(request: Request[Any, Any, Any], intent_id: str) -> Response[Any]:
    authorize(request)
    return stripe_json(_store(request).payment_intent(intent_id))


@get("/charges/{charge_id:str}", summary="Retrieve a charge")
async def retrieve_charge(request: Request[Any, Any, Any], charge_id: str) -> Response[Any]:
    authorize(request)
    return stripe_json(_store(request).charge(charge_id))


@get("/subscriptions/{subscription_id:str}", summary="Retrieve a subscription")
async def retrieve_subscription(
    request: Request[Any, Any, Any], subscription_id: str
) -> Response[Any]:
    authorize(request)
    return stripe_json(billing.retrieve(_store(request), subscription_id))


@post("/subscriptions/{subscription_id:str}", summary="Update a subscription")
async def update_subscription(
    request: Request[Any, Any, Any], subscription_id: str
) -> Response[Any]:
    store = _store(request)
    return await _idempotent(request, lambda params: billing.update(store, subscription_id, params))


@delete(
    "/subscriptions/{subscription_id:str}", summary="Cancel a subscription now", status_code=200
)
async def cancel_subscription(
    request: Request[Any, Any, Any], subscription_id: str
) -> Response[Any]:
    store = _store(request)
    return await _idempotent(request, lambda _params: billing.cancel(store, subscription_id))


@post("/prices", summary="Create a price")
async def create_price(request: Request[Any, Any, Any]) -> Response[Any]:
    store = _store(request)
    return await _idempotent(request, lambda params: billing.create_price(store, params))


@post("/billing_portal/sessions", summary="Create a customer portal session")
async def create_portal_session(request: Request[Any, Any, Any]) -> Response[Any]:
    store = _store(request)
    return await _idempotent(request, lambda params: billing.open_portal(store, params))


@get("/invoices/{invoice_id:str}", summary="Retrieve an invoice")
async def retrieve_invoice(request: Request[Any, Any, Any], invoice_id: str) -> Response[Any]:
    authorize(request)
    return stripe_json(billing.invoice(_store(request), invoice_id))


@get("/events/{event_id:str}", summary="Retrieve an event")
async def retrieve_event(request: Request[Any, Any, Any], event_id: str) -> Response[Any]:
    authorize(request)
    return stripe_json(_store(request).event(event_id))


@get("/events", summary="List events")
async def list_events(request: Request[Any, Any, Any]) -> Response[Any]:
    authorize(request)
    params = await _params(request)
    events = sorted(
        _store(request).events_for(type_=params.get("type") or None),
        key=lambda e: (e["created"], e["id"]),
        reverse=True,
    )
    return stripe_json(_list(events, params, "/v1/events"))


@post("/coupons", summary="Create a coupon")
async def create_coupon(request: Request[Any, Any, Any]) -> Response[Any]:
    store = _store(request)
    return await _idempotent(request, lambda params: pricing.create_coupon(store, params))


@get("/coupons/{coupon_id:str}", summary="Retrieve a coupon")
async def retrieve_coupon(request: Request[Any, Any, Any], coupon_id: str) -> Response[Any]:
    authorize(request)
    return stripe_json(pricing.coupon(_store(request), coupon_id))


@delete("/coupons/{coupon_id:str}", summary="Delete a coupon", status_code=200)
async def delete_coupon(request: Request[Any, Any, Any], coupon_id: str) -> Response[Any]:
    store = _store(request)
    return await _idempotent(request, lambda _params: pricing.delete_coupon(store, coupon_id))


@post("/promotion_codes", summary="Create a promotion code")
async def create_promotion_code(request: Request[Any, Any, Any]) -> Response[Any]:
    store = _store(request)
    return await _idempotent(request, lambda params: pricing.create_promotion_code(store, params))


@get("/promotion_codes", summary="List promotion codes")
async def list_promotion_codes(request: Request[Any, Any, Any]) -> Response[Any]:
    authorize(request)
    params = await _params(request)
    found = pricing.list_promotion_codes(_store(request), params)
    return stripe_json(_list(found, params, "/v1/promotion_codes"))


@get("/promotion_codes/{promo_id:str}", summary="Retrieve a promotion code")
async def retrieve_promotion_code(request: Request[Any, Any, Any], promo_id: str) -> Response[Any]:
    authorize(request)
    return stripe_json(pricing.promotion_code(_store(request), promo_id))


@post("/shipping_rates", summary="Create a shipping rate")
async def create_shipping_rate(request: Request[Any, Any, Any]) -> Response[Any]:
    store = _store(request)

    def create(params: dict[str, Any]) -> dict[str, Any]:
        rate = pricing.create_shipping_rate(store, params)
        store.save()
        return rate

    return await _idempotent(request, create)


@get("/shipping_rates/{rate_id:str}", summary="Retrieve a shipping rate")
async def retrieve_shipping_rate(request: Request[Any, Any, Any], rate_id: str) -> Response[Any]:
    authorize(request)
    return stripe_json(pricing.shipping_rate(_store(request), rate_id))


@post("/customers", summary="Create a customer")
async def create_customer(request: Request[Any, Any, Any]) -> Response[Any]:
    store = _store(request)
    return await _idempotent(request, lambda params: pricing.create_customer(store, params))


@get("/customers/{customer_id:str}", summary="Retrieve a customer")
async def retrieve_customer(request: Request[Any, Any, Any], customer_id: str) -> Response[Any]:
    authorize(request)
    return stripe_json(pricing.customer(_store(request), customer_id))


api_router = Router(
    path="/v1",
    route_handlers=[
        create_session,
        list_sessions,
        retrieve_session,
        expire_session,
        session_line_items,
        create_refund,
        retrieve_refund,
        retrieve_payment_intent,
        retrieve_charge,
        retrieve_subscription,
        update_subscription,
        cancel_subscription,
        create_price,
        create_portal_session,
        retrieve_invoice,
        retrieve_event,
        list_events,
        create_coupon,
        retrieve_coupon,
        delete_coupon,
        create_promotion_code,
        list_promotion_codes,
        retrieve_promotion_code,
        create_shipping_rate,
        retrieve_shipping_rate,
        create_customer,
        retrieve_customer,
    ],
    include_in_schema=False,
)
