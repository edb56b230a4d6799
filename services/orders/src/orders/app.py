"""The orders service's ASGI app: ``uvicorn --factory orders.app:create_app``.

Orders (created from payment events only), their immutable item snapshots, shipping with
tracking from a 17track-compatible provider, and the sales figures staff see.
"""

from __future__ import annotations

import msgspec
from ember_shared.app import ServiceSpec, create_service_app
from ember_shared.settings import service_settings
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.config.app import AppConfig
from litestar.openapi.spec import Schema

from orders.events import handlers
from orders.models import Base
from orders.ordering.controllers import AdminOrderController, ShopperOrderController
from orders.ordering.schemas import AdminOrderUpdate, ShipRequest
from orders.ordering.services import OrderService
from orders.refunds.controllers import AdminRefundController
from orders.refunds.schemas import RefundOrder
from orders.settings import OrdersSettings, load_settings
from orders.stats.controllers import StatsController
from orders.tracking.poller import tracking_lifespan

#: Request bodies that refuse unknown members; their documents must say so.
STRICT_BODIES: tuple[type[msgspec.Struct], ...] = (AdminOrderUpdate, ShipRequest, RefundOrder)


def _document_strict_bodies(app: Litestar) -> None:
    """Litestar does not turn ``forbid_unknown_fields`` into ``additionalProperties: false``;
    without it the document promises that extra members are accepted, and fuzzers believe it."""
    if app.openapi_config is None:
        return
    openapi = app.plugins.get(OpenAPIPlugin).provide_openapi()
    schemas = (openapi.components.schemas or {}) if openapi.components else {}
    for struct in STRICT_BODIES:
        schema = schemas.get(struct.__name__)
        if isinstance(schema, Schema):
            schema.additional_properties = False


def _configure(config: AppConfig) -> None:
    config.on_startup = [*config.on_startup, _document_strict_bodies]


def create_app(settings: OrdersSettings | None = None) -> Litestar:
    service = service_settings("orders")
    orders_settings = load_settings(settings, service)
    app = create_service_app(
        ServiceSpec(
            name="orders",
            title="Ember orders",
            description=__doc__ or "",
            route_handlers=[
                ShopperOrderController,
                AdminOrderController,
                AdminRefundController,
                StatsController,
            ],
            base=Base,
            events=handlers,
            # The handlers' ``orders``: one OrderService on each call's session.
            event_dependencies={"orders": OrderService},
            lifespans=[tracking_lifespan(orders_settings)],
            configure=_configure,
        ),
        service,
    )
    app.state.orders_settings = orders_settings
    return app
