"""Every query the orders service makes about orders, items, history and deferred events.

Repositories never commit: the request or the event handler owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import Select, String, and_, cast, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload

from orders.models import DeferredEvent, Order, OrderItem, OrderStatusChange


class OrderRepository(SQLAlchemyAsyncRepository[Order]):
    model_type = Order

    async def insert_if_absent(self, values: dict[str, Any]) -> bool:
        """Create the order unless it exists; True when this call created it.

        Two events may race to create one order (checkout.started and payment.succeeded are
        on different streams): the primary key decides, and the loser reads the winner's row.
        """
        statement = insert(Order).values(**values).on_conflict_do_nothing(index_elements=[Order.id])
        result = await self.session.execute(statement.returning(Order.id))
        return result.scalar_one_or_none() is not None

    async def insert_unless_invoiced(self, values: dict[str, Any]) -> bool:
        """Create a subscription's order unless its order id or its Stripe invoice already has
        one; True when this call created it.

        Every unique index decides (no conflict target), so two deliveries of one invoice under
        different order ids, even at the same moment, still make one order.
        """
        statement = insert(Order).values(**values).on_conflict_do_nothing()
        result = await self.session.execute(statement.returning(Order.id))
        return result.scalar_one_or_none() is not None

    async def get_by_invoice(self, stripe_invoice_id: str) -> Order | None:
        statement = select(Order).where(Order.stripe_invoice_id == stripe_invoice_id)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get_for_update(self, order_id: uuid.UUID) -> Order | None:
        """The order, locked for this transaction, with its items: one statement (the items
        joined; only the order's row is locked), where a second one read the items."""
        statement = (
            select(Order)
            .where(Order.id == order_id)
            .options(joinedload(Order.items))
            .with_for_update(of=Order)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).unique().scalar_one_or_none()

    async def get_with_items(self, order_id: uuid.UUID) -> Order | None:
        statement = (
            select(Order)
            .where(Order.id == order_id)
            .options(selectinload(Order.items))
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def page_for_user(
        self, user_id: uuid.UUID, *, verified_email: str | None, offset: int, limit: int
    ) -> tuple[Sequence[Order], int]:
        base = select(Order).where(owned_by(user_id, verified_email))
        return await self._page(base, offset=offset, limit=limit, with_items=True)

    async def search(
        self,
        *,
        status: str | None,
        query: str | None,
        offset: int,
        limit: int,
        customer: tuple[uuid.UUID, str | None] | None = None,
        attention: bool | None = None,
    ) -> tuple[Sequence[Order], int]:
        base = select(Order)
        if attention is not None:
            base = base.where(
                Order.attention.is_not(None) if attention else Order.attention.is_(None)
            )
        if customer is not None:
            base = base.where(owned_by(*customer))
        if status:
            base = base.where(Order.status == status)
        if query:
            base = base.where(_matches(query))
        return await self._page(base, offset=offset, limit=limit, with_items=True)

    async def _page(
        self, base: Select[Order], *, offset: int, limit: int, with_items: bool
    ) -> tuple[Sequence[Order], int]:
        total = (
            await self.session.execute(select(func.count()).select_from(base.subquery()))
        ).scalar_one()
        statement = (
            base.order_by(Order.created_at.desc(), Order.id.desc()).offset(offset).limit(limit)
        )
        if with_items:
            statement = statement.options(selectinload(Order.items))
        rows: Sequence[Order] = (await self.session.execute(statement)).scalars().all()
        return rows, int(total)


def owned_by(user_id: uuid.UUID, verified_email: str | None) -> Any:
    """The person's orders: those placed signed in, and, when identity proved their mailbox,
    the guest orders placed with that address (before the account existed, or signed out).
    Both sides are indexed (``ix_orders_user_created``, ``ix_orders_email_lower``)."""
    if not verified_email:
        return Order.user_id == user_id
    return or_(
        Order.user_id == user_id,
        and_(Order.user_id.is_(None), func.lower(Order.email) == verified_email.strip().lower()),
    )


def _matches(query: str) -> Any:
    """Staff search: an order id (whole or its start), an email, or a tracking number."""
    text = query.strip()
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    conditions: list[Any] = [
        Order.email.ilike(pattern, escape="\\"),
        Order.tracking_number == text.upper(),
        Order.tracking_number == text,
    ]
    try:
        conditions.append(Order.id == uuid.UUID(text))
    except ValueError:
        compact = text.lower().replace("-", "")
        if 4 <= len(compact) <= 32 and all(c in "0123456789abcdef" for c in compact):
            conditions.append(func.replace(cast(Order.id, String), "-", "").like(compact + "%"))
    return or_(*conditions)


class OrderItemRepository:
    """Order item snapshots can be written once and read; there is no update or delete here
    (and the mapper and a database trigger refuse both)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_snapshots(self, rows: list[dict[str, Any]]) -> int:
        """Insert the snapshots that are not there yet; a replayed event adds nothing."""
        if not rows:
            return 0
        # The rows as parameters, not in .values(): SQLAlchemy never caches a statement whose
        # VALUES hold the rows (compiled again for every paid order: ~5 % of orders' CPU);
        # this one is compiled once and still sent as one multi-row INSERT (insertmanyvalues).
        statement = (
            insert(OrderItem)
            .on_conflict_do_nothing(constraint="uq_order_items_order_variant")
            .returning(OrderItem.id)
        )
        return len((await self.session.execute(statement, rows)).all())

    async def for_order(self, order_id: uuid.UUID) -> Sequence[OrderItem]:
        statement = (
            select(OrderItem).where(OrderItem.order_id == order_id).order_by(OrderItem.position)
        )
        return (await self.session.execute(statement)).scalars().all()


class StatusChangeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def record(
        self,
        order_id: uuid.UUID,
        from_status: str | None,
        to_status: str,
        *,
        actor: str,
        reason: str = "",
    ) -> None:
        self.session.add(
            OrderStatusChange(
                order_id=order_id,
                from_status=from_status,
                to_status=to_status,
                actor=actor[:120],
                reason=reason[:300],
            )
        )

    async def for_order(self, order_id: uuid.UUID) -> Sequence[OrderStatusChange]:
        statement = (
            select(OrderStatusChange)
            .where(OrderStatusChange.order_id == order_id)
            .order_by(OrderStatusChange.created_at, OrderStatusChange.id)
        )
        return (await self.session.execute(statement)).scalars().all()


class DeferredEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def defer(
        self, event_id: uuid.UUID, order_id: uuid.UUID, event_type: str, payload: dict[str, Any]
    ) -> None:
        statement = (
            insert(DeferredEvent)
            .values(event_id=event_id, order_id=order_id, event_type=event_type, payload=payload)
            .on_conflict_do_nothing(index_elements=[DeferredEvent.event_id])
        )
        await self.session.execute(statement)

    async def take(self, order_id: uuid.UUID) -> list[DeferredEvent]:
        """Remove and return the order's deferred events, oldest first."""
        statement = (
            delete(DeferredEvent)
            .where(DeferredEvent.order_id == order_id)
            .returning(DeferredEvent)
            .execution_options(synchronize_session=False)
        )
        rows = list((await self.session.execute(statement)).scalars().all())
        rows.sort(key=lambda row: (row.received_at, str(row.event_id)))
        return rows
