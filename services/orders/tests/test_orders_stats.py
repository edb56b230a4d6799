"""The dashboard's figures, checked against orders made for them in a window of their own."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from orders_testkit import Checkout, deliver_with, line, problem

P1, P2, P3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def at(day: int, hour: int = 10, minute: int = 0, second: int = 0, month: int = 6) -> dt.datetime:
    return dt.datetime(2019, month, day, hour, minute, second, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def admin(tokens) -> dict[str, str]:
    token, _ = tokens.admin()
    return tokens.bearer(token)


@pytest.fixture(scope="module")
async def june_2019(orders_app) -> dict[str, Checkout]:
    """Orders placed and paid in June 2019 (and just outside it), through the event handlers."""
    deliver = deliver_with(orders_app)
    made: dict[str, Checkout] = {}

    async def order(name: str, lines, *, placed, paid=None, shipping=0, currency="USD"):
        checkout = Checkout(lines=lines, shipping=shipping, currency=currency)
        await deliver(checkout.started(), occurred_at=placed)
        if paid is not None:
            await deliver(checkout.succeeded(), occurred_at=paid)
        made[name] = checkout
        return checkout

    await order(
        "A",
        [line(1800, 2, product_id=P1, name="Guji"), line(2400, 1, product_id=P2, name="Huila")],
        placed=at(1, 0, 0, 0),
        paid=at(1, 0, 0, 0),
        shipping=500,
    )
    b = await order("B", [line(1800, 2, product_id=P1, name="Guji")], placed=at(1), paid=at(1, 11))
    await deliver(b.refunded(800), occurred_at=at(2))
    await order(
        "C",
        [line(3000, 3, product_id=P3, name="Kenya AA")],
        placed=at(3),
        paid=at(3, 12),
        currency="EUR",
    )
    await order("D", [line(1800, 1, product_id=P1)], placed=at(3))
    e = await order("E", [line(1800, 1, product_id=P1)], placed=at(4))
    await deliver(e.failed(), occurred_at=at(4, 11))
    f = await order(
        "F", [line(2400, 2, product_id=P2, name="Huila")], placed=at(5), paid=at(5, 10, 30)
    )
    await deliver(f.refunded(f.total, full=True), occurred_at=at(6))
    # Just outside the window on both sides.
    await order(
        "G", [line(9900, 5, product_id=P3)], placed=at(10, 23, 59, 59), paid=at(11, 0, 0, 0)
    )
    await order(
        "H",
        [line(9900, 5, product_id=P1)],
        placed=at(31, 23, 0, 0, month=5),
        paid=at(31, 23, 59, 59, month=5),
    )
    return made


async def test_figures_over_a_range(client, admin, june_2019) -> None:
    response = await client.get(
        "/api/admin/stats?from=2019-06-01&to=2019-06-10&top=5", headers=admin
    )
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["range"] == {
        "from": "2019-06-01",
        "to": "2019-06-10",
        "days": 10,
        "timezone": "UTC",
    }

    # USD: A 6500 + B 3600 + F 4800 paid; B refunded 800, F refunded in full.
    assert stats["revenue"] == [
        {
            "currency": "EUR",
            "orders": 1,
            "gross": 9000,
            "refunded": 0,
            "net": 9000,
            "average_order_value": 9000,
        },
        {
            "currency": "USD",
            "orders": 3,
            "gross": 14900,
            "refunded": 5600,
            "net": 9300,
            "average_order_value": 4967,
        },
    ]
    # G was placed on the 10th (counted here) but paid on the 11th (not in revenue).
    assert stats["orders_by_status"] == {
        "pending_payment": 1,
        "payment_failed": 1,
        "cancelled": 0,
        "paid": 3,
        "fulfilled": 0,
        "shipped": 0,
        "delivered": 0,
        "partially_refunded": 1,
        "refunded": 1,
    }
    assert stats["orders_placed"] == 7
    assert stats["orders_paid"] == 4

    # By quantity sold: Guji 4, then Kenya 3 (9000) before Huila 3 (7200).
    assert [
        (p["product_id"], p["name"], p["quantity"], p["revenue"], p["currency"])
        for p in stats["top_products"]
    ] == [
        (str(P1), "Guji", 4, 7200, "USD"),
        (str(P3), "Kenya AA", 3, 9000, "EUR"),
        (str(P2), "Huila", 3, 7200, "USD"),
    ]

    daily = stats["daily"]
    assert [d["date"] for d in daily] == [f"2019-06-{day:02d}" for day in range(1, 11)]
    by_day = {d["date"]: (d["orders"], d["revenue"]) for d in daily}
    assert by_day["2019-06-01"] == (2, {"USD": 10100})
    assert by_day["2019-06-03"] == (1, {"EUR": 9000})
    assert by_day["2019-06-05"] == (1, {"USD": 4800})
    assert all(by_day[f"2019-06-{d:02d}"] == (0, {}) for d in (2, 4, 6, 7, 8, 9, 10))


async def test_top_is_bounded_and_a_one_day_range(client, admin, june_2019) -> None:
    stats = (
        await client.get("/api/admin/stats?from=2019-06-03&to=2019-06-03&top=1", headers=admin)
    ).json()
    assert [p["product_id"] for p in stats["top_products"]] == [str(P3)]
    assert [r["currency"] for r in stats["revenue"]] == ["EUR"]
    assert stats["range"]["days"] == 1
    assert len(stats["daily"]) == 1


async def test_the_day_after_the_window(client, admin, june_2019) -> None:
    stats = (
        await client.get("/api/admin/stats?from=2019-06-11&to=2019-06-11", headers=admin)
    ).json()
    assert stats["revenue"] == [
        {
            "currency": "USD",
            "orders": 1,
            "gross": 49500,
            "refunded": 0,
            "net": 49500,
            "average_order_value": 49500,
        }
    ]
    assert stats["orders_placed"] == 0


async def test_default_range_is_the_last_30_days(client, admin) -> None:
    stats = (await client.get("/api/admin/stats", headers=admin)).json()
    today = dt.datetime.now(dt.UTC).date()
    assert stats["range"]["to"] == today.isoformat()
    assert stats["range"]["days"] == 30
    assert len(stats["daily"]) == 30
    assert stats["daily"][-1]["date"] == today.isoformat()


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        ("from=2019-06-10&to=2019-06-01", "invalid-range"),
        ("from=2015-01-01&to=2019-06-01", "range-too-long"),
        ("to=2999-01-01", "invalid-range"),
        ("from=yesterday", "validation"),
        ("from=2019-02-30", "validation"),
        ("top=0", "validation"),
        ("top=51", "validation"),
    ],
)
async def test_bad_ranges_are_problems(client, admin, query, kind) -> None:
    problem(await client.get(f"/api/admin/stats?{query}", headers=admin), 400, kind)
