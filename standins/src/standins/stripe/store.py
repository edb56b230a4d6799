"""The stand-in's state: Checkout Sessions, PaymentIntents, Charges, Refunds and Events.

Objects are kept in Stripe's own JSON shapes, in memory; after every change the objects it
touched are journaled to SQLite from a thread (:mod:`standins.journal`), so a restart loses
nothing and a burst never waits on a rewrite of the whole state. Every operation that Stripe would announce creates an
Event (a snapshot of the object at that moment) and hands it to the webhook deliverer.
"""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

from stripe._api_version import _ApiVersion

from standins.journal import Journal
from standins.stripe import pricing
from standins.stripe.errors import StripeError, missing
from standins.stripe.forms import as_int, as_metadata, as_str

API_VERSION = _ApiVersion.CURRENT
MAX_LINE_ITEMS = 100
MAX_EXPIRY_SECONDS = 24 * 3600
#: Older events are dropped from memory (and the file) beyond this many.
MAX_EVENTS = 5000
MAX_IDEMPOTENCY_KEYS = 5000
#: The journal's kind for held sessions (a set, not one of :data:`KINDS`).
HELD = "held_sessions"


def new_object_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(18).replace('-', 'x').replace('_', 'y')}"


def now() -> int:
    return int(time.time())


class CardOutcome:
    SUCCEEDS = "succeeds"
    DECLINED = "declined"
    DELAYED = "delayed"


#: Test cards: number -> (outcome, decline code, message, brand).
TEST_CARDS: dict[str, tuple[str, str, str, str]] = {
    "4242424242424242": (CardOutcome.SUCCEEDS, "", "", "visa"),
    "5555555555554444": (CardOutcome.SUCCEEDS, "", "", "mastercard"),
    "4000056655665556": (CardOutcome.SUCCEEDS, "", "", "visa"),
    "4000000000000002": (
        CardOutcome.DECLINED,
        "generic_decline",
        "Your card was declined.",
        "visa",
    ),
    "4000000000009995": (
        CardOutcome.DECLINED,
        "insufficient_funds",
        "Your card has insufficient funds.",
        "visa",
    ),
    "4000000000000069": (CardOutcome.DECLINED, "expired_card", "Your card has expired.", "visa"),
    # Stripe's "attaches, then every charge fails": saved in the customer portal, a
    # subscription's next renewal fails with it (billing.renew).
    "4000000000000341": (CardOutcome.DECLINED, "card_declined", "Your card was declined.", "visa"),
    # The stand-in's stand-in for a delayed payment method (bank debit): the session completes
    # unpaid and the money arrives (or does not) later.
    "4000000000003220": (CardOutcome.DELAYED, "", "", "visa"),
}


@dataclass
class PayResult:
    outcome: str
    message: str = ""
    redirect_url: str = ""


V = TypeVar("V")
T = TypeVar("T")


