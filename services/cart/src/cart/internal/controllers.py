"""``/internal/cart/*``: for checkout, behind the service credential."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ember_shared.auth import requires_service
from ember_shared.contracts.cart import ResolvedCart, ResolveRequest
from litestar import Controller, post
from litestar.datastructures import State
from litestar.di import Provide

from cart.carts.controllers import provide_cart_service
from cart.carts.services import CartService


async def provide_cart_reader(state: State) -> AsyncIterator[CartService]:
    """The service on the read session (autocommit), for a guest cart's resolve: one statement,
    without the BEGIN and COMMIT round trips of a transaction around it."""
    async with state.db_reads() as session:
        yield CartService(session, state.catalog, state.cart_settings, state.cart_signer)


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
        dependencies={"reader": Provide(provide_cart_reader)},
    )
    async def resolve(
        self, data: ResolveRequest, carts: CartService, reader: CartService
    ) -> ResolvedCart:
        # A signed-in shopper's may merge a guest cart into theirs: a write, in the request's
        # transaction (not begun at all for a guest's, which only reads).
        if data.user_id is None:
            return await reader.resolve(None, data.cart_token)
        return await carts.resolve(data.user_id, data.cart_token)
