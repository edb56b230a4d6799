"""The order routes: a shopper's own orders, and staff's order management."""

from __future__ import annotations

import uuid
from typing import Annotated

from ember_shared.auth import (
    Principal,
    provide_optional_principal,
    provide_principal,
    requires_admin,
    requires_signed_in,
)
from ember_shared.problems import Problem
from litestar import Controller, get, post, put
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.params import Parameter

from orders.deps import provide_order_service, provide_orders_settings, provide_tracking_service
from orders.ordering.schemas import (
    AdminOrderPage,
    AdminOrderUpdate,
    AdminOrderView,
    OrderPage,
    OrderView,
    ShipRequest,
    TrackingView,
)
from orders.ordering.services import OrderService
from orders.ordering.status import OrderStatus
from orders.ordering.views import admin_order_view, admin_summary, order_view, tracking_view
from orders.settings import OrdersSettings
from orders.tracking.services import TrackingService

Page = Annotated[int, Parameter(ge=1, le=10_000, description="Page number, from 1.")]
ShopperPageSize = Annotated[int, Parameter(ge=1, le=50, description="Orders per page (1-50).")]
AdminPageSize = Annotated[int, Parameter(ge=1, le=100, description="Orders per page (1-100).")]
StripeSessionId = Annotated[
    str | None,
    Parameter(
        query="session_id",
        min_length=4,
        max_length=255,
        pattern=r"^cs_[A-Za-z0-9_]+$",
        description=(
            "The Stripe Checkout Session id from the success URL: lets a guest who paid read "
            "the order without an account, for an hour after paying only (then use `token`)."
        ),
    ),
]
GuestToken = Annotated[
    str | None,
    Parameter(
        query="token",
        min_length=20,
        max_length=100,
        pattern=r"^[A-Za-z0-9_-]+$",
        description=(
            "The secret of the order link mailed to a guest: lets them read the order without "
            "an account, from any device."
        ),
    ),
]

NO_STORE = CacheControlHeader(no_store=True, private=True)


async def _customer_page(
    principal: Principal,
    orders: OrderService,
    settings: OrdersSettings,
    page: int,
    page_size: int,
) -> OrderPage:
    rows, total = await orders.page_for_customer(principal, page=page, page_size=page_size)
    return OrderPage(
        items=[order_view(o, settings.tracking) for o in rows],
        total=total,
        page=page,
        page_size=page_size,
    )


class ShopperOrderController(Controller):
    """A shopper's own orders (invariant 11: anyone else's answer 404)."""

    path = "/api/orders"
    tags = ["orders"]
    cache_control = NO_STORE
    dependencies = {
        "orders": Provide(provide_order_service),
        "settings": Provide(provide_orders_settings),
    }

    @get(
        "/my-orders",
        guards=[requires_signed_in],
        dependencies={"principal": Provide(provide_principal)},
        summary="My order history, newest first",
        security=[{"BearerToken": []}],
    )
    async def my_orders(
        self,
        principal: Principal,
        orders: OrderService,
        settings: OrdersSettings,
        page: Page = 1,
        page_size: ShopperPageSize = 20,
    ) -> OrderPage:
        return await _customer_page(principal, orders, settings, page, page_size)

    @get(
        "/",
        guards=[requires_signed_in],
        dependencies={"principal": Provide(provide_principal)},
        summary="My orders, newest first (same as /my-orders)",
        security=[{"BearerToken": []}],
    )
    async def list_orders(
        self,
        principal: Principal,
        orders: OrderService,
        settings: OrdersSettings,
        page: Page = 1,
        page_size: ShopperPageSize = 20,
    ) -> OrderPage:
        return await _customer_page(principal, orders, settings, page, page_size)

    @get(
        "/{order_id:uuid}",
        dependencies={"principal": Provide(provide_optional_principal)},
        summary="One order, for its owner or the guest who paid for it",
        description=(
            "Signed in, a customer reads their own orders. A guest reads the order they paid "
            "for with the `token` of the link mailed to them, or, for an hour after paying, the "
            "`session_id` of the Stripe session that paid it (the success URL carries it). The "
            "status stays `pending_payment` until the payment webhook has "
            "been processed: the redirect from Stripe is never proof of payment. Any other "
            "order answers 404."
        ),
    )
    async def get_order(
        self,
        *,
        order_id: uuid.UUID,
        principal: Principal | None,
        orders: OrderService,
        settings: OrdersSettings,
        session_id: StripeSessionId = None,
        token: GuestToken = None,
    ) -> OrderView:
        order = await orders.get_for_shopper(order_id, principal, session_id, token)
        return order_view(order, settings.tracking)

    @get(
        "/{order_id:uuid}/tracking",
        dependencies={
            "principal": Provide(provide_optional_principal),
            "tracking": Provide(provide_tracking_service),
        },
        summary="Where the parcel is: the carrier's scans, newest first",
    )
    async def get_tracking(
        self,
        *,
        order_id: uuid.UUID,
        principal: Principal | None,
        orders: OrderService,
        tracking: TrackingService,
        settings: OrdersSettings,
        session_id: StripeSessionId = None,
        token: GuestToken = None,
    ) -> TrackingView:
        order = await orders.get_for_shopper(order_id, principal, session_id, token)
        if not order.tracking_number:
            raise Problem(404, "not-shipped", "This order has not been shipped yet.")
        return tracking_view(order, await tracking.scans(order.id), settings.tracking)


