"""Checkout and the order page.

``/checkout`` shows the cart re-priced by checkout (``GET /api/checkout/quote``), asks a guest for
an email, takes a shipping address (or a saved one), and "Pay" starts the checkout
(``POST /api/checkout/session``) and sends the browser to the payment page it answers.

``/order/{id}`` reads the orders service. Coming back from the payment page proves nothing: until
orders says the order is paid (which only the verified webhook makes happen) the page says it is
confirming the payment and asks again every few seconds (htmx). While orders does not show the
order yet, checkout's own record of it says whether the payment is still open, failed or expired.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from ember_shared.countries import country_name
from litestar import Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Redirect

from storefront.api import Api, ApiProblem, Visitor
from storefront.errors import error_response
from storefront.forms import Form
from storefront.messages import friendly
from storefront.pages.cart import load_cart
from storefront.web import render

SessionId = Annotated[str | None, Parameter(max_length=255, pattern=r"^[A-Za-z0-9_]+$")]
#: The secret of the order link mailed to a guest (orders keeps only its hash).
OrderToken = Annotated[
    str | None, Parameter(query="token", max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
]
#: Where the address forms offer to ship (a select; checkout and identity take any ISO code).
COUNTRIES: dict[str, str] = {
    code: country_name(code)
    for code in (
        *("US", "CA", "GB", "IE", "DE", "FR", "NL", "BE"),
        *("ES", "IT", "SE", "DK", "NO", "AU", "NZ", "JP"),
    )
}
ADDRESS_FIELDS: dict[str, tuple[int, bool]] = {
    # name: (max length, required)
    "name": (100, True),
    "line1": (200, True),
    "line2": (200, False),
    "city": (100, True),
    "state": (100, False),
    "postal_code": (20, True),
    "country": (2, True),
    "phone": (32, False),
}
FIELD_LABELS = {
    "name": "Full name",
    "line1": "Address",
    "city": "City",
    "postal_code": "Postcode / ZIP",
    "country": "Country",
    "email": "Email",
}


def read_address(form: Form) -> tuple[dict[str, str], dict[str, str]]:
    """The address fields of ``form`` and the messages of those that are missing or wrong."""
    address = {name: form.text(name, size) for name, (size, _) in ADDRESS_FIELDS.items()}
    address["country"] = address["country"].upper()
    errors: dict[str, str] = {}
    for name, (_, required) in ADDRESS_FIELDS.items():
        if required and not address[name]:
            errors[name] = f"{FIELD_LABELS.get(name, name)} is needed."
    if address["country"] and (len(address["country"]) != 2 or not address["country"].isalpha()):
        errors["country"] = "Choose a country."
    phone = address["phone"]
    if phone and any(ch not in "0123456789+()./ -" for ch in phone):
        errors["phone"] = "A phone number has digits, spaces and + ( ) - only."
    return address, errors


def _valid_email(email: str) -> bool:
    local, _, domain = email.partition("@")
    return bool(local) and "." in domain and " " not in email and len(email) <= 254


#: The order id of this browser's last checkout, so that coming back from a declined card (or
#: a "Back" on Stripe's page) finds the email and address already filled in. Only the id: the
#: details come from checkout, which shows them only to the same cart (or account).
LAST_CHECKOUT_COOKIE = "ember_last_checkout"


async def _last_checkout(api: Api, request: Request[Any, Any, Any]) -> dict[str, Any] | None:
    raw = request.cookies.get(LAST_CHECKOUT_COOKIE, "")
    try:
        order_id = uuid.UUID(raw[:36])
    except ValueError:
        return None
    try:
        found: dict[str, Any] = await api.get("checkout", f"/api/checkout/session/{order_id}")
    except ApiProblem:
        return None
    return found


async def _checkout_context(
    api: Api,
    visitor: Visitor,
    request: Request[Any, Any, Any] | None = None,
    *,
    discount_code: str = "",
    shipping_rate: str = "",
    country: str = "",
) -> dict[str, Any]:
    cart = await load_cart(api)
    addresses: list[dict[str, Any]] = []
    if visitor.signed_in:
        try:
            addresses = list((await api.get("identity", "/api/user/addresses")).get("items", []))
        except ApiProblem:
            addresses = []
    default = next(
        (a for a in addresses if a.get("is_default")), addresses[0] if addresses else None
    )
    address: dict[str, Any] = {"country": "US"}
    email = visitor.email
    earlier = await _last_checkout(api, request) if request and cart.get("lines") else None
    if earlier is not None and earlier.get("status") != "paid":
        if not default:
            given = {k: v for k, v in (earlier.get("shipping_address") or {}).items() if v}
            address |= given
        email = email or str(earlier.get("email") or "")
    # The shipping choices and their prices are those of where it ships.
    country = country or str((default or address).get("country") or "US")
    quote: dict[str, Any] | None = None
    problem: ApiProblem | None = None
    code_notice = ""
    options: list[dict[str, Any]] = []
    if cart.get("lines"):
        quote, problem, code_notice = await _quote(api, discount_code, shipping_rate, country)
        if quote is not None:
            options = await _shipping_options(api, country, str(quote.get("discount_code") or ""))
    return {
        "cart": cart,
        "quote": quote,
        "addresses": addresses,
        "address_choice": f"saved:{default['id']}" if default else "new",
        "address": address,
        "email": email,
        "errors": {},
        "notice": friendly(problem) if problem else "",
        "discount_code": discount_code,
        "code_notice": code_notice,
        "shipping_options": options,
        "shipping_rate": (quote or {}).get("shipping_rate") or shipping_rate,
        "unavailable": _unavailable(problem),
        "countries": COUNTRIES,
        "title": "Checkout",
    }


async def _quote(
    api: Api, discount_code: str, shipping_rate: str, country: str
) -> tuple[dict[str, Any] | None, ApiProblem | None, str]:
    """The cart priced with the code and rate asked for; a refused code is said on its own
    (and the cart priced without it), a rate that does not ship there gives way to the first."""
    params = {"discount_code": discount_code, "shipping_rate": shipping_rate, "country": country}
    code_notice = ""
    for _ in range(3):
        try:
            found: dict[str, Any] = await api.get("checkout", "/api/checkout/quote", params=params)
        except ApiProblem as exc:
            if exc.kind.startswith("discount-code-") and params["discount_code"]:
                code_notice = friendly(exc)
                params["discount_code"] = ""
                continue
            if exc.kind == "shipping-rate-unavailable" and params["shipping_rate"]:
                params["shipping_rate"] = ""
                continue
            return None, exc, code_notice
        return found, None, code_notice
    return None, None, code_notice


async def _shipping_options(api: Api, country: str, discount_code: str) -> list[dict[str, Any]]:
    try:
        found = await api.get(
            "checkout",
            "/api/checkout/shipping-options",
            params={"country": country, "discount_code": discount_code},
        )
    except ApiProblem:
        return []
    return [o for o in found.get("options", []) if isinstance(o, dict)]


def _unavailable(problem: ApiProblem | None) -> list[dict[str, Any]]:
    if problem is None or problem.kind != "lines-unavailable":
        return []
    raw = problem.body.get("unavailable")
    return [line for line in raw if isinstance(line, dict)] if isinstance(raw, list) else []


@get("/checkout", name="checkout", include_in_schema=False, cache=False)
async def checkout_page(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[str]:
    return render(request, "checkout.html", await _checkout_context(api, visitor, request))


@post("/checkout", name="checkout-pay", include_in_schema=False)
async def checkout_pay(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    form = await Form.of(request)
    discount_code = form.text("discount_code", 40).strip().upper()
    shipping_rate = form.text("shipping_rate", 40)
    address, errors = read_address(form)
    context = await _checkout_context(
        api,
        visitor,
        discount_code=discount_code,
        shipping_rate=shipping_rate,
        country=address["country"] or "US",
    )
    choice = form.text("address_choice", 60) or "new"
    email = form.text("email", 254) if not visitor.signed_in else visitor.email
    expected_total = form.integer("expected_total", None, 0, 100_000_000)
    body: dict[str, Any] = {"expected_total": expected_total} | {
        key: value
        for key, value in (("discount_code", discount_code), ("shipping_rate", shipping_rate))
        if value
    }
    saved_id: uuid.UUID | None = None
    if choice.startswith("saved:") and visitor.signed_in:
        try:
            saved_id = uuid.UUID(choice.removeprefix("saved:"))
        except ValueError:
            saved_id = None
    if saved_id is not None:
        body["saved_address_id"] = str(saved_id)
        errors = {}
    else:
        body["shipping_address"] = {k: v for k, v in address.items() if v or k in ("name",)}
    if not visitor.signed_in:
        if not _valid_email(email):
            errors["email"] = "Give the email address your receipt should go to."
        body["email"] = email
    context.update(
        address=address | {"country": address["country"] or "US"},
        address_choice=choice if saved_id is not None else "new",
        email=email,
        errors=errors,
    )
    if form.text("action", 20) == "apply":
        # "Apply" prices the cart with the code and the shipping picked; nothing starts yet.
        return render(
            request, "checkout.html", context, status=422 if context["code_notice"] else 200
        )
    if errors:
        context["notice"] = "Some fields need another look."
        return render(request, "checkout.html", context, status=400)
    try:
        started = await api.post("checkout", "/api/checkout/session", json=body)
    except ApiProblem as problem:
        context["notice"] = friendly(problem)
        context["unavailable"] = _unavailable(problem)
        if problem.kind == "price-changed":
            context["quote"] = {
                key: problem.body.get(key)
                for key in (
                    "lines",
                    "subtotal",
                    "discount",
                    "discount_code",
                    "shipping",
                    "shipping_name",
                    "total",
                    "currency",
                    "tax_at_payment",
                )
            }
            context["price_changed"] = True
        context["errors"] = _field_errors(problem)
        return render(request, "checkout.html", context, status=_status(problem))
    url = str(started.get("checkout_url") or "")
    if not url.startswith(("https://", "http://")):
        return error_response(request, 503)
    # The payment page is the provider's (Stripe's): card data never reaches the shop.
    response = Redirect(url, status_code=303)
    order_id = str(started.get("order_id") or "")
    if order_id:
        response.set_cookie(
            LAST_CHECKOUT_COOKIE,
            order_id,
            max_age=86_400,
            path="/checkout",
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="lax",
        )
    return response


def _field_errors(problem: ApiProblem) -> dict[str, str]:
    errors = {}
    for key, message in problem.field_errors().items():
        errors[key] = f"{FIELD_LABELS.get(key, key.replace('_', ' ').capitalize())}: {message}"
    return errors


def _status(problem: ApiProblem) -> int:
    return problem.status if 400 <= problem.status < 600 else 400


# --- the order page ------------------------------------------------------------------------

#: What the order page says of an order's status before it is paid (any later one: the order).
ORDER_STATES = {
    "pending_payment": "confirming",
    "payment_failed": "failed",
    "cancelled": "cancelled",
}
#: ... and of a checkout's, while orders has no order for it.
CHECKOUT_STATES = {
    "payment_pending": "confirming",
    "payment_failed": "failed",
    "expired": "expired",
}


async def order_state(
    api: Api, order_id: uuid.UUID, session_id: str | None, token: str | None = None
) -> dict[str, Any] | None:
    """What the shopper may know of ``order_id`` now; None when it is not theirs (or not at all).

    ``state``: ``paid`` (or any later status: the order), ``confirming`` (paid at the provider
    perhaps, not confirmed by its webhook yet), ``open`` (not paid yet), ``failed``,
    ``expired``, ``cancelled``.
    """
    # Stripe's session id (the success redirect, for a short while) or the mailed link's token.
    params = {"session_id": session_id, "token": token}
    try:
        order = await api.get("orders", f"/api/orders/{order_id}", params=params)
    except ApiProblem as problem:
        if problem.status not in (400, 404):
            raise
        order = None
    if order is not None:
        # Any status past payment (paid, shipped, refunded...) is shown as the order.
        state = ORDER_STATES.get(str(order.get("status")), "paid")
        return {"state": state, "order": order, "tracking": await _tracking(api, order, params)}
    try:
        checkout = await api.get(
            "checkout", f"/api/checkout/session/{order_id}", params={"session_id": session_id}
        )
    except ApiProblem as problem:
        if problem.status in (400, 404):
            return None
        raise
    status = checkout.get("status")
    if status in ("paid", "partially_refunded", "refunded"):
        # Checkout records "paid" only from Stripe's verified webhook, so it may be shown: orders
        # shows a guest the order only with Stripe's session id, which the emailed link lacks.
        return {"state": "paid", "order": _order_from_checkout(checkout), "checkout": checkout}
    # Back from Stripe (its session id in hand) but no webhook yet: the payment is confirming.
    state = "confirming" if status == "open" and session_id else CHECKOUT_STATES.get(status, "open")
    return {"state": state, "checkout": checkout, "order": None}


async def _tracking(
    api: Api, order: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any] | None:
    """The carrier's scans of a shipped order (newest first), or None before it ships. The page
    still shows the order when tracking cannot be read just now."""
    if not (order.get("shipment") or {}).get("tracking_number"):
        return None
    try:
        tracking: dict[str, Any] = await api.get(
            "orders", f"/api/orders/{order['id']}/tracking", params=params
        )
    except ApiProblem:
        return None
    return tracking


def _order_from_checkout(checkout: dict[str, Any]) -> dict[str, Any]:
    """Checkout's record of a paid order, in the shape the order page shows."""
    return {
        "id": checkout["order_id"],
        "status": checkout["status"],
        "created_at": checkout.get("paid_at") or checkout.get("created_at"),
        "email": checkout.get("email", ""),
        "currency": checkout.get("currency", "USD"),
        "items": checkout.get("lines", []),
        "subtotal": checkout.get("subtotal", 0),
        "shipping_total": checkout.get("shipping", 0),
        "discount_total": checkout.get("discount", 0),
        "discount_code": checkout.get("discount_code", ""),
        "shipping_method": checkout.get("shipping_name", ""),
        "tax_total": checkout.get("tax", 0),
        "total": checkout.get("total", 0),
        "amount_refunded": checkout.get("amount_refunded", 0),
        "shipping_address": checkout.get("shipping_address") or {},
        "shipment": None,
    }


