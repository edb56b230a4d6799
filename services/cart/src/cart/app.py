"""The cart service's ASGI app: ``uvicorn --factory cart.app:create_app``."""

from __future__ import annotations

from litestar import Litestar

from ember_shared.app import ServiceSpec, create_service_app
from cart.models import Base


def create_app() -> Litestar:
    return create_service_app(
        ServiceSpec(
            name="cart",
            title="Ember cart",
            description=__doc__ or "",
            route_handlers=[],
            base=Base,
        )
    )
