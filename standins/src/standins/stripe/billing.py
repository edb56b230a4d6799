"""Stripe Billing, as far as Ember's subscriptions use it: customers, subscriptions, invoices.

Shapes follow the API version the SDK pins (``2026-10-28``): a subscription's billing period
lives on its items (``items.data[].current_period_start/end``) and an invoice names its
subscription under ``parent.subscription_details`` (with the subscription's metadata).

- Paying a ``mode=subscription`` Checkout Session creates the customer, the subscription
  (``active``) and its first invoice (``paid``), and announces, in Stripe's order,
  ``checkout.session.completed``, ``customer.subscription.created``, ``invoice.paid``.
- ``renew`` (a test control: Stripe does it at the period's end) bills the next period:
  ``customer.subscription.updated`` (the new period) and ``invoice.paid``; or, when payment
  fails, ``invoice.payment_failed`` and ``customer.subscription.updated`` to ``past_due``. A
  subscription set to cancel at the period's end ends instead (``customer.subscription.deleted``).
- ``open_portal`` (``POST /v1/billing_portal/sessions``) makes a customer portal session;
  its hosted page (:mod:`standins.stripe.pages`) takes a test card and makes it the customer's
  default payment method (``invoice_settings.default_payment_method``) and their
  subscriptions'. A renewal fails when asked to (``renew?fail=1``) or when that card is
  Stripe's 4000 0000 0000 0341 (attaches, every charge fails); with a good card it is paid.
- ``update`` (``cancel_at_period_end``, ``metadata``, ``pause_collection``, and ``items`` with
  ``proration_behavior=none``) announces ``customer.subscription.updated``; ``cancel``
  (``DELETE``) ends it now with ``customer.subscription.deleted``.
- ``items[0][quantity]`` bills the next renewal for the new quantity. ``items[0][price]`` (a
  price made with ``POST /v1/prices``) of another billing period does what Stripe does when the
  period changes: the billing cycle restarts now and the new period is invoiced at once
  (``invoice.paid``, ``billing_reason=subscription_update``), with no proration credit.
"""

from __future__ import annotations

import calendar
import copy
import datetime as dt
from typing import TYPE_CHECKING, Any

from standins.stripe.errors import StripeError, missing
from standins.stripe.forms import as_int, as_metadata, as_str
from standins.stripe.store import (
    TEST_CARDS,
    CardOutcome,
    new_object_id,
    now,
    parse_recurring,
)

if TYPE_CHECKING:
    from standins.stripe.store import Store

#: Statuses from which a subscription can still be billed.
LIVE = ("active", "past_due", "trialing", "unpaid")


def period_end(start: int, interval: str, count: int) -> int:
    """``start`` moved on by ``count`` intervals, months clamped to the month's last day."""
    begin = dt.datetime.fromtimestamp(start, dt.UTC)
    if interval == "day":
        end = begin + dt.timedelta(days=count)
    elif interval == "week":
        end = begin + dt.timedelta(weeks=count)
    else:
        months = count * (12 if interval == "year" else 1)
        year, month = divmod(begin.month - 1 + months, 12)
        year += begin.year
        day = min(begin.day, calendar.monthrange(year, month + 1)[1])
        end = begin.replace(year=year, month=month + 1, day=day)
    return int(end.timestamp())


def subscription(store: Store, subscription_id: str) -> dict[str, Any]:
    return store.state.subscriptions.found(subscription_id, "subscription", param="subscription")


def _session_of(store: Store, subscription_id: str) -> str | None:
    return store.state.subscription_sessions.get(subscription_id)


def _emit_subscription(
    store: Store, type_: str, sub: dict[str, Any], previous: dict[str, Any] | None = None
) -> None:
    store.emit(type_, sub, session_id=_session_of(store, sub["id"]), previous_attributes=previous)


