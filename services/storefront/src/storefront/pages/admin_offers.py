"""Staff pages for discount codes and shipping rates (admin role only), over checkout's admin
API (``/api/checkout/admin/discount-codes`` and ``.../shipping-rates``) with the staff member's
own token, as the other staff pages call their services. A form checks what it can read (money,
numbers, dates); checkout decides the rest, and its problem is shown on the form.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

from litestar import Request, Response, get, post

from storefront.api import Api, ApiProblem, Visitor
from storefront.errors import error_response
from storefront.forms import Form
from storefront.messages import friendly
from storefront.pages.admin import staff_only
from storefront.web import minor_to_text, parse_money, redirect, render

CODES = "/api/checkout/admin/discount-codes"
RATES = "/api/checkout/admin/shipping-rates"
#: The products a code's form offers (catalog's largest page); a code's own products beyond
#: them stay on it, listed by id.
PRODUCT_CHOICES = 100
#: ``datetime-local`` as the form shows it (no zone: the form says the times are UTC).
LOCAL_TIME = "%Y-%m-%dT%H:%M"


async def _optional(call: Any) -> Any:
    try:
        return await call
    except ApiProblem:
        return None


def _problem(problem: ApiProblem, what: str) -> tuple[str, dict[str, str]]:
    """The sentence for the form and the fields at fault (checkout names them by key)."""
    return friendly(problem, what), problem.field_errors()


# --- discount codes -------------------------------------------------------------------------


def _remaining(code: dict[str, Any]) -> int | None:
    limit = code.get("max_uses")
    if limit is None:
        return None
    return max(0, int(limit) - int(code.get("uses", 0)) - int(code.get("holds", 0)))


def _local(value: str | None) -> str:
    """An ISO time from checkout as the form's UTC ``datetime-local`` value."""
    if not value:
        return ""
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return ""
    return parsed.astimezone(dt.UTC).strftime(LOCAL_TIME)


def _code_values(code: dict[str, Any]) -> dict[str, Any]:
    """A code from checkout as its form shows it."""
    kind = "amount" if code.get("amount_off") is not None else "percent"
    off = code.get("amount_off") if kind == "amount" else code.get("percent_off")
    return {
        **code,
        "kind": kind,
        "off_text": (minor_to_text(off) if kind == "amount" else str(off or "")),
        "min_subtotal_text": minor_to_text(code.get("min_subtotal"))
        if code.get("min_subtotal")
        else "",
        "starts_at_text": _local(code.get("starts_at")),
        "ends_at_text": _local(code.get("ends_at")),
        "product_ids": [str(p) for p in code.get("product_ids") or []],
        "category_ids": [str(c) for c in code.get("category_ids") or []],
        "remaining": _remaining(code),
    }


