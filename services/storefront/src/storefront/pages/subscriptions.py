"""Coffee subscriptions: subscribing from a coffee's page, the shopper's list, one with its
invoices, cancelling at the period's end, and the state shown after Stripe's page.

Checkout owns them (``/api/subscriptions*``). Subscribing sends the browser to the payment
provider's page (Stripe Checkout in subscription mode); coming back from it proves nothing: a
subscription is shown active only when checkout says so, which only Stripe's verified webhook
makes happen. Until then the page says the subscription starts once the payment is confirmed and
asks again every few seconds (htmx), as the order page does for orders.

Stripe returns the shopper to ``/account?subscription={id}``; the account page shows that
subscription's state there (``returned_subscription`` and the ``/status`` fragment below).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from ember_shared.settings import env_str
from litestar import Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Redirect

from storefront.api import Api, ApiProblem, ApiUnavailable, Visitor
from storefront.errors import error_response
from storefront.forms import Form
from storefront.messages import friendly
from storefront.pages.checkout import ADDRESS_FIELDS, COUNTRIES, FIELD_LABELS, read_address
from storefront.web import redirect, render

Page = Annotated[int, Parameter(ge=1, le=10_000)]
CoffeeSlug = Annotated[
    str, Parameter(max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", query="coffee")
]
#: A variant as the product page's deep link names it (its SKU) or by its id.
VariantKey = Annotated[str | None, Parameter(max_length=120, query="variant")]
SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,199}$")
PAGE_SIZE = 20
#: Bags per delivery: checkout's bounds (``Subscribe.quantity``).
MAX_QUANTITY = 10
#: The cadences offered, each one checkout accepts (``interval`` week|month, ``interval_count``
#: 1..4). The form sends the code; anything else is refused before checkout is asked.
CADENCES: dict[str, tuple[str, int]] = {
    "1-week": ("week", 1),
    "2-week": ("week", 2),
    "3-week": ("week", 3),
    "4-week": ("week", 4),
    "1-month": ("month", 1),
    "2-month": ("month", 2),
}
DEFAULT_CADENCE = "2-week"
STATUS_LABELS = {
    "incomplete": "Awaiting payment",
    "incomplete_expired": "Not started",
    "trialing": "Trial",
    "active": "Active",
    "past_due": "Payment overdue",
    "unpaid": "Unpaid",
    "paused": "Paused",
    "canceled": "Cancelled",
}
#: Statuses checkout (Stripe) can still cancel.
CANCELLABLE = frozenset({"active", "trialing", "past_due", "unpaid", "paused"})
#: Statuses in which deliveries are under way (the period end is the next delivery).
RUNNING = frozenset({"active", "trialing"})
#: Statuses after which nothing more is delivered (no address to change).
ENDED = frozenset({"canceled", "incomplete_expired"})


def cadence_label(interval: str, count: int) -> str:
    unit = "week" if interval == "week" else "month"
    return f"Every {unit}" if count == 1 else f"Every {count} {unit}s"


CADENCE_CHOICES = [(code, cadence_label(*value)) for code, value in CADENCES.items()]


def shop_currency() -> str:
    """The one currency checkout charges (``CHECKOUT_CURRENCY``): a product priced in another
    cannot be subscribed to."""
    return env_str("CHECKOUT_CURRENCY", "USD").upper() or "USD"


def can_subscribe(product: Mapping[str, Any]) -> bool:
    """Whether checkout would take a subscription to ``product`` (a listed product, in the
    shop's currency), and it is not sold out (each delivery is an order that needs stock)."""
    return (
        bool(product.get("id"))
        and str(product.get("currency") or "").upper() == shop_currency()
        and product.get("availability") != "sold_out"
    )


def subscription_offer(product: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the product page's "Subscribe" form offers, or None when it cannot be subscribed."""
    if not can_subscribe(product):
        return None
    return {
        "cadences": CADENCE_CHOICES,
        "cadence": DEFAULT_CADENCE,
        "quantities": range(1, MAX_QUANTITY + 1),
    }


def subscribed_variant(product: Mapping[str, Any], wanted: str | None) -> dict[str, Any] | None:
    """The variant a subscription form is for: the one ``wanted`` names (its id or SKU), else
    the product's default (the variant with the product's id), else its first; None for a
    product that lists no variants or when ``wanted`` names none of its variants."""
    variants: list[dict[str, Any]] = [
        v for v in product.get("variants") or [] if isinstance(v, dict)
    ]
    if wanted:
        key = wanted.strip().lower()[:120]
        return next(
            (v for v in variants if key in (str(v.get("id", "")), str(v.get("sku", "")).lower())),
            None,
        )
    default = next((v for v in variants if str(v.get("id")) == str(product.get("id"))), None)
    return default or (variants[0] if variants else None)


def variant_choices(
    product: Mapping[str, Any] | None, subscription: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The variants a subscriber may change to (the product's, as sold now), the current one
    marked; empty for a product with a single variant (nothing to choose)."""
    variants = [v for v in (product or {}).get("variants") or [] if isinstance(v, dict)]
    if len(variants) < 2:
        return []
    current = str((subscription.get("variant") or {}).get("id") or "")
    choices = [
        {
            "id": str(v.get("id")),
            "label": str(v.get("title") or v.get("sku") or ""),
            "price": v.get("price"),
            "selected": str(v.get("id")) == current,
        }
        for v in variants
    ]
    if not any(c["selected"] for c in choices):
        # Not sold now: it stays (the empty choice changes nothing) unless another is chosen.
        title = str((subscription.get("variant") or {}).get("title") or "")
        choices.insert(0, {"id": "", "label": f"{title} (as now)", "price": None, "selected": True})
    return choices


def _form_variant(form: Form) -> tuple[str | None, dict[str, str]]:
    """The variant a form names (its id; none: the product's default), or the error."""
    raw = form.text("variant", 60)
    try:
        return (str(uuid.UUID(raw)) if raw else None), {}
    except ValueError:
        return None, {"variant": "Choose one of this coffee's sizes and grinds."}


def returned_subscription(request: Request[Any, Any, Any]) -> str:
    """The subscription Stripe's success redirect names (``/account?subscription=``), if any."""
    raw = request.query_params.get("subscription") or ""
    try:
        return str(uuid.UUID(str(raw)[:40]))
    except ValueError:
        return ""


def shown(subscription: Mapping[str, Any]) -> dict[str, Any]:
    """A subscription as the pages show it: its cadence and status in words."""
    status = str(subscription.get("status") or "")
    ending = bool(subscription.get("cancel_at_period_end")) and status in CANCELLABLE
    return {
        **subscription,
        "cadence": cadence_label(
            str(subscription.get("interval") or ""), int(subscription.get("interval_count") or 1)
        ),
        "status_label": "Ends at period end"
        if ending
        else STATUS_LABELS.get(status, status.replace("_", " ").capitalize()),
        "badge": "ending" if ending else status,
        "ending": ending,
        "running": status in RUNNING and not ending,
        "cancellable": status in CANCELLABLE and not ending,
        # Stripe's pause_collection, as its webhook last said: no delivery is billed.
        "paused": bool(subscription.get("paused")),
        "pausable": status == "active" and not ending,
        # Stripe could not take the last renewal (it retries): the card wants updating.
        "payment_failed": status in ("past_due", "unpaid"),
        "card_updatable": status in CANCELLABLE,
        # Checkout takes a new quantity or cadence for an active one that is not ending.
        "changeable": status == "active" and not ending,
        "addressable": status not in ENDED,
        "cadence_code": cadence_code(subscription),
        # The variant delivered ("Espresso / 1 kg"; empty for a product without options).
        "variant_title": str((subscription.get("variant") or {}).get("title") or ""),
        "short_id": str(subscription.get("id") or "")[-8:].upper(),
    }


def cadence_code(subscription: Mapping[str, Any]) -> str:
    """The form's code of the subscription's cadence ("" for one the form does not offer)."""
    current = (
        str(subscription.get("interval") or ""),
        int(subscription.get("interval_count") or 1),
    )
    return next((code for code, value in CADENCES.items() if value == current), "")


def subscription_message(problem: ApiProblem) -> str:
    """One sentence for a problem checkout answered about a subscription."""
    if isinstance(problem, ApiUnavailable):
        return friendly(problem)
    match problem.kind:
        case "product-unavailable":
            return "Sorry, this coffee is no longer sold, so it cannot be subscribed to."
        case "variant-unavailable":
            return "Sorry, that choice of this coffee is not sold now: pick another."
        case "currency-mismatch":
            return "This coffee is priced in a currency we cannot bill a subscription in."
        case "subscription-not-active":
            return (
                "This subscription has not started or has already ended: "
                "there is nothing to cancel."
            )
        case "email-required":
            return "Your account needs an email address for receipts before you subscribe."
        case "validation":
            return "Some fields need another look."
    return friendly(problem, "that subscription")


def _problem_status(problem: ApiProblem) -> int:
    return problem.status if 400 <= problem.status < 600 else 400


def _signin(request: Request[Any, Any, Any], target: str) -> Response[Any]:
    return redirect(request, f"/signin?next={target}", flash="signin-needed")


def _not_found(request: Request[Any, Any, Any]) -> Response[Any]:
    return error_response(
        request,
        404,
        "We could not find that subscription",
        "It may belong to another account. Your own are listed under Your subscriptions.",
    )


def _no_coffee(request: Request[Any, Any, Any]) -> Response[Any]:
    return error_response(
        request,
        404,
        "We could not find that coffee",
        "It may be sold out for the season or renamed. Have a look at what we roast now.",
    )


async def _product(api: Api, slug: str) -> dict[str, Any] | None:
    if not SLUG.fullmatch(slug):
        return None
    try:
        product: dict[str, Any] = await api.get(
            "catalog", f"/api/products/{slug}", bearer=False, cookies=()
        )
    except ApiProblem as problem:
        if problem.status in (400, 404):
            return None
        raise
    return product


async def _addresses(api: Api) -> list[dict[str, Any]]:
    body = await api.get("identity", "/api/user/addresses")
    return [a for a in body.get("items", []) if isinstance(a, dict)]


def _default_address(addresses: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((a for a in addresses if a.get("is_default")), addresses[0] if addresses else None)


def _form_context(
    product: dict[str, Any],
    addresses: list[dict[str, Any]],
    *,
    variant: dict[str, Any] | None = None,
    quantity: int | None = 1,
    cadence: str = DEFAULT_CADENCE,
    address_choice: str = "",
    address: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    if not address_choice:
        default = _default_address(addresses)
        address_choice = f"saved:{default['id']}" if default else "new"
    return {
        "product": product,
        "variant": variant,
        "subscribable": can_subscribe(product)
        and (variant is None or variant.get("availability") != "sold_out"),
        "addresses": addresses,
        "address_choice": address_choice,
        "address": address or {"country": "US"},
        "quantity": quantity,
        "quantities": range(1, MAX_QUANTITY + 1),
        "cadence": cadence,
        "cadences": CADENCE_CHOICES,
        "errors": errors or {},
        "notice": "",
        "countries": COUNTRIES,
        "title": f"Subscribe: {product.get('name', '')}"
        + (f" ({variant['title']})" if variant and variant.get("title") else ""),
    }


def _shipping_address(saved: Mapping[str, Any]) -> dict[str, str]:
    """A saved address in the shape checkout takes (its own fields only, empty ones left out)."""
    out = {name: str(saved.get(name) or "").strip() for name in ADDRESS_FIELDS}
    return {k: v for k, v in out.items() if v}


# --- subscribing ---------------------------------------------------------------------------


@get("/account/subscriptions/new", name="subscription-new", include_in_schema=False, cache=False)
async def subscription_new(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    coffee: CoffeeSlug,
    variant: VariantKey = None,
) -> Response[Any]:
    if not visitor.signed_in:
        target = f"/account/subscriptions/new?coffee={coffee}"
        if variant:
            target += f"&variant={quote(variant, safe='')}"
        return _signin(request, quote(target, safe="/?="))
    product, addresses = await asyncio.gather(_product(api, coffee), _addresses(api))
    if product is None:
        return _no_coffee(request)
    chosen = subscribed_variant(product, variant)
    if variant and chosen is None:
        return _no_coffee(request)
    context = _form_context(product, addresses, variant=chosen)
    if not context["subscribable"]:
        context["notice"] = "Sorry, this coffee cannot be subscribed to right now."
    return render(request, "subscriptions/new.html", context)


@dataclass
class AddressChoice:
    """Where a new subscription is sent, as the form chose it (``saved:<id>``, ``new``)."""

    choice: str
    shipping: dict[str, str] | None = None
    typed: dict[str, str] | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _address_choice(form: Form, addresses: list[dict[str, Any]], choice: str) -> AddressChoice:
    if not choice:
        # From the coffee's page: the default address, when there is one; else ask for one.
        default = _default_address(addresses)
        if default is None:
            return AddressChoice("new")
        return AddressChoice(f"saved:{default['id']}", shipping=_shipping_address(default))
    if choice.startswith("saved:"):
        saved = next((a for a in addresses if f"saved:{a.get('id')}" == choice), None)
        if saved is None:
            return AddressChoice(choice, errors={"address_choice": "Choose one of your addresses."})
        return AddressChoice(choice, shipping=_shipping_address(saved))
    if choice == "new":
        typed, errors = read_address(form)
        return AddressChoice(
            choice, shipping={k: v for k, v in typed.items() if v}, typed=typed, errors=errors
        )
    return AddressChoice(choice, errors={"address_choice": "Choose where we send it."})


@post("/account/subscriptions", name="subscribe", include_in_schema=False)
async def subscribe(request: Request[Any, Any, Any], api: Api, visitor: Visitor) -> Response[Any]:
    form = await Form.of(request)
    slug = form.text("coffee", 200)
    if not visitor.signed_in:
        return _signin(request, f"/coffee/{slug}" if SLUG.fullmatch(slug) else "/shop")
    product = await _product(api, slug)
    if product is None:
        return _no_coffee(request)
    addresses = await _addresses(api)
    quantity = form.integer("quantity", None, 1, MAX_QUANTITY)
    cadence = form.text("cadence", 20)
    choice = form.text("address_choice", 60)
    variant_id, errors = _form_variant(form)
    # Shown as the form's choice; whether it is sold is checkout's to say.
    variant = subscribed_variant(product, variant_id)
    if quantity is None:
        errors["quantity"] = f"Choose 1 to {MAX_QUANTITY} bags per delivery."
    if cadence not in CADENCES:
        errors["cadence"] = "Choose how often we send it."
    picked = _address_choice(form, addresses, choice)
    if not choice and picked.shipping is None and not errors:
        # From the coffee's page without a default address: ask for one, nothing is wrong yet.
        context = _form_context(
            product, addresses, variant=variant, quantity=quantity, cadence=cadence
        )
        context["notice"] = "Where should we send it? Give a delivery address."
        context["notice_kind"] = "info"
        return render(request, "subscriptions/new.html", context)
    errors.update(picked.errors)
    shipping, typed, choice = picked.shipping, picked.typed, picked.choice
    context = _form_context(
        product,
        addresses,
        variant=variant,
        quantity=quantity,
        cadence=cadence if cadence in CADENCES else DEFAULT_CADENCE,
        address_choice=choice,
        address=typed,
        errors=errors,
    )
    if errors or shipping is None:
        context["notice"] = "Some fields need another look."
        return render(request, "subscriptions/new.html", context, status=400)
    if not context["subscribable"]:
        context["notice"] = "Sorry, this coffee cannot be subscribed to right now."
        return render(request, "subscriptions/new.html", context, status=409)
    interval, interval_count = CADENCES[cadence]
    body = {
        "product_id": str(product["id"]),
        "quantity": quantity,
        "interval": interval,
        "interval_count": interval_count,
        "shipping_address": shipping,
        **({"variant_id": variant_id} if variant_id else {}),
    }
    try:
        started = await api.post("checkout", "/api/subscriptions", json=body)
    except ApiProblem as problem:
        if problem.status == 401:
            raise
        context["notice"] = subscription_message(problem)
        context["errors"] = {
            key: f"{FIELD_LABELS.get(key, key.replace('_', ' ').capitalize())}: {message}"
            for key, message in problem.field_errors().items()
        }
        return render(request, "subscriptions/new.html", context, status=_problem_status(problem))
    url = str(started.get("checkout_url") or "")
    if not url.startswith(("https://", "http://")):
        return error_response(request, 503)
    # The payment page is the provider's (Stripe's): card data never reaches the shop.
    return Redirect(url, status_code=303)


# --- the shopper's subscriptions -------------------------------------------------------------


@get("/account/subscriptions", name="account-subscriptions", include_in_schema=False, cache=False)
async def subscriptions_page(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, page: Page = 1
) -> Response[Any]:
    if not visitor.signed_in:
        return _signin(request, "/account/subscriptions")
    listing = await api.get(
        "checkout", "/api/subscriptions", params={"page": page, "page_size": PAGE_SIZE}
    )
    items = [shown(s) for s in listing.get("items", []) if isinstance(s, dict)]
    pages = max(1, -(-int(listing.get("total", 0)) // PAGE_SIZE))
    return render(
        request,
        "subscriptions/list.html",
        {"subscriptions": items, "page": page, "pages": pages, "title": "Your subscriptions"},
    )


async def _subscription(api: Api, subscription_id: uuid.UUID) -> dict[str, Any] | None:
    """The shopper's own subscription (checkout answers 404 for anyone else's)."""
    try:
        found: dict[str, Any] = await api.get("checkout", f"/api/subscriptions/{subscription_id}")
    except ApiProblem as problem:
        if problem.status in (400, 404):
            return None
        raise
    return shown(found)


def _detail_context(
    subscription: dict[str, Any], notice: str = "", product: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    cadences = CADENCE_CHOICES
    if not subscription.get("cadence_code"):
        # A cadence the form does not offer stays selected (and unchanged) unless another is.
        cadences = [("", f"{subscription.get('cadence', '')} (as now)"), *CADENCE_CHOICES]
    return {
        "subscription": subscription,
        "invoices": subscription.get("invoices") or [],
        "notice": notice,
        "title": f"Subscription: {subscription['product'].get('name', '')}",
        "quantities": range(1, MAX_QUANTITY + 1),
        "cadences": cadences,
        "plan": {
            "quantity": subscription.get("quantity"),
            "cadence": subscription.get("cadence_code", ""),
        },
        "variants": variant_choices(product, subscription),
        "plan_errors": {},
        "address": dict(subscription.get("shipping_address") or {}),
        "errors": {},
        "countries": COUNTRIES,
    }


@get(
    "/account/subscriptions/{subscription_id:uuid}",
    name="account-subscription",
    include_in_schema=False,
    cache=False,
)
async def subscription_page(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, subscription_id: uuid.UUID
) -> Response[Any]:
    if not visitor.signed_in:
        return _signin(request, f"/account/subscriptions/{subscription_id}")
    return await _detail_page(request, api, subscription_id)


@post(
    "/account/subscriptions/{subscription_id:uuid}/cancel",
    name="subscription-cancel",
    include_in_schema=False,
)
async def subscription_cancel(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, subscription_id: uuid.UUID
) -> Response[Any]:
    page = f"/account/subscriptions/{subscription_id}"
    if not visitor.signed_in:
        return _signin(request, page)
    try:
        await api.post("checkout", f"/api/subscriptions/{subscription_id}/cancel", json={})
    except ApiProblem as problem:
        if problem.status in (400, 404):
            return _not_found(request)
        if problem.status == 401:
            raise
        subscription = await _subscription(api, subscription_id)
        if subscription is None:
            return _not_found(request)
        context = _detail_context(subscription, subscription_message(problem))
        context.update(_poll_context(request, subscription, 0))
        return render(
            request, "subscriptions/detail.html", context, status=_problem_status(problem)
        )
    return redirect(request, page, flash="subscription-cancelling")


#: What a shopper may ask of an active subscription, and the flash that says it was asked.
PAUSE_ACTIONS = {
    "pause": "subscription-pausing",
    "skip-next": "subscription-skipping",
    "resume": "subscription-resuming",
}


@post(
    [
        "/account/subscriptions/{subscription_id:uuid}/pause",
        "/account/subscriptions/{subscription_id:uuid}/skip-next",
        "/account/subscriptions/{subscription_id:uuid}/resume",
    ],
    name="subscription-pause",
    include_in_schema=False,
)
async def subscription_pause(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, subscription_id: uuid.UUID
) -> Response[Any]:
    """Pause, skip the next delivery or resume: asked of Stripe through checkout; the page
    shows the change once Stripe's webhook has confirmed it."""
    page = f"/account/subscriptions/{subscription_id}"
    if not visitor.signed_in:
        return _signin(request, page)
    action = request.url.path.rsplit("/", 1)[-1]
    try:
        await api.post("checkout", f"/api/subscriptions/{subscription_id}/{action}", json={})
    except ApiProblem as problem:
        if problem.status in (400, 404):
            return _not_found(request)
        if problem.status == 401:
            raise
        subscription = await _subscription(api, subscription_id)
        if subscription is None:
            return _not_found(request)
        notice = (
            "Only an active subscription that is not ending can be paused, skipped or resumed."
            if problem.kind == "subscription-not-active"
            else subscription_message(problem)
        )
        context = _detail_context(subscription, notice)
        context.update(_poll_context(request, subscription, 0))
        return render(
            request, "subscriptions/detail.html", context, status=_problem_status(problem)
        )
    return redirect(request, page, flash=PAUSE_ACTIONS[action])


@post(
    "/account/subscriptions/{subscription_id:uuid}/card",
    name="subscription-card",
    include_in_schema=False,
)
async def subscription_card(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, subscription_id: uuid.UUID
) -> Response[Any]:
    """Update the card: a fresh Stripe customer portal session (it expires within minutes, so
    it is made on the click), which returns to the subscription's page."""
    page = f"/account/subscriptions/{subscription_id}"
    if not visitor.signed_in:
        return _signin(request, page)
    try:
        opened = await api.post(
            "checkout", f"/api/subscriptions/{subscription_id}/payment-method-session", json={}
        )
    except ApiProblem as problem:
        if problem.status in (400, 404):
            return _not_found(request)
        if problem.status == 401:
            raise
        subscription = await _subscription(api, subscription_id)
        if subscription is None:
            return _not_found(request)
        notice = (
            "This subscription has ended: it has no card to update."
            if problem.kind == "subscription-not-active"
            else subscription_message(problem)
        )
        context = _detail_context(subscription, notice)
        context.update(_poll_context(request, subscription, 0))
        return render(
            request, "subscriptions/detail.html", context, status=_problem_status(problem)
        )
    url = str(opened.get("url") or "")
    if not url.startswith(("https://", "http://")):
        return error_response(request, 503)
    # The card form is the provider's (Stripe's portal): card data never reaches the shop.
    return Redirect(url, status_code=303)


def _change_message(problem: ApiProblem) -> str:
    match problem.kind:
        case "subscription-not-active":
            return "Only an active subscription that is not ending can be changed."
        case "subscription-paused":
            return "Resume your deliveries before changing how often they come."
        case "change-refused":
            return "The payment provider refused this change. Nothing was changed."
        case "variant-unavailable":
            return "That choice of this coffee is not sold now: nothing was changed."
        case "payment-provider-unavailable" | "payment-provider-error":
            return (
                "We could not reach the payment provider, so nothing was changed. "
                "Try again in a moment."
            )
    return subscription_message(problem)


async def _detail_page(
    request: Request[Any, Any, Any],
    api: Api,
    subscription_id: uuid.UUID,
    notice: str = "",
    status: int = 200,
    **context: Any,
) -> Response[Any]:
    """The subscription's page; after a refused form, saying why (what was typed kept)."""
    subscription = await _subscription(api, subscription_id)
    if subscription is None:
        return _not_found(request)
    product = None
    if subscription.get("changeable"):
        # Its variants, as sold now, are what the change form offers.
        product = await _product(api, str((subscription.get("product") or {}).get("slug") or ""))
    page = _detail_context(subscription, notice, product)
    page.update(_poll_context(request, subscription, 0))
    page.update(context)
    return render(request, "subscriptions/detail.html", page, status=status)


@post(
    "/account/subscriptions/{subscription_id:uuid}/plan",
    name="subscription-plan",
    include_in_schema=False,
)
async def subscription_plan(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, subscription_id: uuid.UUID
) -> Response[Any]:
    """Bags per delivery, cadence and variant: asked of Stripe through checkout; the page shows
    the change once Stripe's webhook has confirmed it."""
    page = f"/account/subscriptions/{subscription_id}"
    if not visitor.signed_in:
        return _signin(request, page)
    form = await Form.of(request)
    quantity = form.integer("quantity", None, 1, MAX_QUANTITY)
    cadence = form.text("cadence", 20)
    variant_id, errors = _form_variant(form)
    if quantity is None:
        errors["quantity"] = f"Choose 1 to {MAX_QUANTITY} bags per delivery."
    if cadence and cadence not in CADENCES:
        errors["cadence"] = "Choose how often we send it."
    typed = {"quantity": quantity, "cadence": cadence if cadence in CADENCES else ""}
    if errors:
        return await _detail_page(
            request,
            api,
            subscription_id,
            "Some fields need another look.",
            400,
            plan=typed,
            plan_errors=errors,
        )
    body: dict[str, Any] = {"quantity": quantity}
    if cadence:
        body["interval"], body["interval_count"] = CADENCES[cadence]
    if variant_id is not None:
        # The current one asks nothing of Stripe (checkout compares).
        body["variant_id"] = variant_id
    try:
        await api.patch("checkout", f"/api/subscriptions/{subscription_id}", json=body)
    except ApiProblem as problem:
        if problem.status == 404:
            return _not_found(request)
        if problem.status == 401:
            raise
        return await _detail_page(
            request,
            api,
            subscription_id,
            _change_message(problem),
            _problem_status(problem),
            plan=typed,
        )
    return redirect(request, page, flash="subscription-changing")


@post(
    "/account/subscriptions/{subscription_id:uuid}/address",
    name="subscription-address",
    include_in_schema=False,
)
async def subscription_address(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, subscription_id: uuid.UUID
) -> Response[Any]:
    """Where the next deliveries go (checkout keeps it: the change holds at once)."""
    page = f"/account/subscriptions/{subscription_id}"
    if not visitor.signed_in:
        return _signin(request, page)
    form = await Form.of(request)
    typed, errors = read_address(form)
    if errors:
        return await _detail_page(
            request,
            api,
            subscription_id,
            "Some fields need another look.",
            400,
            address=typed,
            errors=errors,
        )
    try:
        await api.put(
            "checkout",
            f"/api/subscriptions/{subscription_id}/shipping-address",
            json={k: v for k, v in typed.items() if v},
        )
    except ApiProblem as problem:
        if problem.status == 404:
            return _not_found(request)
        if problem.status == 401:
            raise
        field_errors = {
            key: f"{FIELD_LABELS.get(key, key.replace('_', ' ').capitalize())}: {message}"
            for key, message in problem.field_errors().items()
        }
        notice = (
            "This subscription has ended: nothing more is delivered."
            if problem.kind == "subscription-not-active"
            else subscription_message(problem)
        )
        return await _detail_page(
            request,
            api,
            subscription_id,
            notice,
            _problem_status(problem),
            address=typed,
            errors=field_errors,
        )
    return redirect(request, page, flash="subscription-address-changed")


# --- after Stripe's page: confirming ---------------------------------------------------------


def _poll_context(
    request: Request[Any, Any, Any], subscription: Mapping[str, Any], n: int
) -> dict[str, Any]:
    settings = request.app.state.storefront_settings
    waiting = subscription.get("status") == "incomplete"
    polling = waiting and n * settings.order_poll_seconds < settings.order_poll_limit_seconds
    return {
        "polling": polling,
        "gave_up": waiting and not polling,
        "poll_url": f"/account/subscriptions/{subscription.get('id')}/status?n={n + 1}",
        "poll_seconds": settings.order_poll_seconds,
    }


@get(
    "/account/subscriptions/{subscription_id:uuid}/status",
    name="subscription-status",
    include_in_schema=False,
    cache=False,
)
async def subscription_status(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    *,
    subscription_id: uuid.UUID,
    n: Annotated[int, Parameter(ge=0, le=10_000)] = 0,
) -> Response[Any]:
    if not visitor.signed_in:
        return _signin(request, f"/account/subscriptions/{subscription_id}")
    subscription = await _subscription(api, subscription_id)
    if subscription is None:
        return _not_found(request)
    context = {"subscription": subscription, **_poll_context(request, subscription, n)}
    return render(request, "subscriptions/status.html", context)


ROUTES = [
    subscription_new,
    subscribe,
    subscriptions_page,
    subscription_page,
    subscription_cancel,
    subscription_pause,
    subscription_card,
    subscription_plan,
    subscription_address,
    subscription_status,
]