def start_subscription(store: Store, session: dict[str, Any], *, last4: str) -> dict[str, Any]:
    """What paying a ``mode=subscription`` Checkout Session does at Stripe."""
    created = now()
    details = session.get("customer_details") or {}
    customer: dict[str, Any] = {
        "id": new_object_id("cus"),
        "object": "customer",
        "created": created,
        "email": details.get("email") or session.get("customer_email"),
        "name": details.get("name"),
        "livemode": False,
        "metadata": {},
    }
    store.state.customers[customer["id"]] = customer
    line_items = store.state.line_items.get(session["id"], [])
    interval, count = _cadence(line_items)
    end = period_end(created, interval, count)
    metadata = dict(
        store.state.intent_data.get(session["id"], {}).get("subscription_metadata") or {}
    )
    sub_id = new_object_id("sub")
    items = [
        {
            "id": new_object_id("si"),
            "object": "subscription_item",
            "created": created,
            "current_period_start": created,
            "current_period_end": end,
            "metadata": {},
            "price": copy.deepcopy(item["price"]),
            "quantity": item["quantity"],
            "subscription": sub_id,
        }
        for item in line_items
    ]
    sub: dict[str, Any] = {
        "id": sub_id,
        "object": "subscription",
        "billing_cycle_anchor": created,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": session["currency"],
        "customer": customer["id"],
        "default_payment_method": new_object_id("pm"),
        "ended_at": None,
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": metadata,
        "pause_collection": None,
        "start_date": created,
        "status": "active",
        "_card_last4": last4,
        "_names": {item["price"]["id"]: str(item["description"]) for item in line_items},
    }
    store.state.subscriptions[sub_id] = sub
    store.state.subscription_sessions[sub_id] = session["id"]
    session["status"] = "complete"
    session["payment_status"] = "paid"
    session["customer"] = customer["id"]
    session["subscription"] = sub_id
    invoice = _invoice(store, sub, created, end, "subscription_create", paid=True)
    store.emit("checkout.session.completed", session, session_id=session["id"])
    _emit_subscription(store, "customer.subscription.created", _public(sub))
    store.emit("invoice.paid", invoice, session_id=session["id"])
    return sub


def _cadence(line_items: list[dict[str, Any]]) -> tuple[str, int]:
    recurring = (line_items[0]["price"].get("recurring") if line_items else None) or {}
    return str(recurring.get("interval") or "month"), int(recurring.get("interval_count") or 1)


def _public(sub: dict[str, Any]) -> dict[str, Any]:
    """The subscription as the API shows it (without the stand-in's own bookkeeping)."""
    return {k: v for k, v in sub.items() if not k.startswith("_")}


def _invoice(
    store: Store, sub: dict[str, Any], start: int, end: int, reason: str, *, paid: bool
) -> dict[str, Any]:
    created = now()
    invoice_id = new_object_id("in")
    lines = []
    names: dict[str, str] = sub.get("_names") or {}
    for item in sub["items"]["data"]:
        amount = int(item["price"]["unit_amount"]) * int(item["quantity"])
        lines.append(
            {
                "id": new_object_id("il"),
                "object": "line_item",
                "amount": amount,
                "currency": sub["currency"],
                "description": f"{item['quantity']} x {names.get(item['price']['id'], 'Item')}",
                "invoice": invoice_id,
                "metadata": {},
                "parent": {
                    "type": "subscription_item_details",
                    "subscription_item_details": {
                        "subscription": sub["id"],
                        "subscription_item": item["id"],
                    },
                },
                "period": {"start": start, "end": end},
                "pricing": {
                    "type": "price_details",
                    "price_details": {
                        "price": item["price"]["id"],
                        "product": item["price"]["product"],
                    },
                    "unit_amount_decimal": str(item["price"]["unit_amount"]),
                },
                "quantity": item["quantity"],
            }
        )
    total = sum(line["amount"] for line in lines)
    customer = store.state.customers.get(sub["customer"], {})
    invoice: dict[str, Any] = {
        "id": invoice_id,
        "object": "invoice",
        "amount_due": total,
        "amount_paid": total if paid else 0,
        "amount_remaining": 0 if paid else total,
        "attempt_count": 1,
        "attempted": True,
        "billing_reason": reason,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": sub["currency"],
        "customer": sub["customer"],
        "customer_email": customer.get("email"),
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(sub["metadata"]),
                "subscription": sub["id"],
            },
        },
        "period_start": start,
        "period_end": end,
        "status": "paid" if paid else "open",
        "status_transitions": {
            "finalized_at": created,
            "paid_at": created if paid else None,
        },
        "subtotal": total,
        "total": total,
    }
    store.state.invoices[invoice_id] = invoice
    sub["latest_invoice"] = invoice_id
    return invoice


