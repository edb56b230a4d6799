"""``GET /api/admin/stats``: the dashboard's sales figures."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from ember_shared.auth import requires_admin
from litestar import Controller, get
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.params import Parameter

from orders.deps import provide_orders_settings, provide_stats_service
from orders.settings import OrdersSettings
from orders.stats.schemas import SalesStats
from orders.stats.services import StatsService, resolve_range


class StatsController(Controller):
    path = "/api/admin/stats"
    tags = ["admin: orders"]
    guards = [requires_admin]
    security = [{"BearerToken": []}]
    cache_control = CacheControlHeader(no_store=True, private=True)
    dependencies = {
        "stats": Provide(provide_stats_service),
        "settings": Provide(provide_orders_settings),
    }

    @get(
        "/",
        summary="Sales figures: revenue, orders by status, top products, day by day",
        description=(
            "Over whole UTC days from `from` to `to` (inclusive; default: the last 30 days). "
            "Revenue counts orders paid in the range (in minor units, per currency, with "
            "refunds); orders by status counts orders placed in the range."
        ),
    )
    async def stats(
        self,
        stats: StatsService,
        settings: OrdersSettings,
        date_from: Annotated[
            dt.date | None, Parameter(query="from", description="First day (YYYY-MM-DD).")
        ] = None,
        date_to: Annotated[
            dt.date | None, Parameter(query="to", description="Last day (YYYY-MM-DD).")
        ] = None,
        top: Annotated[int, Parameter(ge=1, le=50, description="How many top products.")] = 10,
    ) -> SalesStats:
        first, last = resolve_range(
            date_from,
            date_to,
            max_days=settings.stats_max_days,
            today=dt.datetime.now(dt.UTC).date(),
        )
        return await stats.figures(first, last, top=top)
