"""The storefront's ASGI app: ``uvicorn --factory storefront.app:create_app`` (port 8100).

For now a placeholder home page; the shop's pages (Jinja + htmx over the APIs) grow here.
It owns no tables, so it is built without a models base.
"""

from __future__ import annotations

from ember_shared.app import ServiceSpec, create_service_app
from litestar import Litestar

from storefront.pages import csp_report, home


def create_app() -> Litestar:
    return create_service_app(
        ServiceSpec(
            name="storefront",
            title="Ember storefront",
            description="The shop's server-rendered pages, over the public APIs.",
            route_handlers=[home, csp_report],
        )
    )