def invoice(store: Store, invoice_id: str) -> dict[str, Any]:
    return store.state.invoices.found(invoice_id, "invoice", param="invoice")


def retrieve(store: Store, subscription_id: str) -> dict[str, Any]:
    return _public(subscription(store, subscription_id))


def update(store: Store, subscription_id: str, params: dict[str, Any]) -> dict[str, Any]:
    sub = subscription(store, subscription_id)
    unknown = sorted(
        set(params)
        - {
            "cancel_at_period_end",
            "metadata",
            "expand",
            "pause_collection",
            "items",
            "proration_behavior",
        }
    )
    if unknown:
        raise StripeError(
            400,
            f"The Stripe stand-in cannot update a subscription's {unknown[0]}.",
            param=unknown[0],
        )
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise StripeError(
            400,
            "A canceled subscription can only update its cancellation_details and metadata.",
            param="cancel_at_period_end" if "cancel_at_period_end" in params else None,
        )
    planned = _plan_items(store, sub, params) if "items" in params else []
    previous: dict[str, Any] = {}
    raw = as_str(params, "cancel_at_period_end")
    if raw is not None:
        if raw not in ("true", "false"):
            raise StripeError(400, "Invalid boolean: " + raw, param="cancel_at_period_end")
        wanted = raw == "true"
        if wanted != sub["cancel_at_period_end"]:
            previous["cancel_at_period_end"] = sub["cancel_at_period_end"]
            previous["cancel_at"] = sub["cancel_at"]
            previous["canceled_at"] = sub["canceled_at"]
            sub["cancel_at_period_end"] = wanted
            sub["cancel_at"] = _current_end(sub) if wanted else None
            sub["canceled_at"] = now() if wanted else None
    if "pause_collection" in params:
        wanted_pause = _pause_collection(params["pause_collection"])
        if wanted_pause != sub.get("pause_collection"):
            previous["pause_collection"] = sub.get("pause_collection")
            sub["pause_collection"] = wanted_pause
    if "metadata" in params:
        previous["metadata"] = dict(sub["metadata"])
        sub["metadata"].update(as_metadata(params))
        sub["metadata"] = {k: v for k, v in sub["metadata"].items() if v != ""}
    period_changed = _apply_items(store, sub, planned, previous)
    if previous:
        _emit_subscription(store, "customer.subscription.updated", _public(sub), previous)
    if period_changed:
        _bill_now(store, sub)
    store.save()
    return _public(sub)


PRORATION_BEHAVIORS = ("create_prorations", "none", "always_invoice")


Planned = list[tuple[dict[str, Any], int | None, dict[str, Any] | None]]


