"""The cart: its page, adding from a product page, changing and removing lines (htmx), and the
header's item count (loaded by htmx after the page, so browsing never waits on the cart)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.params import Parameter

from storefront.api import Api, ApiProblem, Visitor
from storefront.forms import Form
from storefront.messages import friendly
from storefront.web import is_htmx, redirect, render

EMPTY_CART: dict[str, Any] = {
    "id": None,
    "lines": [],
    "line_count": 0,
    "item_count": 0,
    "subtotal": 0,
    "currency": "USD",
    "pricing_unavailable": False,
    "checkout_ready": False,
    "limits": {"max_quantity_per_line": 10, "max_lines": 50},
}
CHANGED = {"HX-Trigger": "cart-changed"}
#: The unit prices a shopper last saw in their cart, so a change since is flagged on the line.
#: Only a display hint (a tampered cookie changes a badge, never a price: checkout re-prices).
SEEN_COOKIE = "ember_seen_prices"
MAX_SEEN = 60


async def load_cart(api: Api) -> dict[str, Any]:
    """The shopper's cart, priced now (an empty one, without asking, when there can be none)."""
    await api.visitor()
    if not api.has_cart:
        return dict(EMPTY_CART)
    cart: dict[str, Any] = await api.get("cart", "/api/cart")
    return cart


def _quantities(cart: dict[str, Any]) -> range:
    limit = int((cart.get("limits") or {}).get("max_quantity_per_line") or 10)
    return range(1, max(1, limit) + 1)


