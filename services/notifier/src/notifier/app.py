"""The notifier service's ASGI app: ``uvicorn --factory notifier.app:create_app``."""

from __future__ import annotations

from litestar import Litestar

from ember_shared.app import ServiceSpec, create_service_app
from notifier.models import Base


def create_app() -> Litestar:
    return create_service_app(
        ServiceSpec(
            name="notifier",
            title="Ember notifier",
            description=__doc__ or "",
            route_handlers=[],
            base=Base,
        )
    )