def _plan_items(store: Store, sub: dict[str, Any], params: dict[str, Any]) -> Planned:
    """``items[i][id|quantity|price]``, checked before anything changes: the items that change,
    each with its new quantity and price (None: unchanged)."""
    behavior = params.get("proration_behavior")
    if behavior is not None and behavior not in PRORATION_BEHAVIORS:
        raise StripeError(
            400,
            f"Invalid proration_behavior: must be one of {', '.join(PRORATION_BEHAVIORS)}",
            param="proration_behavior",
        )
    raw_items = params["items"]
    if not isinstance(raw_items, list) or not raw_items:
        raise StripeError(400, "Invalid array", param="items")
    by_id = {item["id"]: item for item in sub["items"]["data"]}
    wanted: Planned = []
    for index, raw in enumerate(raw_items):
        where = f"items[{index}]"
        if not isinstance(raw, dict):
            raise StripeError(400, "Invalid object", param=where)
        extra = sorted(set(raw) - {"id", "quantity", "price"})
        if extra:
            raise StripeError(
                400,
                f"The Stripe stand-in cannot change a subscription item's {extra[0]}.",
                param=f"{where}[{extra[0]}]",
            )
        item_id = as_str(raw, "id", param=f"{where}[id]")
        if item_id is None:
            raise StripeError(
                400,
                "The Stripe stand-in cannot add items to a subscription: name the item's id.",
                param=f"{where}[id]",
            )
        item = by_id.get(item_id)
        if item is None:
            raise missing("subscription_item", item_id, param=f"{where}[id]")
        quantity = as_int(raw, "quantity", minimum=0, param=f"{where}[quantity]")
        price_id = as_str(raw, "price", param=f"{where}[price]")
        price = _known_price(store, price_id, f"{where}[price]") if price_id else None
        if price is not None:
            if price["currency"] != sub["currency"]:
                raise StripeError(
                    400,
                    "The price's currency must match the subscription's currency "
                    f"({sub['currency']}).",
                    param=f"{where}[price]",
                )
            if not price.get("recurring"):
                raise StripeError(
                    400,
                    "The price specified is set to `type=one_time` but this field only accepts "
                    "prices with `type=recurring`.",
                    param=f"{where}[price]",
                )
        wanted.append((item, quantity, price))
    changes = [
        (item, quantity, price)
        for item, quantity, price in wanted
        if (quantity is not None and quantity != item["quantity"])
        or (price is not None and price["id"] != item["price"]["id"])
    ]
    if changes and behavior != "none":
        # Stripe would prorate (its default); Ember never asks for it, so it is not modelled.
        raise StripeError(
            400,
            "The Stripe stand-in changes items only with proration_behavior=none.",
            param="proration_behavior",
        )
    return changes


def _apply_items(
    store: Store, sub: dict[str, Any], changes: Planned, previous: dict[str, Any]
) -> bool:
    """Applies planned item changes; answers whether the billing period changed (Stripe then
    restarts the cycle now and invoices the new period at once)."""
    if not changes:
        return False
    before = copy.deepcopy(sub["items"])
    old_period = _cadence(sub["items"]["data"])
    names: dict[str, str] = sub.setdefault("_names", {})
    for item, quantity, price in changes:
        if quantity is not None:
            item["quantity"] = quantity
        if price is not None and price["id"] != item["price"]["id"]:
            # A price of a product of its own (another variant) bills under that product's
            # name; another cadence of the same product keeps the name.
            names[price["id"]] = product_name(store, str(price["product"])) or names.get(
                item["price"]["id"], "Item"
            )
            item["price"] = copy.deepcopy(price)
    previous["items"] = before
    new_period = _cadence(sub["items"]["data"])
    if new_period == old_period:
        return False
    # Another billing period: the cycle restarts now (Stripe resets billing_cycle_anchor).
    start = now()
    end = period_end(start, *new_period)
    previous["billing_cycle_anchor"] = sub["billing_cycle_anchor"]
    sub["billing_cycle_anchor"] = start
    for item in sub["items"]["data"]:
        item["current_period_start"] = start
        item["current_period_end"] = end
    return True