def seen_prices(request: Request[Any, Any, Any]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for part in request.cookies.get(SEEN_COOKIE, "")[:4096].split("."):
        key, _, price = part.partition("-")
        if len(key) == 32 and price.isdigit() and len(price) <= 9:
            seen[key] = int(price)
    return seen


def line_key(line: dict[str, Any]) -> uuid.UUID:
    """What names a cart line: its variant (a cart without variants: its product)."""
    return uuid.UUID(str(line.get("variant_id") or line["product_id"]))


def remember_prices(response: Response[Any], cart: dict[str, Any]) -> None:
    """Keep the unit prices this cart shows, for the next view to compare with."""
    parts = [
        f"{line_key(line).hex}-{int(line['unit_price'])}"
        for line in cart.get("lines", [])[:MAX_SEEN]
        if line.get("unit_price") is not None
    ]
    response.set_cookie(
        SEEN_COOKIE,
        ".".join(parts),
        max_age=30 * 86_400,
        path="/",
        httponly=True,
        samesite="lax",
    )


def flag_price_changes(cart: dict[str, Any], seen: dict[str, int]) -> None:
    for line in cart.get("lines", []):
        before = seen.get(line_key(line).hex)
        price = line.get("unit_price")
        line["price_was"] = before if price is not None and before not in (None, price) else None


def cart_context(cart: dict[str, Any], notice: str = "") -> dict[str, Any]:
    lines = cart.get("lines", [])
    for line in lines:
        line.setdefault("price_was", None)
    return {
        "cart": cart,
        "lines": lines,
        "quantities": _quantities(cart),
        "has_problems": any(not line.get("purchasable", True) for line in lines),
        "notice": notice,
        "title": "Your cart",
    }


@get("/cart", name="cart", include_in_schema=False, cache=False)
async def cart_page(request: Request[Any, Any, Any], api: Api, visitor: Visitor) -> Response[str]:
    cart = await load_cart(api)
    flag_price_changes(cart, seen_prices(request))
    response = render(request, "cart.html", cart_context(cart))
    remember_prices(response, cart)
    return response


@get("/cart/count", name="cart-count", include_in_schema=False, cache=False)
async def cart_count(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    settle: Annotated[int, Parameter(ge=0, le=10)] = 0,
) -> Response[str]:
    """The header's cart badge. ``settle``: the order page just saw a payment, and the cart
    empties when the cart service handles the same event, maybe a moment later: while items
    still show, the badge asks again (up to ``settle`` more times, a second apart)."""
    count = 0
    if api.has_cart:
        try:
            count = int((await api.get("cart", "/api/cart")).get("item_count") or 0)
        except ApiProblem:
            count = 0
    again = settle - 1 if settle and count else 0
    return render(request, "partials/cart_count.html", {"count": count, "settle": again})


def _cart_fragment(
    request: Request[Any, Any, Any], cart: dict[str, Any], notice: str = ""
) -> Response[str]:
    flag_price_changes(cart, seen_prices(request))
    response = render(
        request, "partials/cart_body.html", cart_context(cart, notice), headers=CHANGED
    )
    remember_prices(response, cart)
    return response


@post("/cart/items", name="cart-add", include_in_schema=False)
async def cart_add(request: Request[Any, Any, Any], api: Api, visitor: Visitor) -> Response[Any]:
    form = await Form.of(request)
    product_id = form.uuid("product_id")
    variant_id = form.uuid("variant_id")
    quantity = form.integer("quantity", 1, 1, 99) or 1
    name = form.text("name", 160) or "that coffee"
    if product_id is None:
        return _add_result(request, ok=False, message="Choose a coffee to add.")
    try:
        wanted: dict[str, Any] = {"product_id": str(product_id), "quantity": quantity}
        if variant_id is not None:
            wanted["variant_id"] = str(variant_id)
        cart = await api.post("cart", "/api/cart/items", json=wanted)
    except ApiProblem as problem:
        return _add_result(request, ok=False, message=friendly(problem, name))
    response: Response[Any]
    if not is_htmx(request):
        response = redirect(request, "/cart", flash="added-to-cart")
    else:
        count = int(cart.get("item_count") or 0)
        response = render(
            request,
            "partials/added.html",
            {"ok": True, "name": name, "quantity": quantity, "count": count},
            headers=CHANGED,
        )
    remember_prices(response, cart)
    return response


def _add_result(request: Request[Any, Any, Any], *, ok: bool, message: str) -> Response[Any]:
    if is_htmx(request):
        return render(request, "partials/added.html", {"ok": ok, "message": message})
    return render(
        request,
        "cart.html",
        cart_context(dict(EMPTY_CART), message) | {"notice_kind": "error"},
        status=409,
    )


async def _change(
    request: Request[Any, Any, Any], api: Api, product_id: uuid.UUID, quantity: int
) -> Response[Any]:
    notice = ""
    try:
        if quantity <= 0:
            cart = await api.delete("cart", f"/api/cart/items/{product_id}")
        else:
            cart = await api.patch(
                "cart", f"/api/cart/items/{product_id}", json={"quantity": quantity}
            )
    except ApiProblem as problem:
        notice = friendly(problem)
        cart = await load_cart(api)
    if is_htmx(request):
        return _cart_fragment(request, cart, notice)
    if notice:
        return render(request, "cart.html", cart_context(cart, notice), status=409)
    return redirect(request, "/cart", flash="cart-updated")


@post("/cart/items/{product_id:uuid}", name="cart-set", include_in_schema=False)
async def cart_set(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, product_id: uuid.UUID
) -> Response[Any]:
    form = await Form.of(request)
    quantity = form.integer("quantity", None, 0, 99)
    if quantity is None:
        cart = await load_cart(api)
        message = "Choose a quantity from the list."
        if is_htmx(request):
            return _cart_fragment(request, cart, message)
        return render(request, "cart.html", cart_context(cart, message), status=400)
    return await _change(request, api, product_id, quantity)


@post("/cart/items/{product_id:uuid}/remove", name="cart-remove", include_in_schema=False)
async def cart_remove(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, product_id: uuid.UUID
) -> Response[Any]:
    return await _change(request, api, product_id, 0)


@post("/cart/clear", name="cart-clear", include_in_schema=False)
async def cart_clear(request: Request[Any, Any, Any], api: Api, visitor: Visitor) -> Response[Any]:
    if api.has_cart:
        await api.delete("cart", "/api/cart")
    return redirect(request, "/cart", flash="cart-emptied")


ROUTES = [cart_page, cart_count, cart_add, cart_set, cart_remove, cart_clear]