def _read_code(form: Form, creating: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The API body, the values to show again, and the fields that cannot be read."""
    errors: dict[str, str] = {}
    shown: dict[str, Any] = {
        "code": form.text("code", 40).upper(),
        "description": form.text("description", 200),
        "kind": "amount" if form.text("kind", 10) == "amount" else "percent",
        "off_text": form.text("off", 20),
        "min_subtotal_text": form.text("min_subtotal", 20),
        "starts_at_text": form.text("starts_at", 20),
        "ends_at_text": form.text("ends_at", 20),
        "max_uses": form.text("max_uses", 10),
        "max_uses_per_customer": form.text("max_uses_per_customer", 10),
        "first_order_only": form.flag("first_order_only"),
        "active": form.flag("active"),
        "product_ids": _ids(form, "product_ids", 500),
        "category_ids": _ids(form, "category_ids", 100),
    }
    body: dict[str, Any] = {
        "description": shown["description"],
        "first_order_only": shown["first_order_only"],
        "active": shown["active"],
        "product_ids": shown["product_ids"],
        "category_ids": shown["category_ids"],
    }
    if creating:
        if not shown["code"]:
            errors["code"] = "Give the code shoppers type, like WELCOME10."
        body["code"] = shown["code"]
    _read_off(form, shown, body, errors)
    _read_limits(form, shown, body, errors, creating=creating)
    return body, shown, errors


def _read_off(
    form: Form, shown: dict[str, Any], body: dict[str, Any], errors: dict[str, str]
) -> None:
    if shown["kind"] == "percent":
        percent = form.integer("off", None, 1, 100)
        if percent is None:
            errors["percent_off"] = "Give a whole percentage from 1 to 100."
        body["percent_off"] = percent
    else:
        amount = parse_money(shown["off_text"])
        if not amount:
            errors["amount_off"] = "Give the amount it takes off, like 5.00."
        body["amount_off"] = amount


def _read_limits(
    form: Form,
    shown: dict[str, Any],
    body: dict[str, Any],
    errors: dict[str, str],
    *,
    creating: bool,
) -> None:
    """A date or limit left empty is none; on an edit, emptying one removes it (null)."""
    minimum = parse_money(shown["min_subtotal_text"] or "0")
    if minimum is None:
        errors["min_subtotal"] = "Give a minimum like 30.00, or leave it empty."
    body["min_subtotal"] = minimum
    for key in ("starts_at", "ends_at"):
        typed = shown[f"{key}_text"]
        if typed:
            try:
                at = dt.datetime.fromisoformat(typed)
            except ValueError:
                errors[key] = "Give a date and time (UTC)."
            else:
                body[key] = (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).isoformat()
        elif not creating:
            body[key] = None
    for key, high in (("max_uses", 10_000_000), ("max_uses_per_customer", 1000)):
        if shown[key]:
            limit = form.integer(key, None, 1, high)
            if limit is None:
                errors[key] = f"Give a whole number from 1 to {high:,}, or leave it empty."
            body[key] = limit
        elif not creating:
            body[key] = None


def _ids(form: Form, name: str, most: int) -> list[str]:
    getall = getattr(form.data, "getall", None)
    raw = getall(name, []) if getall else [form.data.get(name)]
    found: list[str] = []
    for value in raw[:most]:
        try:
            found.append(str(uuid.UUID(str(value))))
        except ValueError:
            continue
    return sorted(set(found))


async def _code_choices(api: Api) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    products, categories = await asyncio.gather(
        _optional(api.get("catalog", "/api/admin/products", params={"page_size": PRODUCT_CHOICES})),
        _optional(api.get("catalog", "/api/admin/categories")),
    )
    return list((products or {}).get("items", [])), list((categories or {}).get("items", []))


async def _code_form(
    request: Request[Any, Any, Any],
    api: Api,
    code: dict[str, Any],
    *,
    creating: bool,
    errors: dict[str, str] | None = None,
    error: str = "",
    status: int = 200,
) -> Response[Any]:
    products, categories = await _code_choices(api)
    listed = {str(p["id"]) for p in products}
    # A code's products the first page does not offer stay chosen (shown by id).
    others = [p for p in code.get("product_ids", []) if p not in listed]
    return render(
        request,
        "admin/discount_code_form.html",
        {
            "code": code,
            "products": products,
            "other_products": others,
            "categories": categories,
            "errors": errors or {},
            "error": error,
            "creating": creating,
            "title": "New discount code" if creating else code.get("code", "Discount code"),
            "section": "discounts",
        },
        status=status,
    )


@get("/admin/discount-codes", name="admin-discount-codes", include_in_schema=False, cache=False)
async def discount_codes(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    listing = await api.get("checkout", f"{CODES}/")
    return render(
        request,
        "admin/discount_codes.html",
        {
            "codes": [_code_values(c) for c in listing.get("items", [])],
            "title": "Discount codes",
            "section": "discounts",
        },
    )


@get(
    "/admin/discount-codes/new",
    name="admin-discount-code-new",
    include_in_schema=False,
    cache=False,
)
async def discount_code_new(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    fresh = {"kind": "percent", "active": True, "product_ids": [], "category_ids": []}
    return await _code_form(request, api, fresh, creating=True)


@post("/admin/discount-codes", name="admin-discount-code-create", include_in_schema=False)
async def discount_code_create(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    body, shown, errors = _read_code(await Form.of(request), creating=True)
    error = ""
    if not errors:
        try:
            created = await api.post("checkout", f"{CODES}/", json=body)
        except ApiProblem as problem:
            error, errors = _problem(problem, "that code")
        else:
            return redirect(
                request, f"/admin/discount-codes/{created['id']}", flash="discount-code-saved"
            )
    return await _code_form(
        request,
        api,
        shown,
        creating=True,
        errors=errors,
        error=error or "Some fields need another look.",
        status=400,
    )


@get(
    "/admin/discount-codes/{code_id:uuid}",
    name="admin-discount-code",
    include_in_schema=False,
    cache=False,
)
async def discount_code_edit(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, code_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    code = await api.get("checkout", f"{CODES}/{code_id}")
    return await _code_form(request, api, _code_values(code), creating=False)


@post(
    "/admin/discount-codes/{code_id:uuid}",
    name="admin-discount-code-update",
    include_in_schema=False,
)
async def discount_code_update(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, code_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    body, shown, errors = _read_code(await Form.of(request), creating=False)
    error = ""
    if not errors:
        try:
            await api.patch("checkout", f"{CODES}/{code_id}", json=body)
        except ApiProblem as problem:
            error, errors = _problem(problem, "that code")
        else:
            return redirect(
                request, f"/admin/discount-codes/{code_id}", flash="discount-code-saved"
            )
    code = await api.get("checkout", f"{CODES}/{code_id}")
    return await _code_form(
        request,
        api,
        {**_code_values(code), **shown, "code": code["code"]},
        creating=False,
        errors=errors,
        error=error or "Some fields need another look.",
        status=400,
    )


@post(
    "/admin/discount-codes/{code_id:uuid}/deactivate",
    name="admin-discount-code-deactivate",
    include_in_schema=False,
)
async def discount_code_deactivate(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, code_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    await api.patch("checkout", f"{CODES}/{code_id}", json={"active": False})
    return redirect(request, "/admin/discount-codes", flash="discount-code-deactivated")


# --- shipping rates -------------------------------------------------------------------------


def _rate_values(rate: dict[str, Any]) -> dict[str, Any]:
    return {
        **rate,
        "price_text": minor_to_text(rate.get("price")),
        "free_over_text": minor_to_text(rate.get("free_over")) if rate.get("free_over") else "",
        "countries_text": ", ".join(rate.get("countries") or []),
    }


def _read_rate(form: Form, creating: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    shown: dict[str, Any] = {
        "code": form.text("code", 40).lower(),
        "name": form.text("name", 100),
        "price_text": form.text("price", 20),
        "free_over_text": form.text("free_over", 20),
        "countries_text": form.text("countries", 1000),
        "min_days": form.text("min_days", 4),
        "max_days": form.text("max_days", 4),
        "position": form.text("position", 5),
        "active": form.flag("active"),
    }
    countries = sorted(
        {
            c.strip().upper()
            for c in shown["countries_text"].replace(";", ",").split(",")
            if c.strip()
        }
    )
    body: dict[str, Any] = {
        "name": shown["name"],
        "countries": countries,
        "active": shown["active"],
    }
    if creating:
        if not shown["code"]:
            errors["code"] = "Give the rate a short code, like express."
        body["code"] = shown["code"]
    if not shown["name"]:
        errors["name"] = "Give the name shoppers see, like Express."
    price = parse_money(shown["price_text"])
    if price is None:
        errors["price"] = "Give a price like 6.00 (0 ships free)."
    body["price"] = price
    if shown["free_over_text"]:
        free_over = parse_money(shown["free_over_text"])
        if not free_over:
            errors["free_over"] = "Give a subtotal like 50.00, or leave it empty."
        body["free_over"] = free_over
    elif not creating:
        body["free_over"] = 0  # checkout's way to say "never free" on a change
    if any(len(c) != 2 or not c.isalpha() for c in countries):
        errors["countries"] = "Give two-letter country codes (US, GB...) separated by commas."
    _read_days(form, shown, body, errors)
    return body, shown, errors


def _read_days(
    form: Form, shown: dict[str, Any], body: dict[str, Any], errors: dict[str, str]
) -> None:
    for key in ("min_days", "max_days"):
        if shown[key]:
            days = form.integer(key, None, 0, 365)
            if days is None:
                errors[key] = "Give a number of days from 0 to 365, or leave it empty."
            body[key] = days
    if shown["position"]:
        position = form.integer("position", None, 0, 1000)
        if position is None:
            errors["position"] = "Give a position from 0 to 1000."
        body["position"] = position


async def _rates_page(
    request: Request[Any, Any, Any],
    api: Api,
    *,
    new: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    error: str = "",
    status: int = 200,
) -> Response[Any]:
    rates = await api.get("checkout", f"{RATES}/")
    return render(
        request,
        "admin/shipping_rates.html",
        {
            "rates": [_rate_values(r) for r in rates],
            "new": new or {"active": True},
            "errors": errors or {},
            "error": error,
            "title": "Shipping rates",
            "section": "shipping",
        },
        status=status,
    )


@get("/admin/shipping-rates", name="admin-shipping-rates", include_in_schema=False, cache=False)
async def shipping_rates(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    return await _rates_page(request, api)


@post("/admin/shipping-rates", name="admin-shipping-rate-create", include_in_schema=False)
async def shipping_rate_create(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    body, shown, errors = _read_rate(await Form.of(request), creating=True)
    error = ""
    if not errors:
        try:
            await api.post("checkout", f"{RATES}/", json=body)
        except ApiProblem as problem:
            error, errors = _problem(problem, "that rate")
        else:
            return redirect(request, "/admin/shipping-rates", flash="shipping-rate-saved")
    return await _rates_page(
        request,
        api,
        new=shown,
        errors=errors,
        error=error or "Some fields need another look.",
        status=400,
    )


async def _rate(api: Api, rate_id: uuid.UUID) -> dict[str, Any] | None:
    # Checkout lists every rate (at most 100); it has no route for one.
    rates = await api.get("checkout", f"{RATES}/")
    return next((r for r in rates if r.get("id") == str(rate_id)), None)


def _rate_form(
    request: Request[Any, Any, Any],
    rate: dict[str, Any],
    *,
    errors: dict[str, str] | None = None,
    error: str = "",
    status: int = 200,
) -> Response[Any]:
    return render(
        request,
        "admin/shipping_rate.html",
        {
            "rate": rate,
            "errors": errors or {},
            "error": error,
            "title": rate.get("name") or "Shipping rate",
            "section": "shipping",
        },
        status=status,
    )


@get(
    "/admin/shipping-rates/{rate_id:uuid}",
    name="admin-shipping-rate",
    include_in_schema=False,
    cache=False,
)
async def shipping_rate_edit(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, rate_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    rate = await _rate(api, rate_id)
    if rate is None:
        return error_response(request, 404, "Not found", "There is no such shipping rate.")
    return _rate_form(request, _rate_values(rate))


@post(
    "/admin/shipping-rates/{rate_id:uuid}",
    name="admin-shipping-rate-update",
    include_in_schema=False,
)
async def shipping_rate_update(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, rate_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    body, shown, errors = _read_rate(await Form.of(request), creating=False)
    error = ""
    if not errors:
        try:
            await api.patch("checkout", f"{RATES}/{rate_id}", json=body)
        except ApiProblem as problem:
            error, errors = _problem(problem, "that rate")
        else:
            return redirect(request, "/admin/shipping-rates", flash="shipping-rate-saved")
    rate = await _rate(api, rate_id) or {"id": str(rate_id)}
    return _rate_form(
        request,
        {**_rate_values(rate), **shown, "code": rate.get("code", "")},
        errors=errors,
        error=error or "Some fields need another look.",
        status=400,
    )


@post(
    "/admin/shipping-rates/{rate_id:uuid}/deactivate",
    name="admin-shipping-rate-deactivate",
    include_in_schema=False,
)
async def shipping_rate_deactivate(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, rate_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    await api.patch("checkout", f"{RATES}/{rate_id}", json={"active": False})
    return redirect(request, "/admin/shipping-rates", flash="shipping-rate-deactivated")


ROUTES = [
    discount_codes,
    discount_code_new,
    discount_code_create,
    discount_code_edit,
    discount_code_update,
    discount_code_deactivate,
    shipping_rates,
    shipping_rate_create,
    shipping_rate_edit,
    shipping_rate_update,
    shipping_rate_deactivate,
]