def _order_context(
    request: Request[Any, Any, Any],
    order_id: uuid.UUID,
    session_id: str | None,
    found: dict[str, Any],
    n: int,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    settings = request.app.state.storefront_settings
    waited = n * settings.order_poll_seconds
    polling = (
        found["state"] in ("confirming", "open") and waited < settings.order_poll_limit_seconds
    )
    keys = {k: v for k, v in (("session_id", session_id), ("token", token)) if v}
    poll_url = f"/order/{order_id}/status?{urlencode({'n': n + 1, **keys})}"
    return {
        **found,
        "order_id": str(order_id),
        "order_query": f"?{urlencode(keys)}" if keys else "",
        "short_id": str(order_id).split("-")[-1][-8:].upper(),
        "polling": polling,
        "poll_url": poll_url,
        "poll_seconds": settings.order_poll_seconds,
        "slow": found["state"] == "confirming" and waited >= 20,
        "gave_up": found["state"] in ("confirming", "open") and not polling,
        "title": "Your order",
    }


@get("/order/{order_id:uuid}", name="order", include_in_schema=False, cache=False)
async def order_page(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    *,
    order_id: uuid.UUID,
    session_id: SessionId = None,
    token: OrderToken = None,
) -> Response[str]:
    found = await order_state(api, order_id, session_id, token)
    if found is None:
        return error_response(
            request,
            404,
            "We could not find that order",
            "An order shows in the browser it was bought in, or to the account that placed it. "
            "Sign in to see your orders, or check the link in your confirmation email.",
        )
    context = _order_context(request, order_id, session_id, found, 0, token=token)
    return render(request, "order.html", context)


@get("/order/{order_id:uuid}/status", name="order-status", include_in_schema=False, cache=False)
async def order_status(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    *,
    order_id: uuid.UUID,
    session_id: SessionId = None,
    token: OrderToken = None,
    n: Annotated[int, Parameter(ge=0, le=10_000)] = 0,
) -> Response[str]:
    found = await order_state(api, order_id, session_id, token)
    if found is None:
        found = {"state": "confirming", "order": None}
    paid = found["state"] == "paid"
    context = _order_context(request, order_id, session_id, found, n, token=token)
    # The cart empties when the cart service handles the payment, which may come a moment
    # after orders did: the badge keeps asking until it does.
    context["settle_cart"] = paid
    return render(
        request,
        "partials/order_body.html",
        context,
        headers={"HX-Trigger": "cart-changed"} if paid else {},
    )


ROUTES = [checkout_page, checkout_pay, order_page, order_status]
