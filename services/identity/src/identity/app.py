"""The identity service's ASGI app: ``uvicorn --factory identity.app:create_app``."""

from __future__ import annotations

from litestar import Litestar

from ember_shared.app import ServiceSpec, create_service_app
from identity.models import Base


def create_app() -> Litestar:
    return create_service_app(
        ServiceSpec(
            name="identity",
            title="Ember identity",
            description=__doc__ or "",
            route_handlers=[],
            base=Base,
        )
    )
