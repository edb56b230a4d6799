"""The cart service's ASGI app: ``uvicorn --factory cart.app:create_app``.

Guest and signed-in carts, the merge at sign-in, lines priced from catalog on every read, and
``/internal/cart/resolve`` for checkout. Empties a cart when its payment succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ember_shared.app import ServiceSpec, create_service_app
from ember_shared.settings import service_settings
from litestar import Litestar

from cart.carts.controllers import CartController
from cart.carts.cookies import CookieSigner
from cart.catalog import CatalogClient
from cart.events import handlers
from cart.internal.controllers import InternalCartController
from cart.models import Base
from cart.settings import CartSettings, load_settings, signing_key
from cart.sweeper import sweep_forever


def create_app(settings: CartSettings | None = None) -> Litestar:
    service = service_settings("cart")
    cart = load_settings(settings, service)
    signer = CookieSigner(
        key=signing_key(cart, service),
        max_age_s=cart.cookie_max_age_s,
        secure=not service.app.is_local,
    )

    @asynccontextmanager
    async def cart_resources(app: Litestar) -> AsyncIterator[None]:
        catalog = CatalogClient(cart.catalog_url, cart.catalog_timeout_ms)
        app.state.catalog = catalog
        app.state.cart_settings = cart
        app.state.cart_signer = signer
        sweeper = (
            asyncio.create_task(sweep_forever(app.state.db_engine, cart), name="cart-sweeper")
            if cart.sweep_interval_s > 0
            else None
        )
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await catalog.aclose()

    return create_service_app(
        ServiceSpec(
            name="cart",
            title="Ember cart",
            description=__doc__ or "",
            route_handlers=[CartController, InternalCartController],
            base=Base,
            events=handlers,
            lifespans=[cart_resources],
        ),
        settings=service,
    )
