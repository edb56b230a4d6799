"""The sales figures staff see on the dashboard."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec


class StatsRange(msgspec.Struct, kw_only=True):
    date_from: dt.date = msgspec.field(name="from")
    date_to: dt.date = msgspec.field(name="to")
    days: int
    timezone: str = "UTC"


class CurrencyRevenue(msgspec.Struct, kw_only=True):
    """Money taken in one currency by orders paid in the range (minor units)."""

    currency: str
    orders: int
    gross: int
    refunded: int
    net: int
    average_order_value: int


class TopProduct(msgspec.Struct, kw_only=True):
    product_id: uuid.UUID
    slug: str
    name: str
    currency: str
    quantity: int
    revenue: int


class DailySales(msgspec.Struct, kw_only=True):
    date: dt.date
    orders: int
    #: Gross revenue of the day's paid orders, per currency (minor units).
    revenue: dict[str, int]


class SalesStats(msgspec.Struct, kw_only=True):
    range: StatsRange
    revenue: list[CurrencyRevenue]
    #: Orders placed in the range, by their current status (every status is listed).
    orders_by_status: dict[str, int]
    orders_placed: int
    orders_paid: int
    top_products: list[TopProduct]
    daily: list[DailySales]
