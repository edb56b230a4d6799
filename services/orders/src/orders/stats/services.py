"""Sales figures over a bounded range of whole UTC days."""

from __future__ import annotations

import datetime as dt

from ember_shared.problems import Problem
from sqlalchemy.ext.asyncio import AsyncSession

from orders.ordering.status import OrderStatus
from orders.stats.repositories import StatsRepository
from orders.stats.schemas import CurrencyRevenue, DailySales, SalesStats, StatsRange, TopProduct

DEFAULT_DAYS = 30


def resolve_range(
    date_from: dt.date | None, date_to: dt.date | None, *, max_days: int, today: dt.date
) -> tuple[dt.date, dt.date]:
    last = date_to or today
    first = date_from or (last - dt.timedelta(days=DEFAULT_DAYS - 1))
    if first > last:
        raise Problem(400, "invalid-range", "'from' must not be after 'to'.")
    if (last - first).days + 1 > max_days:
        raise Problem(
            400,
            "range-too-long",
            f"The range may cover at most {max_days} days.",
            max_days=max_days,
        )
    if last > today + dt.timedelta(days=1):
        raise Problem(400, "invalid-range", "'to' is in the future.")
    return first, last


class StatsService:
    def __init__(self, session: AsyncSession) -> None:
        self.repo = StatsRepository(session)

    async def figures(self, first: dt.date, last: dt.date, *, top: int) -> SalesStats:
        start = dt.datetime.combine(first, dt.time.min, tzinfo=dt.UTC)
        end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
        revenue = [
            CurrencyRevenue(
                currency=row["currency"],
                orders=int(row["orders"]),
                gross=int(row["gross"]),
                refunded=int(row["refunded"]),
                net=int(row["gross"]) - int(row["refunded"]),
                average_order_value=int(row["average"] or 0),
            )
            for row in await self.repo.revenue(start, end)
        ]
        counts = await self.repo.by_status(start, end)
        by_status = {status.value: counts.get(status.value, 0) for status in OrderStatus}
        top_products = [
            TopProduct(
                product_id=row["product_id"],
                slug=row["slug"],
                name=row["name"],
                currency=row["currency"],
                quantity=int(row["quantity"]),
                revenue=int(row["revenue"]),
            )
            for row in await self.repo.top_products(start, end, top)
        ]
        days: dict[dt.date, DailySales] = {}
        for row in await self.repo.daily(start, end):
            entry = days.setdefault(row["day"], DailySales(date=row["day"], orders=0, revenue={}))
            if row["currency"] is not None:
                entry.orders += int(row["orders"])
                entry.revenue[row["currency"]] = int(row["revenue"])
        return SalesStats(
            range=StatsRange(date_from=first, date_to=last, days=(last - first).days + 1),
            revenue=revenue,
            orders_by_status=by_status,
            orders_placed=sum(by_status.values()),
            orders_paid=sum(r.orders for r in revenue),
            top_products=top_products,
            daily=[days[d] for d in sorted(days)],
        )
