"""``/api/cart*``: thin routes over :class:`CartService`.

Every route serves guests (through the signed ``ember_cart`` cookie) and signed-in shoppers
(through their access token) alike. A request whose credentials fail (a bad or expired token, or
a cookie-authenticated change without the CSRF header) is refused rather than served as a guest.
"""

from __future__ import annotations

import uuid
from typing import Any

from ember_shared.auth import current_principal, requires_signed_in
from ember_shared.cookies import CART_COOKIE
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, State
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from cart.carts.schemas import AddItem, CartLines, CartView, SetLines, SetQuantity
from cart.carts.services import CartService, Opened, Shopper


async def refuses_failed_credentials(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Anonymous is fine here; credentials that were presented and failed are not (a shopper
    with an expired token must refresh it, not silently shop as a guest)."""
    if connection.scope.get("auth"):
        await requires_signed_in(connection, handler)


async def provide_cart_service(db_session: AsyncSession, state: State) -> CartService:
    return CartService(db_session, state.catalog, state.cart_settings, state.cart_signer)


def shopper_of(request: Request[Any, Any, Any]) -> Shopper:
    principal = current_principal(request)
    return Shopper(
        user_id=principal.user_id if principal else None,
        cart_cookie=request.cookies.get(CART_COOKIE),
    )


def respond(
    request: Request[Any, Any, Any], opened: Opened, body: Any, status: int = 200
) -> Response[Any]:
    signer = request.app.state.cart_signer
    cookies: list[Cookie] = []
    if opened.set_cookie is not None:
        cookies.append(signer.set_cookie(opened.set_cookie))
    elif opened.clear_cookie:
        cookies.append(signer.clear_cookie())
    # A cart is private to its holder: no shared cache may keep it.
    headers = {"Cache-Control": "no-store"}
    return Response(body, status_code=status, cookies=cookies, headers=headers)


CART_COOKIE_DOC = [
    Cookie(
        key=CART_COOKIE,
        description=(
            "Signed guest cart cookie (httpOnly, SameSite=Lax, 30 days): set on a guest's first "
            "write, renewed on each, expired once it merges into a signed-in shopper's cart."
        ),
        documentation_only=True,
    )
]

ProductIdPath = Parameter(description="The product's id (as catalog knows it).")


class CartController(Controller):
    path = "/api/cart"
    tags = ["cart"]
    guards = [refuses_failed_credentials]
    dependencies = {"carts": Provide(provide_cart_service)}
    security = [{}, {"BearerToken": []}]

    @get(
        "/",
        summary="The shopper's cart, priced now from catalog",
        description=(
            "Answers an empty cart (``id: null``) when there is none; never makes one. When "
            "catalog cannot be asked, the lines come without prices and ``pricing_unavailable`` "
            "is true. A signed-in shopper carrying a guest cookie gets that cart merged in."
        ),
        response_cookies=CART_COOKIE_DOC,
        cache=False,
    )
    async def get_cart(
        self, request: Request[Any, Any, Any], carts: CartService
    ) -> Response[CartView]:
        opened = await carts.open(shopper_of(request), create=False)
        return respond(request, opened, await carts.view(opened))

    @post(
        "/",
        summary="Make sure the shopper has a cart",
        description="201 with a new (empty) cart, or 200 with the existing one.",
        response_cookies=CART_COOKIE_DOC,
    )
    async def create_cart(
        self, request: Request[Any, Any, Any], carts: CartService
    ) -> Response[CartView]:
        opened = await carts.ensure(shopper_of(request))
        return respond(request, opened, await carts.view(opened), 201 if opened.created else 200)

    @patch(
        "/",
        summary="Set several quantities at once",
        description=(
            "All or nothing. 0 removes a line; a product not yet in the cart is added. Raising "
            "a quantity needs catalog (503 while it is down); 409 lists every line that cannot "
            "be had."
        ),
        response_cookies=CART_COOKIE_DOC,
    )
    async def set_lines(
        self, request: Request[Any, Any, Any], data: SetLines, carts: CartService
    ) -> Response[CartView]:
        opened = await carts.set_lines(shopper_of(request), data.lines)
        return respond(request, opened, await carts.view(opened))

    @delete("/", summary="Empty the cart", status_code=200, response_cookies=CART_COOKIE_DOC)
    async def clear_cart(
        self, request: Request[Any, Any, Any], carts: CartService
    ) -> Response[CartView]:
        opened = await carts.clear(shopper_of(request))
        return respond(request, opened, await carts.view(opened))

    @get("/items", summary="The cart's lines, priced now", cache=False)
    async def list_items(
        self, request: Request[Any, Any, Any], carts: CartService
    ) -> Response[CartLines]:
        opened = await carts.open(shopper_of(request), create=False)
        view = await carts.view(opened)
        return respond(
            request,
            opened,
            CartLines(lines=view.lines, pricing_unavailable=view.pricing_unavailable),
        )

    @post(
        "/items",
        summary="Add a product to the cart",
        description=(
            "Adds to the line when the product is there already. 404 when catalog does not know "
            "the product, 409 when it is archived, sold out or short of stock or the cart is "
            "full, 422 over the per-line limit, 503 while catalog cannot be asked. A guest's "
            "first add makes the cart and sets the ``ember_cart`` cookie."
        ),
        response_cookies=CART_COOKIE_DOC,
    )
    async def add_item(
        self, request: Request[Any, Any, Any], data: AddItem, carts: CartService
    ) -> Response[CartView]:
        opened = await carts.add_item(
            shopper_of(request), data.product_id, data.quantity, data.variant_id
        )
        return respond(request, opened, await carts.view(opened), 201)

    @patch(
        "/items/{product_id:uuid}",
        summary="Set a line's quantity (0 removes it)",
        description="The path names the line's variant (a product's id: its default variant).",
        response_cookies=CART_COOKIE_DOC,
    )
    async def set_item(
        self,
        request: Request[Any, Any, Any],
        product_id: uuid.UUID,
        data: SetQuantity,
        carts: CartService,
    ) -> Response[CartView]:
        opened = await carts.set_quantity(shopper_of(request), product_id, data.quantity)
        return respond(request, opened, await carts.view(opened))

    @delete(
        "/items/{product_id:uuid}",
        summary="Remove a line",
        description="The path names the line's variant (a product's id: its default variant).",
        status_code=200,
        response_cookies=CART_COOKIE_DOC,
    )
    async def remove_item(
        self, request: Request[Any, Any, Any], product_id: uuid.UUID, carts: CartService
    ) -> Response[CartView]:
        opened = await carts.remove_item(shopper_of(request), product_id)
        return respond(request, opened, await carts.view(opened))

    @post(
        "/merge",
        summary="Merge the guest cart into the signed-in shopper's cart",
        description=(
            "Quantities add up, capped by the per-line limit and by what can be bought; "
            "``merge.adjustments`` says what did not fit. Idempotent: with no guest cart (or one "
            "merged already) ``merge.merged`` is false. 503 while catalog cannot be asked."
        ),
        guards=[requires_signed_in],
        status_code=200,
        response_cookies=CART_COOKIE_DOC,
    )
    async def merge(
        self, request: Request[Any, Any, Any], carts: CartService
    ) -> Response[CartView]:
        opened = await carts.merge(shopper_of(request))
        return respond(request, opened, await carts.view(opened))
