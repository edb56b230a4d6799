"""Every query the orders service makes about orders, items, history and deferred events.

Repositories never commit: the request or the event handler owns the transaction.
"""

from __future__ import annotations

import typing
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from ember_shared.ids import new_id
from sqlalchemy import (
    Select,
    String,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    column,
    delete,
    false,
    func,
    null,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from orders.models import DeferredEvent, Order, OrderItem, OrderStatusChange

_ORDERS = typing.cast(Table, Order.__table__)
_ITEMS = typing.cast(Table, OrderItem.__table__)
_HISTORY = typing.cast(Table, OrderStatusChange.__table__)
_DEFERRED = typing.cast(Table, DeferredEvent.__table__)

#: What an order placed from checkout.started or payment.succeeded is inserted with (every one
#: given, so the statement is the same for every order).
PLACED_COLUMNS: tuple[str, ...] = (
    "id",
    "created_at",
    "status",
    "user_id",
    "email",
    "currency",
    "subtotal",
    "shipping_total",
    "total",
    "amount_refunded",
    "discount_total",
    "discount_code",
    "tax_total",
    "shipping_method",
    "shipping_name",
    "shipping_phone",
    "shipping_address",
    "notes",
    "checkout_session_id",
    "reservation_id",
    "cart_id",
    "payment_expires_at",
)
#: An item snapshot's columns as the services give them (its id is made here).
ITEM_COLUMNS: tuple[str, ...] = (
    "position",
    "product_id",
    "slug",
    "name",
    "image_url",
    "unit_price",
    "quantity",
    "line_total",
    "discount",
    "currency",
    "variant_id",
    "sku",
    "variant_title",
    "option_values",
)
#: What a payment may change on its order (:meth:`OrderRepository.settle_payment`).
PAYMENT_COLUMNS: tuple[str, ...] = (
    "status",
    "paid_at",
    "stripe_session_id",
    "payment_intent_id",
    "user_id",
    "tax_total",
    "total",
    "attention",
    "guest_link_hash",
    "sealed_order_url",
)


class StatusChange(NamedTuple):
    """A row of an order's history, as :class:`StatusChangeRepository` writes it."""

    order_id: uuid.UUID
    from_status: str | None
    to_status: str
    actor: str
    reason: str


def _place_statement() -> Any:
    """The order, its item snapshots and its first history row, in one statement: the items
    and the history row are written only when the order was (a data-modifying CTE reads the
    order's RETURNING), so a replayed event adds nothing. The items come as one JSON array."""
    placed = (
        insert(_ORDERS)
        .values(
            {name: bindparam(name, type_=_ORDERS.c[name].type) for name in PLACED_COLUMNS}
            # The model's Python-side default, which SQLAlchemy leaves out of a CTE's INSERT.
            | {"tracking_registered": false()}
        )
        .on_conflict_do_nothing(index_elements=[_ORDERS.c.id])
        .returning(_ORDERS.c.id)
        .cte("placed")
    )
    lines = (
        func.jsonb_to_recordset(cast(bindparam("items", type_=Text()), JSONB))
        .table_valued(*(column(name, _ITEMS.c[name].type) for name in ("id", *ITEM_COLUMNS)))
        .render_derived(name="line", with_types=True)
    )
    items = (
        insert(_ITEMS)
        .from_select(
            ["order_id", "id", *ITEM_COLUMNS],
            select(placed.c.id, *(lines.c[name] for name in ("id", *ITEM_COLUMNS))).select_from(
                placed.join(lines, true())
            ),
        )
        .on_conflict_do_nothing(constraint="uq_order_items_order_variant")
        .cte("items")
    )
    recorded = (
        insert(_HISTORY)
        .from_select(
            ["id", "order_id", "from_status", "to_status", "actor", "reason"],
            select(
                bindparam("history_id", type_=_HISTORY.c.id.type),
                placed.c.id,
                null(),
                bindparam("history_to", type_=_HISTORY.c.to_status.type),
                bindparam("history_actor", type_=_HISTORY.c.actor.type),
                bindparam("history_reason", type_=_HISTORY.c.reason.type),
            ).select_from(placed),
        )
        .cte("recorded")
    )
    return select(placed.c.id).add_cte(items, recorded)


def _lock_statement() -> Any:
    """The order locked for this transaction, with its items (one row each, in order)."""
    return (
        select(
            _ORDERS,
            *(item.label(f"item_{item.key}") for item in _ITEMS.c),
        )
        .select_from(_ORDERS.outerjoin(_ITEMS, _ITEMS.c.order_id == _ORDERS.c.id))
        .where(_ORDERS.c.id == bindparam("order_id", type_=_ORDERS.c.id.type))
        .order_by(_ITEMS.c.position)
        .with_for_update(of=_ORDERS)
    )


def _taken_deferred() -> Any:
    return (
        delete(_DEFERRED)
        .where(_DEFERRED.c.order_id == bindparam("order_id", type_=_DEFERRED.c.order_id.type))
        .returning(*_DEFERRED.c)
    )


def _history_insert() -> Any:
    return insert(_HISTORY).values(
        id=bindparam("history_id", type_=_HISTORY.c.id.type),
        order_id=bindparam("order_id", type_=_HISTORY.c.order_id.type),
        from_status=bindparam("history_from", type_=_HISTORY.c.from_status.type),
        to_status=bindparam("history_to", type_=_HISTORY.c.to_status.type),
        actor=bindparam("history_actor", type_=_HISTORY.c.actor.type),
        reason=bindparam("history_reason", type_=_HISTORY.c.reason.type),
    )


def _settle_statement(*, changed: bool, recorded: bool) -> Any:
    """What a payment writes after its checks, with the order's deferred events taken, in one
    statement: the order's changed columns (``changed``) and its history row (``recorded``).
    Its snapshot is taken after the order's lock was granted, so a deferred event committed by
    whoever held the lock before is among those taken."""
    taken = _taken_deferred().cte("taken")
    statement = select(*taken.c)
    if changed:
        written = (
            update(_ORDERS)
            .where(_ORDERS.c.id == bindparam("order_id", type_=_ORDERS.c.id.type))
            .values(
                {name: bindparam(name, type_=_ORDERS.c[name].type) for name in PAYMENT_COLUMNS}
                | {"updated_at": func.now()}
            )
            .cte("written")
        )
        statement = statement.add_cte(written)
    if recorded:
        statement = statement.add_cte(_history_insert().cte("recorded"))
    return statement


#: The statements every order sends, built once: SQLAlchemy memoizes a statement's cache key
#: on it, where one built per call (``insert(Order).values(**row)``) was walked for its key and
#: compiled again for every order.
_PLACE = _place_statement()
#: Held from before an order is placed until its transaction ends, and taken by an outcome
#: that may have to wait for its order (see :meth:`OrderRepository.wait_for_placing`).
#: Advisory locks are the database's, so the first key is this lock's own: no other lock of
#: the shop's shares its key space.
_PLACING = text(
    "SELECT pg_advisory_xact_lock(hashtext('orders.placing'), hashtext(CAST(:order_id AS text)))"
)
_LOCK = _lock_statement()
_TAKE_DEFERRED = _taken_deferred()
_SETTLE = {
    (changed, recorded): _settle_statement(changed=changed, recorded=recorded)
    for changed in (False, True)
    for recorded in (False, True)
}
_ORDER_KEYS = tuple(c.key for c in _ORDERS.c)
_ITEM_KEYS = tuple((f"item_{c.key}", c.key) for c in _ITEMS.c)
_DEFERRED_KEYS = tuple(c.key for c in _DEFERRED.c)


def _deferred_events(rows: Sequence[Any]) -> list[DeferredEvent]:
    """The taken rows as (detached) models, oldest first."""
    events = [DeferredEvent(**{key: getattr(row, key) for key in _DEFERRED_KEYS}) for row in rows]
    events.sort(key=lambda row: (row.received_at, str(row.event_id)))
    return events


class OrderRepository(SQLAlchemyAsyncRepository[Order]):
    model_type = Order

    async def place(
        self, values: Mapping[str, Any], items: list[dict[str, Any]], history: StatusChange
    ) -> bool:
        """Create the order (``values``: every one of :data:`PLACED_COLUMNS`) with its item
        snapshots (each with :data:`ITEM_COLUMNS`) and its first history row, unless it
        exists; True when this call created it.

        Two events may race to create one order (checkout.started and payment.succeeded are
        on different streams): the primary key decides, and the loser reads the winner's row.
        """
        await self.wait_for_placing(values["id"])
        lines = [{"id": new_id(), **item} for item in items]
        result = await self.session.execute(
            _PLACE,
            {
                **{name: values[name] for name in PLACED_COLUMNS},
                "items": msgspec.json.encode(lines).decode(),
                "history_id": new_id(),
                "history_to": history.to_status,
                "history_actor": history.actor,
                "history_reason": history.reason,
            },
        )
        return result.first() is not None

    async def wait_for_placing(self, order_id: uuid.UUID) -> None:
        """Wait until no other transaction is placing ``order_id``, and keep any from placing
        it until this transaction ends.

        An outcome that comes before its order (payment failed, checkout expired, a refund) is
        parked, and placing the order takes what is parked. Without this lock, an outcome
        handled while the order is being placed neither sees the order (not committed yet) nor
        is seen by the placing (its DELETE ran before the outcome's INSERT): it would stay
        parked for ever. With it, one of the two commits first and the other sees it.
        """
        await self.session.execute(_PLACING, {"order_id": str(order_id)})

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

    async def lock_for_payment(self, order_id: uuid.UUID) -> Order | None:
        """The order locked for this transaction, with its items, read in one Core statement
        and given as a model the session does not track: a payment writes what it changed with
        :meth:`settle_payment`, never by a flush."""
        rows = (await self.session.execute(_LOCK, {"order_id": order_id})).all()
        if not rows:
            return None
        order = Order(**{key: getattr(rows[0], key) for key in _ORDER_KEYS})
        items = [
            OrderItem(**{key: getattr(row, label) for label, key in _ITEM_KEYS})
            for row in rows
            if row.item_id is not None
        ]
        set_committed_value(order, "items", items)
        return order

    async def settle_payment(
        self, order: Order, *, changed: bool, history: StatusChange | None
    ) -> list[DeferredEvent]:
        """Write a payment's changes to ``order`` (locked by :meth:`lock_for_payment`): its
        :data:`PAYMENT_COLUMNS` when ``changed``, and its ``history`` row, and take (remove and
        return, oldest first) its deferred events, in one statement."""
        params: dict[str, Any] = {"order_id": order.id}
        if changed:
            params |= {name: getattr(order, name) for name in PAYMENT_COLUMNS}
        if history is not None:
            params |= {
                "history_id": new_id(),
                "history_from": history.from_status,
                "history_to": history.to_status,
                "history_actor": history.actor,
                "history_reason": history.reason,
            }
        statement = _SETTLE[changed, history is not None]
        return _deferred_events((await self.session.execute(statement, params)).all())

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

    @staticmethod
    def change(
        order_id: uuid.UUID,
        from_status: str | None,
        to_status: str,
        *,
        actor: str,
        reason: str = "",
    ) -> StatusChange:
        """A history row, cut to its columns' lengths, for :meth:`write` or a statement that
        writes it with the order (:meth:`OrderRepository.place`, ``settle_payment``)."""
        return StatusChange(order_id, from_status, to_status, actor[:120], reason[:300])

    def record(
        self,
        order_id: uuid.UUID,
        from_status: str | None,
        to_status: str,
        *,
        actor: str,
        reason: str = "",
    ) -> None:
        self.write(self.change(order_id, from_status, to_status, actor=actor, reason=reason))

    def write(self, change: StatusChange) -> None:
        self.session.add(OrderStatusChange(**change._asdict()))

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
        """Remove and return the order's deferred events, oldest first (a Core statement: the
        ORM's DELETE ... RETURNING of models cost more than the rest of a started order)."""
        rows = (await self.session.execute(_TAKE_DEFERRED, {"order_id": order_id})).all()
        return _deferred_events(rows)
