"""Test controls under ``/_standin/...``: things real Stripe does on its own schedule (or never),
done on request so tests can prove how the shop copes.

- pay a session with a test card without a browser; settle a delayed payment; expire now;
- hold a session's webhooks, then deliver chosen events in a chosen order, several times, or
  signed wrongly (wrong secret, old timestamp, no header, tampered body);
- list events and deliveries; get a signed delivery to send yourself.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.params import Parameter

from standins.stripe import billing
from standins.stripe.errors import StripeError
from standins.stripe.store import Store
from standins.stripe.webhooks import SignatureMode, WebhookDeliverer

SignatureName = Literal["valid", "wrong_secret", "old_timestamp", "missing", "tampered"]


class PayRequest(msgspec.Struct, kw_only=True):
    card_number: Annotated[str, msgspec.Meta(max_length=32)] = "4242424242424242"
    email: Annotated[str, msgspec.Meta(max_length=200)] = ""
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""


class SettleRequest(msgspec.Struct, kw_only=True):
    outcome: Literal["succeeded", "failed"]


class HoldRequest(msgspec.Struct, kw_only=True):
    held: bool = True


class DeliverRequest(msgspec.Struct, kw_only=True):
    event_ids: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)]
    #: Each event in the list is delivered this many times in a row (duplicates).
    times: Annotated[int, msgspec.Meta(ge=1, le=20)] = 1
    signature: SignatureName = "valid"
    #: Seconds added to the signature's timestamp (negative: an older delivery).
    timestamp_offset: Annotated[int, msgspec.Meta(ge=-10 * 86400, le=86400)] = 0


class SyntheticEventRequest(msgspec.Struct, kw_only=True):
    type: Annotated[str, msgspec.Meta(max_length=100)]
    #: The session a ``checkout.session.*`` event is about.
    session_id: Annotated[str, msgspec.Meta(max_length=200)] = ""
    #: The subscription a ``customer.subscription.*`` event is about.
    subscription_id: Annotated[str, msgspec.Meta(max_length=200)] = ""
    #: Fields to overwrite in the snapshot the event carries (e.g. a stale status).
    overrides: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Seconds added to the event's ``created`` (negative: an event older than the others).
    created_offset: Annotated[int, msgspec.Meta(ge=-10 * 86400, le=86400)] = 0
    #: The event's ``created`` itself (Unix seconds), e.g. the same second as another's.
    created: Annotated[int, msgspec.Meta(ge=0, le=2**33)] | None = None


def _store(request: Request[Any, Any, Any]) -> Store:
    store: Store = request.app.state.store
    return store


def _deliverer(request: Request[Any, Any, Any]) -> WebhookDeliverer:
    deliverer: WebhookDeliverer = request.app.state.deliverer
    return deliverer


@get("/health", summary="The stand-in answers")
async def health() -> dict[str, str]:
    return {"status": "ok", "service": "stripe-standin"}


@post("/sessions/{session_id:str}/pay", summary="Pay a session with a test card (no browser)")
async def pay(request: Request[Any, Any, Any], session_id: str, data: PayRequest) -> dict[str, Any]:
    store = _store(request)
    result = store.pay(session_id, data.card_number, email=data.email, name=data.name)
    request.app.state.runtime.after_pay(session_id, result)
    return {
        "outcome": result.outcome,
        "message": result.message,
        "redirect_url": result.redirect_url,
        "session": store.session(session_id),
    }


@post("/sessions/{session_id:str}/settle", summary="Settle a delayed payment now")
async def settle(
    request: Request[Any, Any, Any], session_id: str, data: SettleRequest
) -> dict[str, Any]:
    return _store(request).settle_delayed(session_id, data.outcome == "succeeded")


@post("/sessions/{session_id:str}/expire", summary="Expire an open session now (sends its webhook)")
async def expire_now(request: Request[Any, Any, Any], session_id: str) -> dict[str, Any]:
    return _store(request).expire_session(session_id)


@post("/sessions/{session_id:str}/hold", summary="Hold (or release) a session's webhooks")
async def hold(
    request: Request[Any, Any, Any], session_id: str, data: HoldRequest
) -> dict[str, Any]:
    store = _store(request)
    store.session(session_id)
    if data.held:
        store.state.held_sessions.add(session_id)
    else:
        store.state.held_sessions.discard(session_id)
        for event in store.events_for(session_id=session_id):
            if not store.state.event_meta.peek(event["id"], {}).get("delivered"):
                _deliverer(request).schedule(event)
    store.save()
    return {"session_id": session_id, "held": data.held}


@get("/sessions/{session_id:str}", summary="A session as the stand-in holds it")
async def session_state(request: Request[Any, Any, Any], session_id: str) -> dict[str, Any]:
    store = _store(request)
    return {
        "session": store.session(session_id),
        "held": session_id in store.state.held_sessions,
        "line_items": store.session_line_items(session_id),
    }


@get("/events", summary="Events, newest last")
async def events(
    request: Request[Any, Any, Any],
    session_id: Annotated[str | None, Parameter(query="session_id", max_length=200)] = None,
    event_type: Annotated[str | None, Parameter(query="type", max_length=100)] = None,
) -> dict[str, Any]:
    return {"data": _store(request).events_for(session_id, event_type)}


@post("/events", summary="Make an event about a session (for ordering tests)", status_code=201)
async def synthetic_event(
    request: Request[Any, Any, Any], data: SyntheticEventRequest
) -> dict[str, Any]:
    store = _store(request)
    if data.type.startswith("checkout.session.") and data.session_id:
        snapshot = dict(store.session(data.session_id))
        session_id: str | None = data.session_id
    elif data.type.startswith("customer.subscription.") and data.subscription_id:
        snapshot = billing.retrieve(store, data.subscription_id)
        session_id = store.state.subscription_sessions.get(data.subscription_id)
    else:
        raise StripeError(
            400,
            "Synthetic events are checkout.session.* (with session_id) or "
            "customer.subscription.* (with subscription_id).",
            param="type",
        )
    snapshot.update(data.overrides)
    return store.emit(
        data.type,
        snapshot,
        session_id=session_id,
        created=data.created
        if data.created is not None
        else (int(time.time()) + data.created_offset if data.created_offset else None),
    )


@post(
    "/subscriptions/{subscription_id:str}/renew",
    summary="End the current period now: bill the next (or fail to, with ?fail=1)",
)
async def renew(
    request: Request[Any, Any, Any],
    subscription_id: str,
    fail: Annotated[int, Parameter(query="fail", ge=0, le=1)] = 0,
) -> dict[str, Any]:
    return billing.renew(_store(request), subscription_id, fail=bool(fail))


@get("/subscriptions/{subscription_id:str}", summary="A subscription and its invoices")
async def subscription_state(
    request: Request[Any, Any, Any], subscription_id: str
) -> dict[str, Any]:
    store = _store(request)
    return {
        "subscription": billing.retrieve(store, subscription_id),
        "session_id": store.state.subscription_sessions.get(subscription_id),
        "invoices": [
            invoice
            for invoice in store.state.invoices.values()
            if invoice["parent"]["subscription_details"]["subscription"] == subscription_id
        ],
    }


@post("/deliver", summary="Deliver events now, in this order, and report the answers")
async def deliver(request: Request[Any, Any, Any], data: DeliverRequest) -> dict[str, Any]:
    store = _store(request)
    deliverer = _deliverer(request)
    results = []
    for event_id in data.event_ids:
        event = store.event(event_id)
        for _ in range(data.times):
            delivery = await deliverer.deliver(
                event, signature=data.signature, timestamp_offset=data.timestamp_offset
            )
            if (
                data.signature == SignatureMode.VALID
                and delivery.status_code
                and delivery.status_code < 300
            ):
                store.mark_delivered(event_id)
            results.append(
                {
                    "event_id": event_id,
                    "type": event["type"],
                    "status_code": delivery.status_code,
                    "error": delivery.error,
                    "body": delivery.response_body,
                }
            )
    return {"deliveries": results}


@post(
    "/events/{event_id:str}/send",
    summary="Deliver one event automatically (with retries)",
    status_code=202,
)
async def send(request: Request[Any, Any, Any], event_id: str) -> dict[str, Any]:
    event = _store(request).event(event_id)
    _deliverer(request).schedule(event)
    return {"event_id": event_id, "scheduled": True}


@get("/events/{event_id:str}/signed", summary="A signed delivery of an event, to send yourself")
async def signed(
    request: Request[Any, Any, Any],
    event_id: str,
    signature: Annotated[SignatureName, Parameter(query="signature")] = "valid",
    timestamp_offset: Annotated[
        int, Parameter(query="timestamp_offset", ge=-10 * 86400, le=86400)
    ] = 0,
) -> dict[str, Any]:
    signed_request = _deliverer(request).signed_request(
        _store(request).event(event_id), signature=signature, timestamp_offset=timestamp_offset
    )
    return {
        "url": signed_request.url,
        "payload": signed_request.payload,
        "headers": signed_request.headers,
    }


@get("/deliveries", summary="Webhook deliveries made, oldest first")
async def deliveries(
    request: Request[Any, Any, Any],
    event_id: Annotated[str | None, Parameter(query="event_id", max_length=200)] = None,
) -> dict[str, Any]:
    return {"data": _deliverer(request).deliveries(event_id)}


@get("/config", summary="Where webhooks go")
async def config(request: Request[Any, Any, Any]) -> Response[Any]:
    deliverer = _deliverer(request)
    return Response({"webhook_url": deliverer.url, "public_url": _store(request).public_url})


control_router = Router(
    path="/_standin",
    route_handlers=[
        health,
        pay,
        settle,
        expire_now,
        hold,
        session_state,
        events,
        synthetic_event,
        renew,
        subscription_state,
        deliver,
        send,
        signed,
        deliveries,
        config,
    ],
    include_in_schema=False,
)