class AdminOrderController(Controller):
    """Staff's order management."""

    path = "/api/admin/orders"
    tags = ["admin: orders"]
    guards = [requires_admin]
    cache_control = NO_STORE
    security = [{"BearerToken": []}]
    dependencies = {
        "orders": Provide(provide_order_service),
        "settings": Provide(provide_orders_settings),
        "principal": Provide(provide_principal),
    }

    @get("/", summary="Find orders: by status, customer, email, order id or tracking number")
    async def list_orders(
        self,
        *,
        orders: OrderService,
        status: Annotated[
            OrderStatus | None, Parameter(description="Only orders in this status.")
        ] = None,
        q: Annotated[
            str | None,
            Parameter(
                min_length=1,
                max_length=200,
                description="Part of an email, an order id (or its first characters) or a "
                "tracking number.",
            ),
        ] = None,
        user_id: Annotated[
            uuid.UUID | None,
            Parameter(
                description="Only this customer's orders (with `verified_email`, also "
                "the guest orders placed with that address)."
            ),
        ] = None,
        verified_email: Annotated[
            str | None,
            Parameter(
                min_length=3,
                max_length=320,
                description="The customer's address, when identity has proved it.",
            ),
        ] = None,
        attention: Annotated[
            bool | None,
            Parameter(
                description="true: only orders whose payment needs a look before shipping "
                "(another amount, paid after the checkout closed); false: only the others."
            ),
        ] = None,
        page: Page = 1,
        page_size: AdminPageSize = 25,
    ) -> AdminOrderPage:
        if verified_email is not None and user_id is None:
            raise Problem(400, "user-id-required", "verified_email goes with user_id.")
        rows, total = await orders.admin_page(
            status=status.value if status else None,
            query=q.strip() if q and q.strip() else None,
            attention=attention,
            page=page,
            page_size=page_size,
            customer=(user_id, verified_email) if user_id is not None else None,
        )
        return AdminOrderPage(
            items=[admin_summary(o) for o in rows], total=total, page=page, page_size=page_size
        )

    @get("/{order_id:uuid}", summary="One order with its payment references and history")
    async def get_order(
        self, order_id: uuid.UUID, orders: OrderService, settings: OrdersSettings
    ) -> AdminOrderView:
        order, history = await orders.admin_get(order_id)
        return admin_order_view(order, history, settings.tracking, orders.allowed_targets(order))

    @put(
        "/{order_id:uuid}",
        summary="Move an order through fulfilment, cancel an unpaid one, or edit its notes",
    )
    async def update_order(
        self,
        order_id: uuid.UUID,
        data: AdminOrderUpdate,
        principal: Principal,
        orders: OrderService,
        settings: OrdersSettings,
    ) -> AdminOrderView:
        if data.status is None and data.notes is None:
            raise Problem(400, "nothing-to-change", "Give a status, notes, or both.")
        await orders.admin_update(order_id, data, actor=f"admin:{principal.user_id}")
        order, history = await orders.admin_get(order_id)
        return admin_order_view(order, history, settings.tracking, orders.allowed_targets(order))

    @post(
        "/{order_id:uuid}/ship",
        status_code=200,
        dependencies={"tracking": Provide(provide_tracking_service)},
        summary="Ship an order: carrier and tracking number; the customer is emailed",
        description=(
            "Marks the order shipped, registers the number with the tracking provider and "
            "emits order.shipped.v1 (the notifier sends the shipment email). Shipping again "
            "with the same number changes nothing; with another number it corrects the "
            "tracking (and the customer is told the new one)."
        ),
    )
    async def ship_order(
        self,
        *,
        order_id: uuid.UUID,
        data: ShipRequest,
        principal: Principal,
        orders: OrderService,
        tracking: TrackingService,
        settings: OrdersSettings,
    ) -> AdminOrderView:
        await tracking.ship(
            order_id, data.carrier, data.tracking_number, actor=f"admin:{principal.user_id}"
        )
        order, history = await orders.admin_get(order_id)
        return admin_order_view(order, history, settings.tracking, orders.allowed_targets(order))

    @post(
        "/{order_id:uuid}/tracking/sync",
        status_code=200,
        dependencies={"tracking": Provide(provide_tracking_service)},
        summary="Fetch the order's tracking from the provider now",
    )
    async def sync_tracking(
        self,
        order_id: uuid.UUID,
        orders: OrderService,
        tracking: TrackingService,
        settings: OrdersSettings,
    ) -> TrackingView:
        order = await orders.lock(order_id)
        await tracking.sync(order)
        order = await orders.reload(order_id)
        return tracking_view(order, await tracking.scans(order.id), settings.tracking)