class Tracked(dict[str, V]):
    """One kind of object by id, noting every id looked up, set or removed: the objects an
    operation may have changed, which :meth:`Store.save` then journals (and nothing else)."""

    def __init__(self, kind: str, touched: set[tuple[str, str]]) -> None:
        super().__init__()
        self.kind = kind
        self._touched = touched

    def __getitem__(self, key: str) -> V:
        self._touched.add((self.kind, key))
        return super().__getitem__(key)

    @overload
    def get(self, key: str, default: None = None, /) -> V | None: ...
    @overload
    def get(self, key: str, default: V, /) -> V: ...
    @overload
    def get(self, key: str, default: T, /) -> V | T: ...
    def get(self, key: str, default: Any = None, /) -> Any:
        self._touched.add((self.kind, key))
        return super().get(key, default)

    def found(self, key: str, what: str, *, param: str = "id") -> V:
        """The object ``key``, or Stripe's 404 naming it a ``what`` (``param``: the parameter
        that named it)."""
        value = self.get(key)
        if value is None:
            raise missing(what, key, param=param)
        return value

    def __setitem__(self, key: str, value: V) -> None:
        self._touched.add((self.kind, key))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._touched.add((self.kind, key))
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        self._touched.add((self.kind, key))
        return super().pop(key, *default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._touched.add((self.kind, key))
        return super().setdefault(key, default)

    def peek(self, key: str, default: Any = None) -> Any:
        """A lookup that changes nothing (so is not journaled)."""
        return super().get(key, default)


#: Every kind of object the stand-in keeps, by its attribute on :class:`StandinState`.
KINDS = (
    "sessions",
    "line_items",
    #: Per session: what ``payment_intent_data`` asked for (metadata, shipping).
    "intent_data",
    "payment_intents",
    "charges",
    "refunds",
    "events",
    #: Per event: the session it concerns and whether a delivery has succeeded.
    "event_meta",
    "idempotency",
    #: Billing: customers, subscriptions and their invoices (see :mod:`standins.stripe.billing`).
    "customers",
    "subscriptions",
    "invoices",
    #: Per subscription: the Checkout Session that started it (holding its webhooks holds these).
    "subscription_sessions",
    #: Customer portal sessions (``/v1/billing_portal/sessions``), where a card is updated.
    "portal_sessions",
    #: Prices made with ``POST /v1/prices`` (a subscription's item changed to another cadence).
    "prices",
    #: Products made with a price (``POST /v1/prices`` with ``product_data``: another variant).
    "products",
    #: Discounts and shipping (see :mod:`standins.stripe.pricing`).
    "coupons",
    "promotion_codes",
    "shipping_rates",
)


class StandinState:
    """The objects, in memory; each kind a :class:`Tracked` mapping of id to Stripe's JSON."""

    sessions: Tracked[dict[str, Any]]
    line_items: Tracked[list[dict[str, Any]]]
    intent_data: Tracked[dict[str, Any]]
    payment_intents: Tracked[dict[str, Any]]
    charges: Tracked[dict[str, Any]]
    refunds: Tracked[dict[str, Any]]
    events: Tracked[dict[str, Any]]
    event_meta: Tracked[dict[str, Any]]
    idempotency: Tracked[dict[str, Any]]
    customers: Tracked[dict[str, Any]]
    subscriptions: Tracked[dict[str, Any]]
    invoices: Tracked[dict[str, Any]]
    subscription_sessions: Tracked[str]
    portal_sessions: Tracked[dict[str, Any]]
    prices: Tracked[dict[str, Any]]
    products: Tracked[dict[str, Any]]
    coupons: Tracked[dict[str, Any]]
    promotion_codes: Tracked[dict[str, Any]]
    shipping_rates: Tracked[dict[str, Any]]

    def __init__(self) -> None:
        self.touched: set[tuple[str, str]] = set()
        for kind in KINDS:
            setattr(self, kind, Tracked(kind, self.touched))
        #: Sessions whose webhooks are held back until delivered on request (tests of ordering).
        self.held_sessions: set[str] = set()

    def kind(self, name: str) -> Tracked[Any]:
        found: Tracked[Any] = getattr(self, name)
        return found


EventSink = Callable[[dict[str, Any]], None]


class Store:
    """All of the stand-in's objects and the operations Stripe performs on them."""

    def __init__(
        self,
        *,
        public_url: str,
        state_path: Path | None,
        min_expiry_seconds: int = 1800,
    ) -> None:
        self.public_url = public_url.rstrip("/")
        self.state_path = state_path
        self.min_expiry_seconds = min_expiry_seconds
        self.journal = Journal(state_path)
        self.state = self._load()
        self._held_saved = set(self.state.held_sessions)
        self._sinks: list[EventSink] = []

    # --- persistence --------------------------------------------------------------------

    def _load(self) -> StandinState:
        state = StandinState()
        legacy = self.journal.legacy
        for kind in KINDS:
            mapping = state.kind(kind)
            if legacy is not None:
                dict.update(mapping, legacy.get(kind) or {})
                self.journal.put_many(kind, dict.items(mapping))
            else:
                dict.update(mapping, self.journal.load(kind))
        if legacy is not None:
            state.held_sessions = set(legacy.get("held_sessions") or [])
            self.journal.put_many(HELD, ((s, True) for s in state.held_sessions))
        else:
            state.held_sessions = {key for key, _ in self.journal.load(HELD)}
        return state

    def save(self) -> None:
        """Journal what the last operations touched; the disk is written from a thread."""
        self._trim()
        touched = self.state.touched
        while touched:
            kind, key = touched.pop()
            mapping = self.state.kind(kind)
            if key in mapping:
                self.journal.put(kind, key, dict.__getitem__(mapping, key))
            else:
                self.journal.delete(kind, key)
        held = self.state.held_sessions
        for session_id in held - self._held_saved:
            self.journal.put(HELD, session_id, True)
        for session_id in self._held_saved - held:
            self.journal.delete(HELD, session_id)
        self._held_saved = set(held)

    def close(self) -> None:
        self.save()
        self.journal.close()

    def _trim(self) -> None:
        for mapping, limit in (
            (self.state.events, MAX_EVENTS),
            (self.state.idempotency, MAX_IDEMPOTENCY_KEYS),
        ):
            while len(mapping) > limit:
                oldest = next(iter(mapping))
                del mapping[oldest]
                self.state.event_meta.pop(oldest, None)

    # --- events -------------------------------------------------------------------------

    def on_event(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def emit(
        self,
        type_: str,
        obj: dict[str, Any],
        *,
        session_id: str | None,
        previous_attributes: dict[str, Any] | None = None,
        created: int | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous_attributes:
            data["previous_attributes"] = previous_attributes
        event: dict[str, Any] = {
            "id": new_object_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": now() if created is None else created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }
        self.state.events[event["id"]] = event
        self.state.event_meta[event["id"]] = {"session_id": session_id, "delivered": False}
        for sink in self._sinks:
            sink(event)
        return event

    def event(self, event_id: str) -> dict[str, Any]:
        return self.state.events.found(event_id, "event")

    def events_for(
        self, session_id: str | None = None, type_: str | None = None
    ) -> list[dict[str, Any]]:
        found = []
        for event_id, event in self.state.events.items():
            meta = self.state.event_meta.peek(event_id, {})
            if session_id is not None and meta.get("session_id") != session_id:
                continue
            if type_ is not None and event["type"] != type_:
                continue
            found.append(event)
        return found

    def is_held(self, event_id: str) -> bool:
        session_id = self.state.event_meta.peek(event_id, {}).get("session_id")
        return session_id is not None and session_id in self.state.held_sessions

    def mark_delivered(self, event_id: str, *, save: bool = True) -> None:
        meta = self.state.event_meta.get(event_id)
        if meta is not None and not meta.get("delivered"):
            meta["delivered"] = True
            if save:
                self.save()

    def undelivered(self) -> list[dict[str, Any]]:
        return [
            self.state.events[event_id]
            for event_id, meta in self.state.event_meta.items()
            if not meta.get("delivered")
            and event_id in self.state.events
            and not self.is_held(event_id)
        ]

    # --- checkout sessions --------------------------------------------------------------

    def _session_items(self, params: dict[str, Any], mode: str) -> tuple[list[dict[str, Any]], str]:
        """The session's line items as Stripe checks them, and their one currency."""
        raw_items = params.get("line_items")
        if not isinstance(raw_items, list) or not raw_items:
            raise StripeError(
                400,
                f"You must provide at least one line item in `{mode}` mode.",
                param="line_items",
                code="parameter_missing",
            )
        if len(raw_items) > MAX_LINE_ITEMS:
            raise StripeError(
                400, f"You may only specify up to {MAX_LINE_ITEMS} line items.", param="line_items"
            )
        items = [self._line_item(i, item) for i, item in enumerate(raw_items)]
        recurring = [item for item in items if item["price"]["type"] == "recurring"]
        if mode == "payment" and recurring:
            raise StripeError(
                400,
                "You specified `payment` mode but passed a recurring price. Either switch to "
                "`subscription` mode or use only one-time prices.",
                param="line_items",
            )
        if mode == "subscription" and len(recurring) != len(items):
            # Stripe allows one-time items beside recurring ones; Ember never sends any.
            raise StripeError(
                400,
                "The Stripe stand-in takes recurring prices only in `subscription` mode.",
                param="line_items",
            )
        if mode == "subscription" and len({_cadence(item) for item in items}) != 1:
            raise StripeError(
                400, "All recurring prices must share one billing interval.", param="line_items"
            )
        currencies = {item["currency"] for item in items}
        if len(currencies) != 1:
            raise StripeError(400, "All line items must use the same currency.", param="line_items")
        currency = currencies.pop()
        return items, currency

    def _session_expiry(self, params: dict[str, Any], created: int) -> int:
        expires_at = as_int(params, "expires_at")
        if expires_at is None:
            expires_at = created + MAX_EXPIRY_SECONDS
        elif (
            expires_at < created + self.min_expiry_seconds - 2
            or expires_at > created + MAX_EXPIRY_SECONDS + 2
        ):
            raise StripeError(
                400,
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout "
                "Session creation."
                if self.min_expiry_seconds == 1800
                else f"`expires_at` must be between {self.min_expiry_seconds} s and 24 hours from now.",
                param="expires_at",
            )
        return expires_at

    def create_session(self, params: dict[str, Any]) -> dict[str, Any]:
        mode = as_str(params, "mode", required=True)
        if mode not in ("payment", "subscription"):
            raise StripeError(
                400,
                "The Stripe stand-in supports Checkout Sessions in mode=payment or "
                "mode=subscription only.",
                param="mode",
            )
        ui_mode = as_str(params, "ui_mode") or "hosted"
        if ui_mode != "hosted":
            raise StripeError(
                400, "The Stripe stand-in serves ui_mode=hosted only.", param="ui_mode"
            )
        success_url = _url(params, "success_url", required=True)
        cancel_url = _url(params, "cancel_url", required=False)
        items, currency = self._session_items(params, mode)
        subtotal = sum(item["amount_subtotal"] for item in items)
        if mode == "subscription":
            for key in ("shipping_options", "payment_intent_data", "discounts"):
                if params.get(key) not in (None, ""):
                    raise StripeError(
                        400, f"`{key}` can only be used in `payment` mode.", param=key
                    )
        discounts, amount_discount = pricing.session_discount(self, params, currency, subtotal)
        shipping_options, rate = pricing.session_shipping(self, params, currency)
        shipping_cost = (
            {
                "amount_subtotal": rate["fixed_amount"]["amount"],
                "amount_tax": 0,
                "amount_total": rate["fixed_amount"]["amount"],
                "shipping_rate": rate["id"],
                "display_name": rate["display_name"],
            }
            if rate is not None
            else None
        )
        customer_id = as_str(params, "customer")
        if customer_id is not None:
            pricing.customer(self, customer_id)
            if params.get("customer_email") not in (None, ""):
                raise StripeError(
                    400,
                    "You may only specify one of these parameters: customer, customer_email.",
                    param="customer_email",
                )
        taxed = pricing.automatic_tax_enabled(params)
        tax_address = pricing.tax_address(self, customer_id) if taxed else None
        tax_bp = (
            pricing.tax_rate(str(tax_address["country"]), str(tax_address.get("state") or ""))
            if tax_address is not None
            else None
        )
        total_details = pricing.apply(items, amount_discount, shipping_cost, tax_bp)
        created = now()
        expires_at = self._session_expiry(params, created)
        customer_email = as_str(params, "customer_email", max_length=800)
        if customer_email is not None and "@" not in customer_email:
            raise StripeError(
                400,
                "Invalid email address: " + customer_email,
                param="customer_email",
                code="email_invalid",
            )
        intent_params = params.get("payment_intent_data") or {}
        if not isinstance(intent_params, dict):
            raise StripeError(400, "Invalid object", param="payment_intent_data")
        subscription_params = params.get("subscription_data") or {}
        if not isinstance(subscription_params, dict):
            raise StripeError(400, "Invalid object", param="subscription_data")
        if subscription_params and mode != "subscription":
            raise StripeError(
                400,
                "`subscription_data` can only be used in `subscription` mode.",
                param="subscription_data",
            )
        session_id = "cs_test_" + secrets.token_hex(28)
        session: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": subtotal,
            "amount_total": subtotal
            - total_details["amount_discount"]
            + total_details["amount_shipping"]
            + total_details["amount_tax"],
            "automatic_tax": {
                "enabled": taxed,
                "liability": {"type": "self"} if taxed else None,
                "provider": "stripe" if taxed else None,
                "status": "complete" if taxed else None,
            },
            "billing_address_collection": None,
            "cancel_url": cancel_url,
            "client_reference_id": as_str(params, "client_reference_id", max_length=200),
            "created": created,
            "currency": currency,
            "customer": customer_id,
            "customer_creation": "if_required",
            "customer_details": None,
            "customer_email": customer_email,
            "discounts": discounts,
            "expires_at": expires_at,
            "livemode": False,
            "locale": as_str(params, "locale"),
            "metadata": as_metadata(params),
            "mode": mode,
            "payment_intent": None,
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "shipping_cost": shipping_cost,
            "shipping_options": shipping_options,
            "status": "open",
            "submit_type": as_str(params, "submit_type"),
            "success_url": success_url,
            "total_details": total_details,
            "subscription": None,
            "ui_mode": "hosted",
            "url": f"{self.public_url}/pay/{session_id}",
        }
        self.state.sessions[session_id] = session
        self.state.line_items[session_id] = items
        self.state.intent_data[session_id] = {
            "metadata": as_metadata(intent_params),
            "shipping": intent_params.get("shipping")
            if isinstance(intent_params.get("shipping"), dict)
            else None,
            "description": as_str(intent_params, "description", max_length=1000),
            "subscription_metadata": as_metadata(subscription_params),
        }
        self.save()
        return session

    def _line_item(self, index: int, raw: Any) -> dict[str, Any]:
        where = f"line_items[{index}]"
        if not isinstance(raw, dict):
            raise StripeError(400, "Invalid object", param=where)
        quantity = as_int(raw, "quantity", minimum=1, required=True, param=f"{where}[quantity]")
        assert quantity is not None
        if quantity > 999_999:
            raise StripeError(400, "Quantity is too large.", param=f"{where}[quantity]")
        if raw.get("price"):
            raise missing("price", str(raw["price"]), param=f"{where}[price]")
        price_data = raw.get("price_data")
        if not isinstance(price_data, dict):
            raise StripeError(
                400,
                f"You must specify either `price` or `price_data` in {where}.",
                param=f"{where}[price_data]",
                code="parameter_missing",
            )
        currency = (
            as_str(price_data, "currency", required=True, param=f"{where}[price_data][currency]")
            or ""
        )
        if len(currency) != 3 or not currency.isalpha():
            raise StripeError(
                400, f"Invalid currency: {currency}", param=f"{where}[price_data][currency]"
            )
        unit_amount = as_int(
            price_data,
            "unit_amount",
            minimum=0,
            required=True,
            param=f"{where}[price_data][unit_amount]",
        )
        assert unit_amount is not None
        if unit_amount > 99_999_999:
            raise StripeError(
                400,
                "Amount must be no more than $999,999.99",
                param=f"{where}[price_data][unit_amount]",
                code="amount_too_large",
            )
        product_data = price_data.get("product_data")
        if not isinstance(product_data, dict):
            raise StripeError(
                400,
                "You must specify either `product` or `product_data`.",
                param=f"{where}[price_data][product_data]",
                code="parameter_missing",
            )
        name = as_str(
            product_data,
            "name",
            required=True,
            max_length=250,
            param=f"{where}[price_data][product_data][name]",
        )
        images = product_data.get("images") or []
        if not isinstance(images, list) or len(images) > 8:
            raise StripeError(
                400, "Invalid images.", param=f"{where}[price_data][product_data][images]"
            )
        recurring = _recurring(price_data.get("recurring"), f"{where}[price_data][recurring]")
        product = {
            "id": new_object_id("prod"),
            "object": "product",
            "name": name,
            "images": images,
            "metadata": as_metadata(product_data),
        }
        currency = currency.lower()
        return {
            "id": new_object_id("li"),
            "object": "item",
            "amount_discount": 0,
            "amount_subtotal": unit_amount * quantity,
            "amount_tax": 0,
            "amount_total": unit_amount * quantity,
            "currency": currency,
            "description": name,
            "price": {
                "id": new_object_id("price"),
                "object": "price",
                "active": False,
                "currency": currency,
                "metadata": {},
                "product": product["id"],
                "recurring": recurring,
                "type": "recurring" if recurring else "one_time",
                "unit_amount": unit_amount,
            },
            "product_data": product,
            "quantity": quantity,
        }

    def session(self, session_id: str) -> dict[str, Any]:
        return self.state.sessions.found(session_id, "checkout.session", param="session")

    def session_line_items(self, session_id: str) -> list[dict[str, Any]]:
        self.session(session_id)
        return [
            {k: v for k, v in item.items() if k != "product_data"}
            for item in self.state.line_items.get(session_id, [])
        ]

    def list_sessions(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        sessions = sorted(
            self.state.sessions.values(), key=lambda s: (s["created"], s["id"]), reverse=True
        )
        if params.get("payment_intent"):
            sessions = [s for s in sessions if s.get("payment_intent") == params["payment_intent"]]
        if params.get("status"):
            sessions = [s for s in sessions if s.get("status") == params["status"]]
        return sessions

    def expire_session(self, session_id: str) -> dict[str, Any]:
        session = self.session(session_id)
        if session["status"] != "open":
            raise StripeError(
                400,
                'Only Checkout Sessions with a status in ["open"] can be expired. This session has '
                f"a status of {session['status']!r}.",
                param="session",
            )
        session["status"] = "expired"
        intent_id = session.get("payment_intent")
        if intent_id and intent_id in self.state.payment_intents:
            self.state.payment_intents[intent_id]["status"] = "canceled"
            self.state.payment_intents[intent_id]["cancellation_reason"] = "abandoned"
        self.emit(
            "checkout.session.expired",
            session,
            session_id=session_id,
            previous_attributes={"status": "open"},
        )
        self.save()
        return session

    def expire_due(self) -> list[str]:
        due = [
            s["id"]
            for s in self.state.sessions.values()
            if s["status"] == "open" and s["expires_at"] <= now()
        ]
        for session_id in due:
            self.expire_session(session_id)
        return due

    # --- paying -------------------------------------------------------------------------

    def pay(
        self, session_id: str, card_number: str, *, email: str = "", name: str = ""
    ) -> PayResult:
        session = self.session(session_id)
        if session["status"] == "expired" or (
            session["status"] == "open" and session["expires_at"] <= now()
        ):
            if session["status"] == "open":
                self.expire_session(session_id)
            return PayResult("expired", "This checkout session has expired.")
        if session["status"] == "complete":
            return PayResult(
                "complete",
                "This checkout session is already paid.",
                redirect_url=self.success_redirect(session),
            )
        digits = "".join(ch for ch in card_number if ch.isdigit())
        card = TEST_CARDS.get(digits)
        if card is None:
            return PayResult("invalid", "Your card number is incorrect. Use a Stripe test card.")
        outcome, decline_code, message, brand = card
        email = email or session.get("customer_email") or ""
        if session["mode"] == "subscription":
            return self._pay_subscription(
                session, outcome=outcome, message=message, digits=digits, email=email, name=name
            )
        intent = self._intent_for(session)
        if outcome == CardOutcome.DECLINED:
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": decline_code,
                "message": message,
            }
            self.emit("payment_intent.payment_failed", intent, session_id=session_id)
            self.save()
            return PayResult("declined", message)
        session["customer_details"] = {
            "email": email,
            "name": name or None,
            "address": None,
            "phone": None,
        }
        session["status"] = "complete"
        pricing.redeem(self, session)
        intent["last_payment_error"] = None
        intent["payment_method_details"] = {
            "type": "card",
            "card": {"brand": brand, "last4": digits[-4:]},
        }
        if outcome == CardOutcome.SUCCEEDS:
            self._capture(session, intent)
            self.emit("checkout.session.completed", session, session_id=session_id)
        else:
            intent["status"] = "processing"
            self.emit("checkout.session.completed", session, session_id=session_id)
        self.save()
        return PayResult(
            "paid" if outcome == CardOutcome.SUCCEEDS else "processing",
            redirect_url=self.success_redirect(session),
        )

    def settle_delayed(self, session_id: str, succeeded: bool) -> dict[str, Any]:
        session = self.session(session_id)
        intent_id = session.get("payment_intent")
        intent = self.state.payment_intents.get(intent_id or "")
        if (
            session["status"] != "complete"
            or session["payment_status"] != "unpaid"
            or intent is None
            or intent["status"] != "processing"
        ):
            raise StripeError(
                400, "This session has no delayed payment waiting to settle.", param="session"
            )
        if succeeded:
            self._capture(session, intent)
            self.emit("checkout.session.async_payment_succeeded", session, session_id=session_id)
        else:
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": "payment_method_provider_decline",
                "message": "The delayed payment failed.",
            }
            self.emit("payment_intent.payment_failed", intent, session_id=session_id)
            self.emit("checkout.session.async_payment_failed", session, session_id=session_id)
        self.save()
        return session

    def _intent_for(self, session: dict[str, Any]) -> dict[str, Any]:
        intent_id = session.get("payment_intent")
        if intent_id and intent_id in self.state.payment_intents:
            return self.state.payment_intents[intent_id]
        extra = self.state.intent_data.get(session["id"], {})
        intent: dict[str, Any] = {
            "id": new_object_id("pi"),
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_received": 0,
            "currency": session["currency"],
            "created": now(),
            "description": extra.get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": dict(extra.get("metadata") or {}),
            "payment_method_types": ["card"],
            "receipt_email": session.get("customer_email"),
            "shipping": extra.get("shipping"),
            "status": "requires_payment_method",
        }
        self.state.payment_intents[intent["id"]] = intent
        session["payment_intent"] = intent["id"]
        return intent

    def _capture(self, session: dict[str, Any], intent: dict[str, Any]) -> None:
        charge: dict[str, Any] = {
            "id": new_object_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"],
            "amount_refunded": 0,
            "billing_details": {
                "email": (session.get("customer_details") or {}).get("email"),
                "name": (session.get("customer_details") or {}).get("name"),
            },
            "captured": True,
            "created": now(),
            "currency": intent["currency"],
            "livemode": False,
            "metadata": dict(intent["metadata"]),
            "paid": True,
            "payment_intent": intent["id"],
            "payment_method_details": intent.get("payment_method_details"),
            "receipt_email": intent.get("receipt_email"),
            "refunded": False,
            "refunds": {
                "object": "list",
                "data": [],
                "has_more": False,
                "total_count": 0,
                "url": "/v1/refunds",
            },
            "status": "succeeded",
        }
        self.state.charges[charge["id"]] = charge
        intent["status"] = "succeeded"
        intent["amount_received"] = intent["amount"]
        intent["latest_charge"] = charge["id"]
        session["payment_status"] = "paid"
        self.emit("charge.succeeded", charge, session_id=session["id"])
        self.emit("payment_intent.succeeded", intent, session_id=session["id"])

    def _pay_subscription(
        self,
        session: dict[str, Any],
        *,
        outcome: str,
        message: str,
        digits: str,
        email: str,
        name: str,
    ) -> PayResult:
        if outcome == CardOutcome.DECLINED:
            # Stripe announces no Checkout event for a declined card: the page shows the error.
            return PayResult("declined", message)
        if outcome == CardOutcome.DELAYED:
            return PayResult(
                "invalid", "The stand-in takes cards that pay at once for subscriptions."
            )
        from standins.stripe import billing

        session["customer_details"] = {
            "email": email,
            "name": name or None,
            "address": None,
            "phone": None,
        }
        billing.start_subscription(self, session, last4=digits[-4:])
        self.save()
        return PayResult("paid", redirect_url=self.success_redirect(session))

    def success_redirect(self, session: dict[str, Any]) -> str:
        return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session["id"])

    # --- payment intents, charges, refunds ----------------------------------------------

    def payment_intent(self, intent_id: str) -> dict[str, Any]:
        return self.state.payment_intents.found(intent_id, "payment_intent", param="intent")

    def charge(self, charge_id: str) -> dict[str, Any]:
        return self.state.charges.found(charge_id, "charge", param="charge")

    def refund(self, refund_id: str) -> dict[str, Any]:
        return self.state.refunds.found(refund_id, "refund", param="refund")

    def create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        charge_id = as_str(params, "charge")
        intent_id = as_str(params, "payment_intent")
        if charge_id is None and intent_id is None:
            raise StripeError(
                400,
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                code="parameter_missing",
            )
        if charge_id is None:
            intent = self.payment_intent(intent_id or "")
            charge_id = intent.get("latest_charge")
            if not charge_id:
                raise StripeError(
                    400,
                    f"PaymentIntent {intent_id} does not have a successful charge to refund.",
                    param="payment_intent",
                    code="charge_not_refundable",
                )
        charge = self.charge(charge_id)
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            raise StripeError(
                400,
                f"Charge {charge_id} has already been refunded.",
                param="charge",
                code="charge_already_refunded",
            )
        amount = as_int(params, "amount", minimum=1)
        amount = remaining if amount is None else amount
        if amount > remaining:
            raise StripeError(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({remaining}).",
                param="amount",
                code="amount_too_large",
            )
        reason = as_str(params, "reason")
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise StripeError(400, f"Invalid reason: {reason}", param="reason")
        refund: dict[str, Any] = {
            "id": new_object_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge_id,
            "created": now(),
            "currency": charge["currency"],
            "metadata": as_metadata(params),
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": "succeeded",
        }
        self.state.refunds[refund["id"]] = refund
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        charge["refunds"]["data"].insert(0, refund)
        charge["refunds"]["total_count"] = len(charge["refunds"]["data"])
        session_id = self._session_of_intent(charge["payment_intent"])
        self.emit("refund.created", refund, session_id=session_id)
        self.emit("charge.refunded", charge, session_id=session_id, previous_attributes=previous)
        self.save()
        return refund

    def _session_of_intent(self, intent_id: str | None) -> str | None:
        for session in self.state.sessions.values():
            if intent_id and session.get("payment_intent") == intent_id:
                return str(session["id"])
        return None

    # --- idempotency --------------------------------------------------------------------

    def idempotent_response(self, key: str, fingerprint: str) -> tuple[int, dict[str, Any]] | None:
        saved = self.state.idempotency.get(key)
        if saved is None:
            return None
        if saved["fingerprint"] != fingerprint:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they were first "
                f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
                type_="idempotency_error",
            )
        return int(saved["status"]), saved["body"]

    def remember_response(
        self, key: str, fingerprint: str, status: int, body: dict[str, Any]
    ) -> None:
        self.state.idempotency[key] = {
            "fingerprint": fingerprint,
            "status": status,
            "body": body,
            "created": now(),
        }
        self.save()


