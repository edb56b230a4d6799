"""The sales figures, computed by Postgres (sums, groups and the day series in SQL)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Date, and_, cast, func, literal, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from orders.models import Order, OrderItem
from orders.ordering.status import PAID_STATUSES

_PAID = [s.value for s in PAID_STATUSES]


class StatsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _paid_in(self, start: dt.datetime, end: dt.datetime) -> Any:
        return and_(Order.status.in_(_PAID), Order.paid_at >= start, Order.paid_at < end)

    async def revenue(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        statement = (
            select(
                Order.currency,
                func.count(Order.id).label("orders"),
                func.coalesce(func.sum(Order.total), 0).label("gross"),
                func.coalesce(func.sum(Order.amount_refunded), 0).label("refunded"),
                # Rounded in SQL on exact numerics: money never passes through a float.
                func.round(func.avg(Order.total)).label("average"),
            )
            .where(self._paid_in(start, end))
            .group_by(Order.currency)
            .order_by(Order.currency)
        )
        return [dict(row._mapping) for row in await self.session.execute(statement)]

    async def by_status(self, start: dt.datetime, end: dt.datetime) -> dict[str, int]:
        statement = (
            select(Order.status, func.count(Order.id))
            .where(Order.created_at >= start, Order.created_at < end)
            .group_by(Order.status)
        )
        return {row[0]: int(row[1]) for row in await self.session.execute(statement)}

    async def top_products(
        self, start: dt.datetime, end: dt.datetime, limit: int
    ) -> list[dict[str, Any]]:
        quantity = func.sum(OrderItem.quantity).label("quantity")
        revenue = func.sum(OrderItem.line_total).label("revenue")
        statement = (
            select(
                OrderItem.product_id,
                OrderItem.currency,
                # The name and slug it was most recently sold under.
                _latest(OrderItem.name).label("name"),
                _latest(OrderItem.slug).label("slug"),
                quantity,
                revenue,
            )
            .join(Order, Order.id == OrderItem.order_id)
            .where(self._paid_in(start, end))
            .group_by(OrderItem.product_id, OrderItem.currency)
            .order_by(quantity.desc(), revenue.desc(), OrderItem.product_id)
            .limit(limit)
        )
        return [dict(row._mapping) for row in await self.session.execute(statement)]

    async def daily(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        """One row per (day, currency) with paid orders, and one (day, None) row per empty day."""
        days = (
            select(
                cast(
                    func.generate_series(
                        cast(literal(start.date()), Date),
                        cast(literal((end - dt.timedelta(days=1)).date()), Date),
                        text("interval '1 day'"),
                    ),
                    Date,
                ).label("day")
            )
        ).subquery("days")
        paid_day = cast(func.timezone("UTC", Order.paid_at), Date)
        statement = (
            select(
                days.c.day,
                Order.currency,
                func.count(Order.id).label("orders"),
                func.coalesce(func.sum(Order.total), 0).label("revenue"),
            )
            .select_from(days)
            .outerjoin(Order, and_(paid_day == days.c.day, self._paid_in(start, end)))
            .group_by(days.c.day, Order.currency)
            .order_by(days.c.day, Order.currency)
        )
        return [dict(row._mapping) for row in await self.session.execute(statement)]


def _latest(value: Any) -> Any:
    """The value of the most recently created item (array_agg ordered, first element)."""
    return func.array_agg(aggregate_order_by(value, OrderItem.created_at.desc()))[1]
