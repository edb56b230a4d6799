"""The orders service's ASGI app: ``uvicorn --factory orders.app:create_app``."""

from __future__ import annotations

from litestar import Litestar

from ember_shared.app import ServiceSpec, create_service_app
from orders.models import Base


def create_app() -> Litestar:
    return create_service_app(
        ServiceSpec(
            name="orders",
            title="Ember orders",
            description=__doc__ or "",
            route_handlers=[],
            base=Base,
        )
    )
