"""The orders service's ASGI app: ``uvicorn --factory orders.app:create_app``.

Orders (created from payment events only), their immutable item snapshots, shipping with
tracking from a 17track-compatible provider, and the sales figures staff see.
"""

from __future__ import annotations

from ember_shared.app import ServiceSpec, create_service_app
from litestar import Litestar

from orders.events import handlers
from orders.models import Base
from orders.ordering.controllers import AdminOrderController, ShopperOrderController
from orders.settings import OrdersSettings, load_orders_settings
from orders.stats.controllers import StatsController
from orders.tracking.poller import tracking_lifespan


def create_app(settings: OrdersSettings | None = None) -> Litestar:
    orders_settings = settings or load_orders_settings()
    app = create_service_app(
        ServiceSpec(
            name="orders",
            title="Ember orders",
            description=__doc__ or "",
            route_handlers=[ShopperOrderController, AdminOrderController, StatsController],
            base=Base,
            events=handlers,
            lifespans=[tracking_lifespan(orders_settings)],
        )
    )
    app.state.orders_settings = orders_settings
    return app
