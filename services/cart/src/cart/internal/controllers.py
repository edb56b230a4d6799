"""``/internal/cart/*``: for checkout, behind the service credential."""

from __future__ import annotations

from ember_shared.auth import requires_service
from ember_shared.contracts.cart import ResolvedCart, ResolveRequest
from litestar import Controller, post
from litestar.di import Provide

from cart.carts.controllers import provide_cart_service
from cart.carts.services import CartService


class InternalCartController(Controller):
    path = "/internal/cart"
    tags = ["internal"]
    guards = [requires_service]
    dependencies = {"carts": Provide(provide_cart_service)}

    @post(
        "/resolve",
        summary="The lines a shopper would check out",
        description=(
            "The signed-in shopper's cart when ``user_id`` is given (a guest cart named by "
            "``cart_token`` is merged into it first), else the guest cart that ``cart_token`` "
            "(the raw ``ember_cart`` cookie) names. ``cart_id: null`` and no lines when there is "
            "none; a forged token is no cart."
        ),
        status_code=200,
    )
    async def resolve(self, data: ResolveRequest, carts: CartService) -> ResolvedCart:
        return await carts.resolve(data.user_id, data.cart_token)