def _bill_now(store: Store, sub: dict[str, Any]) -> None:
    """The invoice of a period that restarted now (``billing_reason=subscription_update``)."""
    item = sub["items"]["data"][0]
    start, end = int(item["current_period_start"]), int(item["current_period_end"])
    session_id = _session_of(store, sub["id"])
    fail = bool(sub.get("_card_fails"))
    bill = _invoice(store, sub, start, end, "subscription_update", paid=not fail)
    if fail:
        bill["next_payment_attempt"] = now() + 3 * 86400
        store.emit("invoice.payment_failed", bill, session_id=session_id)
        previous = {"status": sub["status"]}
        sub["status"] = "past_due"
        _emit_subscription(store, "customer.subscription.updated", _public(sub), previous)
    else:
        store.emit("invoice.paid", bill, session_id=session_id)


def _known_price(store: Store, price_id: str, param: str) -> dict[str, Any]:
    found = store.state.prices.get(price_id)
    if found is not None:
        return found
    for sub in store.state.subscriptions.values():
        for item in sub["items"]["data"]:
            if item["price"]["id"] == price_id:
                return dict(item["price"])
    raise missing("price", price_id, param=param)


def _known_product(store: Store, product_id: str) -> bool:
    if product_id in store.state.products:
        return True
    if any(price["product"] == product_id for price in store.state.prices.values()):
        return True
    return any(
        item["price"]["product"] == product_id
        for sub in store.state.subscriptions.values()
        for item in sub["items"]["data"]
    )


