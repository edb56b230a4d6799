"""The shopper's account: profile, saved addresses, order history, password, sign out."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.params import Parameter

from storefront.api import Api, ApiProblem, Visitor
from storefront.forms import Form
from storefront.messages import friendly
from storefront.pages.checkout import COUNTRIES, read_address
from storefront.pages.subscriptions import returned_subscription
from storefront.web import redirect, render

Page = Annotated[int, Parameter(ge=1, le=10_000)]
MIN_PASSWORD = 10


def needs_sign_in(request: Request[Any, Any, Any], visitor: Visitor) -> Response[Any] | None:
    if visitor.signed_in:
        return None
    return redirect(request, f"/signin?next={request.url.path}", flash="signin-needed")


async def _account_context(api: Api) -> dict[str, Any]:
    profile, addresses, orders = await asyncio.gather(
        api.get("identity", "/api/user/profile"),
        api.get("identity", "/api/user/addresses"),
        api.get("orders", "/api/orders/my-orders", params={"page": 1, "page_size": 5}),
    )
    return {
        "profile": profile,
        "addresses": addresses.get("items", []),
        "orders": orders,
        "errors": {},
        "password_error": "",
        "profile_error": "",
        "title": "Your account",
    }


@get("/account", name="account", include_in_schema=False, cache=False)
async def account_page(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    if (gate := needs_sign_in(request, visitor)) is not None:
        return gate
    context = await _account_context(api)
    context["returned_subscription"] = returned_subscription(request)
    return render(request, "account/index.html", context)


@get("/account/orders", name="account-orders", include_in_schema=False, cache=False)
async def account_orders(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, page: Page = 1
) -> Response[Any]:
    if (gate := needs_sign_in(request, visitor)) is not None:
        return gate
    orders = await api.get(
        "orders", "/api/orders/my-orders", params={"page": page, "page_size": 20}
    )
    pages = max(1, -(-int(orders.get("total", 0)) // 20))
    return render(
        request,
        "account/orders.html",
        {"orders": orders, "page": page, "pages": pages, "title": "Your orders"},
    )


@post("/account/profile", name="account-profile", include_in_schema=False)
async def account_profile(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    if (gate := needs_sign_in(request, visitor)) is not None:
        return gate
    form = await Form.of(request)
    body = {"name": form.text("name", 120), "phone": form.text("phone", 32)}
    try:
        await api.put("identity", "/api/user/profile", json=body)
    except ApiProblem as problem:
        context = await _account_context(api)
        context["profile_error"] = friendly(problem)
        context["profile"] = {**context["profile"], **body}
        return render(request, "account/index.html", context, status=400)
    return redirect(request, "/account", flash="profile-saved")


@post("/account/password", name="account-password", include_in_schema=False)
async def account_password(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    if (gate := needs_sign_in(request, visitor)) is not None:
        return gate
    form = await Form.of(request)
    current = form.text("current_password", 1024)
    new = form.text("new_password", 1024)
    error = ""
    if not current:
        error = "Give your current password."
    elif len(new) < MIN_PASSWORD:
        error = f"Use at least {MIN_PASSWORD} characters for the new password."
    elif new != form.text("confirm_password", 1024):
        error = "The two new passwords are not the same."
    else:
        try:
            await api.put(
                "identity",
                "/api/user/change-password",
                json={"current_password": current, "new_password": new},
            )
        except ApiProblem as problem:
            error = friendly(problem)
    if error:
        context = await _account_context(api)
        context["password_error"] = error
        return render(request, "account/index.html", context, status=400)
    return redirect(request, "/account", flash="password-changed")


@post("/account/set-password", name="account-set-password", include_in_schema=False)
async def account_set_password(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    """A first password for an account made through Google (identity asks for a fresh
    sign-in instead of a current password)."""
    if (gate := needs_sign_in(request, visitor)) is not None:
        return gate
    form = await Form.of(request)
    new = form.text("new_password", 1024)
    error = ""
    if len(new) < MIN_PASSWORD:
        error = f"Use at least {MIN_PASSWORD} characters for the password."
    elif new != form.text("confirm_password", 1024):
        error = "The two passwords are not the same."
    else:
        try:
            await api.put("identity", "/api/user/set-password", json={"new_password": new})
        except ApiProblem as problem:
            error = friendly(problem)
    if error:
        context = await _account_context(api)
        context["password_error"] = error
        return render(request, "account/index.html", context, status=400)
    return redirect(request, "/account", flash="password-set")


def _address_form(
    address: dict[str, Any] | None, errors: dict[str, str], error: str = ""
) -> dict[str, Any]:
    return {
        "address": address or {"country": "US"},
        "errors": errors,
        "error": error,
        "countries": COUNTRIES,
        "title": "Edit address" if address and address.get("id") else "New address",
    }


@get("/account/addresses/new", name="address-new", include_in_schema=False, cache=False)
async def address_new(request: Request[Any, Any, Any], visitor: Visitor) -> Response[Any]:
    if (gate := needs_sign_in(request, visitor)) is not None:
        return gate
    return render(request, "account/address.html", _address_form(None, {}))


@get(
    "/account/addresses/{address_id:uuid}/edit",
    name="address-edit",
    include_in_schema=False,
    cache=False,
)
async def address_edit(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, address_id: uuid.UUID
) -> Response[Any]:
    if (gate := needs_sign_in(request, visitor)) is not None:
        return gate
    address = await api.get("identity", f"/api/user/addresses/{address_id}")
    return render(request, "account/address.html", _address_form(address, {}))


async def _save_address(
    request: Request[Any, Any, Any], api: Api, address_id: uuid.UUID | None
) -> Response[Any]:
    form = await Form.of(request)
    address, errors = read_address(form)
    address["is_default"] = form.flag("is_default")  # type: ignore[assignment]
    shown = {**address, "id": str(address_id) if address_id else None}
    if errors:
        return render(
            request,
            "account/address.html",
            _address_form(shown, errors, "Some fields need another look."),
            status=400,
        )
    body = {k: v for k, v in address.items() if v not in ("",)}
    try:
        if address_id is None:
            await api.post("identity", "/api/user/addresses", json=body)
        else:
            await api.put("identity", f"/api/user/addresses/{address_id}", json=body)
    except ApiProblem as problem:
        return render(
            request,
            "account/address.html",
            _address_form(shown, problem.field_errors(), friendly(problem, "that address")),
            status=problem.status if 400 <= problem.status < 500 else 400,
        )
    return redirect(request, "/account#addresses", flash="address-saved")


@post("/account/addresses", name="address-create", include_in_schema=False)
async def address_create(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    if (gate := needs_sign_in(request, visitor)) is not None:
        return gate
    return await _save_address(request, api, None)


@post("/account/addresses/{address_id:uuid}", name="address-update", include_in_schema=False)
async def address_update(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, address_id: uuid.UUID
) -> Response[Any]:
    if (gate := needs_sign_in(request, visitor)) is not None:
        return gate
    return await _save_address(request, api, address_id)


@post("/account/addresses/{address_id:uuid}/delete", name="address-delete", include_in_schema=False)
async def address_delete(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, address_id: uuid.UUID
) -> Response[Any]:
    if (gate := needs_sign_in(request, visitor)) is not None:
        return gate
    await api.delete("identity", f"/api/user/addresses/{address_id}")
    return redirect(request, "/account#addresses", flash="address-deleted")


ROUTES = [
    account_page,
    account_orders,
    account_profile,
    account_password,
    account_set_password,
    address_new,
    address_edit,
    address_create,
    address_update,
    address_delete,
]