INTERVALS = ("day", "week", "month", "year")


def parse_recurring(raw: Any, where: str) -> dict[str, Any] | None:
    """A price's ``recurring`` as Stripe reads it (None when absent)."""
    return _recurring(raw, where)


def _recurring(raw: Any, where: str) -> dict[str, Any] | None:
    if raw in (None, ""):
        return None
    if not isinstance(raw, dict):
        raise StripeError(400, "Invalid object", param=where)
    interval = as_str(raw, "interval", required=True, param=f"{where}[interval]")
    if interval not in INTERVALS:
        raise StripeError(
            400,
            f"Invalid interval: must be one of {', '.join(INTERVALS)}",
            param=f"{where}[interval]",
        )
    count = as_int(raw, "interval_count", minimum=1, param=f"{where}[interval_count]") or 1
    # Stripe caps a billing period at one year (or 52 weeks, 12 months, 365 days).
    limit = {"day": 365, "week": 52, "month": 12, "year": 1}[interval]
    if count > limit:
        raise StripeError(
            400,
            "The maximum billing period is one year.",
            param=f"{where}[interval_count]",
        )
    return {"interval": interval, "interval_count": count, "usage_type": "licensed"}


def _cadence(item: dict[str, Any]) -> tuple[str, int]:
    recurring = item["price"]["recurring"] or {}
    return str(recurring.get("interval")), int(recurring.get("interval_count") or 1)


def _url(params: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = as_str(params, key, required=required, max_length=5000)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StripeError(400, f"Not a valid URL: {value}", param=key, code="url_invalid")
    return value