def create_price(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/prices`` for an existing product (Stripe's ``price`` object)."""
    unknown = sorted(
        set(params)
        - {
            "product",
            "product_data",
            "currency",
            "unit_amount",
            "recurring",
            "metadata",
            "nickname",
            "expand",
        }
    )
    if unknown:
        raise StripeError(
            400, f"The Stripe stand-in cannot make a price with {unknown[0]}.", param=unknown[0]
        )
    product = as_str(params, "product", param="product")
    if product is not None and "product_data" in params:
        raise StripeError(
            400,
            "You may only specify one of these parameters: product, product_data.",
            param="product_data",
        )
    if product is None and "product_data" in params:
        made = _product_from(params["product_data"])
        product = made["id"]
    elif product is None:
        raise StripeError(
            400,
            "You must specify either `product` or `product_data` when creating a price.",
            param="product",
            code="parameter_missing",
        )
    else:
        made = None
        if not _known_product(store, product):
            raise missing("product", product, param="product")
    currency = (as_str(params, "currency", required=True) or "").lower()
    if len(currency) != 3 or not currency.isalpha():
        raise StripeError(400, f"Invalid currency: {currency}", param="currency")
    unit_amount = as_int(params, "unit_amount", minimum=0, required=True)
    assert unit_amount is not None
    if unit_amount > 99_999_999:
        raise StripeError(
            400,
            "Amount must be no more than $999,999.99",
            param="unit_amount",
            code="amount_too_large",
        )
    recurring = parse_recurring(params.get("recurring"), "recurring")
    price: dict[str, Any] = {
        "id": new_object_id("price"),
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": now(),
        "currency": currency,
        "livemode": False,
        "metadata": as_metadata(params),
        "nickname": as_str(params, "nickname", max_length=250),
        "product": product,
        "recurring": recurring,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
    }
    if made is not None:
        # Kept only once the price is valid: a refused price makes no product.
        store.state.products[made["id"]] = made
    store.state.prices[price["id"]] = price
    store.save()
    return price


def _product_from(raw: Any) -> dict[str, Any]:
    """``product_data`` (``name``, ``metadata``): Stripe makes the product with the price."""
    if not isinstance(raw, dict):
        raise StripeError(400, "Invalid object", param="product_data")
    extra = sorted(set(raw) - {"name", "metadata", "active"})
    if extra:
        raise StripeError(
            400,
            f"The Stripe stand-in cannot make a product with {extra[0]}.",
            param=f"product_data[{extra[0]}]",
        )
    name = as_str(raw, "name", required=True, max_length=250, param="product_data[name]")
    return {
        "id": new_object_id("prod"),
        "object": "product",
        "active": True,
        "created": now(),
        "livemode": False,
        "metadata": as_metadata(raw),
        "name": name,
    }


def product_name(store: Store, product_id: str) -> str | None:
    """The name of a product made with a price (``product_data``), if it is one."""
    found = store.state.products.peek(product_id)
    return str(found["name"]) if found else None


def _pause_collection(raw: Any) -> dict[str, Any] | None:
    """Stripe's ``pause_collection``: ``""`` resumes; ``{behavior, resumes_at?}`` pauses. The
    stand-in knows ``void`` (no invoice is collected while paused), the one Ember uses."""
    if raw in ("", None):
        return None
    if not isinstance(raw, dict):
        raise StripeError(400, "Invalid object", param="pause_collection")
    behavior = raw.get("behavior")
    if behavior not in ("void", "keep_as_draft", "mark_uncollectible"):
        raise StripeError(
            400, "Invalid pause_collection[behavior].", param="pause_collection[behavior]"
        )
    resumes_at: int | None = None
    if raw.get("resumes_at") not in (None, ""):
        try:
            resumes_at = int(raw["resumes_at"])
        except (TypeError, ValueError):
            raise StripeError(
                400, "Invalid integer.", param="pause_collection[resumes_at]"
            ) from None
        if resumes_at <= now():
            raise StripeError(
                400,
                "pause_collection[resumes_at] must be in the future.",
                param="pause_collection[resumes_at]",
            )
    return {"behavior": behavior, "resumes_at": resumes_at}


def _paused_at(sub: dict[str, Any], moment: int) -> bool:
    pause = sub.get("pause_collection")
    if not pause:
        return False
    return pause.get("resumes_at") is None or moment < int(pause["resumes_at"])


def cancel(store: Store, subscription_id: str) -> dict[str, Any]:
    sub = subscription(store, subscription_id)
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise StripeError(
            404,
            f"No such subscription: '{subscription_id}'; it has been canceled.",
            param="id",
            code="resource_missing",
        )
    _end(store, sub)
    store.save()
    return _public(sub)


def _end(store: Store, sub: dict[str, Any]) -> None:
    at = now()
    previous = {"status": sub["status"]}
    sub["status"] = "canceled"
    sub["ended_at"] = at
    sub["canceled_at"] = sub["canceled_at"] or at
    _emit_subscription(store, "customer.subscription.deleted", _public(sub), previous)


def _current_end(sub: dict[str, Any]) -> int:
    return int(sub["items"]["data"][0]["current_period_end"])


def renew(store: Store, subscription_id: str, *, fail: bool) -> dict[str, Any]:
    """The end of the current period, now: bill the next one (or end a subscription set to)."""
    sub = subscription(store, subscription_id)
    if sub["status"] not in LIVE:
        raise StripeError(
            400, f"This subscription is {sub['status']}: nothing to renew.", param="subscription"
        )
    if sub["cancel_at_period_end"]:
        _end(store, sub)
        store.save()
        return {"subscription": _public(sub), "invoice": None}
    start = _current_end(sub)
    interval, count = _cadence(sub["items"]["data"])
    end = period_end(start, interval, count)
    previous_period = {
        "current_period_start": sub["items"]["data"][0]["current_period_start"],
        "current_period_end": start,
    }
    for item in sub["items"]["data"]:
        item["current_period_start"] = start
        item["current_period_end"] = end
    session_id = _session_of(store, sub["id"])
    if _paused_at(sub, start):
        # Collection paused with "void": the period passes, nothing is billed or sent.
        _emit_subscription(
            store, "customer.subscription.updated", _public(sub), {"items": previous_period}
        )
        store.save()
        return {"subscription": _public(sub), "invoice": None}
    resumed: dict[str, Any] = {}
    if sub.get("pause_collection"):
        # The pause has run its course: Stripe clears it and bills again.
        resumed["pause_collection"] = sub["pause_collection"]
        sub["pause_collection"] = None
    fail = fail or bool(sub.get("_card_fails"))
    bill = _invoice(store, sub, start, end, "subscription_cycle", paid=not fail)
    if fail:
        bill["last_finalization_error"] = None
        bill["next_payment_attempt"] = now() + 3 * 86400
        store.emit("invoice.payment_failed", bill, session_id=session_id)
        previous = {"status": sub["status"], "items": previous_period, **resumed}
        sub["status"] = "past_due"
        _emit_subscription(store, "customer.subscription.updated", _public(sub), previous)
    else:
        previous = {"items": previous_period, **resumed}
        if sub["status"] != "active":
            previous["status"] = sub["status"]
            sub["status"] = "active"
        _emit_subscription(store, "customer.subscription.updated", _public(sub), previous)
        store.emit("invoice.paid", bill, session_id=session_id)
    store.save()
    return {"subscription": _public(sub), "invoice": bill}


#: How long a portal session's URL works (Stripe's are short-lived too).
PORTAL_TTL_SECONDS = 300
#: The one card Stripe attaches but every later charge declines.
FAILS_LATER = "4000000000000341"


def open_portal(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/billing_portal/sessions``: Stripe's ``billing_portal.session`` object."""
    customer_id = as_str(params, "customer")
    if not customer_id:
        raise StripeError(400, "Missing required param: customer.", param="customer")
    if customer_id not in store.state.customers:
        raise missing("customer", customer_id, param="customer")
    return_url = as_str(params, "return_url")
    if return_url is not None and not return_url.startswith(("http://", "https://")):
        raise StripeError(400, "Not a valid URL", param="return_url")
    portal_id = new_object_id("bps")
    portal: dict[str, Any] = {
        "id": portal_id,
        "object": "billing_portal.session",
        "configuration": "bpc_standin",
        "created": now(),
        "customer": customer_id,
        "flow": None,
        "livemode": False,
        "locale": None,
        "on_behalf_of": None,
        "return_url": return_url,
        "url": f"{store.public_url}/billing/{portal_id}",
    }
    store.state.portal_sessions[portal_id] = portal
    store.save()
    return portal


def portal_session(store: Store, portal_id: str) -> dict[str, Any] | None:
    """The portal session, while its URL still works."""
    portal = store.state.portal_sessions.get(portal_id)
    if portal is None or int(portal["created"]) + PORTAL_TTL_SECONDS < now():
        return None
    return portal


def customer_card(store: Store, customer_id: str) -> str:
    """The last four digits of the card the customer's subscriptions are charged to."""
    for sub in store.state.subscriptions.values():
        if sub["customer"] == customer_id and sub["status"] not in ("canceled",):
            return str(sub.get("_card_last4") or "")
    return ""


def update_card(store: Store, portal: dict[str, Any], card_number: str) -> str:
    """Saves the card as the portal customer's default; answers an error to show, or ""."""
    digits = "".join(ch for ch in card_number if ch.isdigit())
    card = TEST_CARDS.get(digits)
    if card is None:
        return "Your card number is incorrect. Use a Stripe test card."
    if card[0] != CardOutcome.SUCCEEDS and digits != FAILS_LATER:
        return card[2]
    customer = store.state.customers[portal["customer"]]
    method = new_object_id("pm")
    previous = customer.get("invoice_settings") or {}
    customer["invoice_settings"] = {**previous, "default_payment_method": method}
    store.state.customers[customer["id"]] = customer
    theirs = [
        sub_id
        for sub_id, sub in store.state.subscriptions.items()
        if sub["customer"] == portal["customer"] and sub["status"] != "canceled"
    ]
    for sub_id in theirs:
        sub = subscription(store, sub_id)
        previous_method = sub["default_payment_method"]
        sub["default_payment_method"] = method
        sub["_card_last4"] = digits[-4:]
        sub["_card_fails"] = digits == FAILS_LATER
        _emit_subscription(
            store,
            "customer.subscription.updated",
            _public(sub),
            {"default_payment_method": previous_method},
        )
    store.save()
    return ""
