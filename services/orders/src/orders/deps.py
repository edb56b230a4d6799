"""Dependencies the controllers take: services bound to the request's session."""

from __future__ import annotations

from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from orders.ordering.services import OrderService
from orders.settings import OrdersSettings
from orders.stats.services import StatsService
from orders.tracking.services import TrackingService


async def provide_orders_settings(state: State) -> OrdersSettings:
    settings: OrdersSettings = state.orders_settings
    return settings


async def provide_order_service(db_session: AsyncSession) -> OrderService:
    return OrderService(db_session)


async def provide_tracking_service(db_session: AsyncSession, state: State) -> TrackingService:
    settings: OrdersSettings = state.orders_settings
    return TrackingService(db_session, state.tracking_client, settings.tracking)


async def provide_stats_service(db_session: AsyncSession) -> StatsService:
    return StatsService(db_session)
