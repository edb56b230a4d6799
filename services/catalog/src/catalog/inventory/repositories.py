"""Every stock query. Stock changes are single conditional UPDATEs: the database, not a read
made earlier, decides whether there is enough (CHECKs stop anything below zero regardless)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Integer, Row, Table, Uuid, any_, bindparam, func, select, true, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.models import (
    RESERVATION_ACTIVE,
    RESERVATION_COMMITTED,
    RESERVATION_RELEASED,
    Inventory,
    Product,
    ProductImage,
    Reservation,
    ReservationLine,
    SubscriptionDelivery,
    Variant,
)


@dataclass(frozen=True)
class Stock:
    on_hand: int
    reserved: int
    #: The product of the variant (what the shopper read path caches by).
    product_id: uuid.UUID

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


_STOCK_COLUMNS = (Inventory.on_hand, Inventory.reserved, Inventory.product_id)


def _stock(row: Any) -> Stock | None:
    return Stock(row.on_hand, row.reserved, row.product_id) if row else None


def product_available() -> Any:
    """Units sellable now of the product in the enclosing query (``Product``): those of its
    best-stocked active variant, 0 without one (a listing says "sold out" only when every
    variant is)."""
    return func.coalesce(
        select(func.max(Inventory.on_hand - Inventory.reserved))
        .join(Variant, Variant.id == Inventory.variant_id)
        .where(Inventory.product_id == Product.id, Variant.active.is_(True))
        .correlate(Product)
        .scalar_subquery(),
        0,
    )


#: The tables of an order's path (a reservation, its lookup, its sale), for the statements
#: below: built on the tables, not the mapped classes, they run without the ORM's execution
#: (its compile state and row loading, for rows that are only read as tuples here).
_INVENTORY = cast(Table, Inventory.__table__)
_PRODUCTS = cast(Table, Product.__table__)
_VARIANTS = cast(Table, Variant.__table__)
_IMAGES = cast(Table, ProductImage.__table__)
_RESERVATIONS = cast(Table, Reservation.__table__)
_LINES = cast(Table, ReservationLine.__table__)
_STOCK = (_INVENTORY.c.on_hand, _INVENTORY.c.reserved, _INVENTORY.c.product_id)


def _lookup_statement(*, one: bool = False) -> Any:
    """Price, stock and picture of the variants ``:variant_ids`` (an array: one statement text,
    and one prepared statement per connection, whatever the number asked), or, when ``one``, of
    the variant ``:variant``.

    Why a form for one: Postgres plans a prepared statement for its parameters' values until a
    plan made for any values (generic) looks no dearer. Against an array it does not know it
    guesses ten elements, so its generic plan never looks as cheap as the one-variant plan and
    the statement was planned again at every execution (~0.3 ms of Postgres' CPU for the
    lookup, ~0.5 ms for the priced reservation, at every order with one line: most). With
    ``id = :variant`` both plans are alike and, from the sixth run on a connection, the
    generic one is kept."""
    products, variants, inventory, images = _PRODUCTS, _VARIANTS, _INVENTORY, _IMAGES
    image = (
        select(images.c.url)
        .where(images.c.product_id == products.c.id)
        .order_by(images.c.is_primary.desc(), images.c.position, images.c.id)
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(
            variants.c.id.label("variant_id"),
            products.c.id,
            products.c.slug,
            products.c.name,
            products.c.options,
            products.c.category_id,
            variants.c.sku,
            variants.c.option_values,
            variants.c.price,
            variants.c.weight_grams,
            products.c.currency,
            (products.c.active & variants.c.active).label("active"),
            func.coalesce(inventory.c.on_hand - inventory.c.reserved, 0).label("available"),
            image.label("image_url"),
        )
        .select_from(variants)
        .join(products, products.c.id == variants.c.product_id)
        .outerjoin(inventory, inventory.c.variant_id == variants.c.id)
        .where(
            variants.c.id == bindparam("variant", type_=Uuid())
            if one
            else variants.c.id == any_(bindparam("variant_ids", type_=ARRAY(Uuid())))
        )
    )


def _held(claimed: Any | None = None) -> tuple[Any, Any]:
    """The CTEs that hold ``:units`` of the active variant ``:variant`` of the active product
    ``:product`` for the reservation ``:reservation`` and write its line (see
    :meth:`InventoryRepository.reserve`). With ``claimed`` (the claim's CTE), only once the
    claim has made the reservation: the hold reads the claim's RETURNING, so the INSERT runs
    (and finds the order's reservation if one is there) before any row is held."""
    inventory, units = _INVENTORY, bindparam("units", type_=Integer())
    conditions = [
        inventory.c.variant_id == bindparam("variant", type_=Uuid()),
        inventory.c.product_id == bindparam("product", type_=Uuid()),
        inventory.c.on_hand - inventory.c.reserved >= units,
        inventory.c.product_id == _PRODUCTS.c.id,
        _PRODUCTS.c.active.is_(True),
        inventory.c.variant_id == _VARIANTS.c.id,
        _VARIANTS.c.active.is_(True),
    ]
    if claimed is not None:
        conditions.append(select(claimed.c.id).exists())
    held = (
        update(inventory)
        .where(*conditions)
        .values(updated_at=func.now(), reserved=inventory.c.reserved + units)
        .returning(*_STOCK)
        .cte("held")
    )
    line = (
        insert(_LINES)
        .from_select(
            ["reservation_id", "variant_id", "product_id", "quantity"],
            select(
                bindparam("reservation", type_=Uuid()),
                bindparam("variant", type_=Uuid()),
                held.c.product_id,
                units,
            ),
        )
        .cte("line")
    )
    return held, line


def _hold_statement() -> Any:
    held, line = _held()
    return select(held.c.on_hand, held.c.reserved, held.c.product_id).add_cte(line)


def _sell_reserved_statement() -> Any:
    units = bindparam("units", type_=Integer())
    return (
        update(_INVENTORY)
        .where(_INVENTORY.c.variant_id == bindparam("variant", type_=Uuid()))
        .values(
            updated_at=func.now(),
            on_hand=_INVENTORY.c.on_hand - units,
            reserved=_INVENTORY.c.reserved - units,
        )
        .returning(*_STOCK)
    )


def _open_statement(*, priced: bool, one: bool = False) -> Any:
    """A new reservation in one statement: the claim of the order (``INSERT ... ON CONFLICT
    (order_id) DO NOTHING``), the hold of its first line with that line written, and, when
    ``priced``, the lookup of the variants ``:variant_ids`` (or, when ``one``, of the held
    variant ``:variant`` alone: see :func:`_lookup_statement`) (read from the snapshot the
    statement began with: before the hold). No row when the order had a reservation already;
    otherwise one per variant looked up (or one), each with the claim and the hold's stock
    (nulls: the first line was short)."""
    reservations = _RESERVATIONS
    claimed = (
        insert(reservations)
        .values(
            id=bindparam("reservation", type_=Uuid()),
            order_id=bindparam("order", type_=Uuid()),
            expires_at=bindparam("expires", type_=reservations.c.expires_at.type),
            status=RESERVATION_ACTIVE,
        )
        .on_conflict_do_nothing(index_elements=[reservations.c.order_id])
        .returning(reservations.c.id)
        .cte("claimed")
    )
    held, line = _held(claimed)
    columns: list[Any] = [
        claimed.c.id.label("claimed_id"),
        held.c.on_hand.label("held_on_hand"),
        held.c.reserved.label("held_reserved"),
        held.c.product_id.label("held_product_id"),
    ]
    joined = claimed.outerjoin(held, true())
    if priced:
        looked_up = _lookup_statement(one=one).subquery("looked_up")
        columns.extend(looked_up.c)
        joined = joined.outerjoin(looked_up, true())
    return select(*columns).select_from(joined).add_cte(line)


def _sell_active_statement() -> Any:
    reservations, lines = _RESERVATIONS, _LINES
    sold = (
        update(reservations)
        .where(
            reservations.c.order_id == bindparam("order", type_=Uuid()),
            reservations.c.status == RESERVATION_ACTIVE,
        )
        .values(status=RESERVATION_COMMITTED, committed_at=func.now(), updated_at=func.now())
        .returning(reservations.c.id)
        .cte("sold")
    )
    return (
        select(sold.c.id, lines.c.variant_id, lines.c.quantity)
        .select_from(sold)
        .outerjoin(lines, lines.c.reservation_id == sold.c.id)
        .order_by(lines.c.variant_id)
    )


#: The statements every order sends (cart's lookup; checkout's priced reservation; the
#: payment's sale), built once: SQLAlchemy memoizes a statement's cache key on it, where one
#: built per call is constructed and walked for its key again each time.
_LOOKUP = _lookup_statement()
_LOOKUP_ONE = _lookup_statement(one=True)
_HOLD = _hold_statement()
_SELL_RESERVED = _sell_reserved_statement()
_OPEN = _open_statement(priced=False)
_OPEN_PRICED = _open_statement(priced=True)
_OPEN_PRICED_ONE = _open_statement(priced=True, one=True)
_SELL_ACTIVE = _sell_active_statement()


class InventoryRepository:
    """Stock rows, one per variant (a product's default variant has the product's id)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, variant_id: uuid.UUID, product_id: uuid.UUID, on_hand: int) -> None:
        await self.session.execute(
            insert(Inventory).values(
                variant_id=variant_id, product_id=product_id, on_hand=on_hand, reserved=0
            )
        )

    async def stock_of(self, variant_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Stock]:
        if not variant_ids:
            return {}
        rows = await self.session.execute(
            select(Inventory.variant_id, *_STOCK_COLUMNS).where(
                Inventory.variant_id.in_(variant_ids)
            )
        )
        return {row.variant_id: Stock(row.on_hand, row.reserved, row.product_id) for row in rows}

    async def lock(self, variant_id: uuid.UUID) -> Stock | None:
        row = (
            await self.session.execute(
                select(*_STOCK_COLUMNS).where(Inventory.variant_id == variant_id).with_for_update()
            )
        ).first()
        return _stock(row)

    async def _update(self, variant_id: uuid.UUID, *conditions: Any, **values: Any) -> Stock | None:
        row = (
            await self.session.execute(
                update(Inventory)
                .execution_options(synchronize_session=False)
                .where(Inventory.variant_id == variant_id, *conditions)
                .values(updated_at=func.now(), **values)
                .returning(*_STOCK_COLUMNS)
            )
        ).first()
        return _stock(row)

    async def set_on_hand(self, variant_id: uuid.UUID, on_hand: int) -> Stock | None:
        """Set on-hand stock unless units are reserved beyond it (then None)."""
        return await self._update(variant_id, Inventory.reserved <= on_hand, on_hand=on_hand)

    async def restock(self, variant_id: uuid.UUID, quantity: int) -> Stock | None:
        """Put ``quantity`` units back on the shelf (a refunded order's return); None when the
        variant has no stock row."""
        return await self._update(variant_id, on_hand=Inventory.on_hand + quantity)

    async def reserve(
        self,
        variant_id: uuid.UUID,
        product_id: uuid.UUID,
        quantity: int,
        reservation_id: uuid.UUID,
    ) -> Stock | None:
        """Hold ``quantity`` units of an active variant of an active product for
        ``reservation_id``, or None when they are not there (or the variant is not that
        product's). The reservation's line is written by the same statement (a data-modifying
        CTE), only when the units were held: one round trip per line instead of one more for
        the lines after them."""
        row = (
            await self.session.execute(
                _HOLD,
                {
                    "variant": variant_id,
                    "product": product_id,
                    "units": quantity,
                    "reservation": reservation_id,
                },
            )
        ).first()
        return _stock(row)

    async def sellable(self, variant_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Units sellable now per variant; archived and unknown ones have none."""
        rows = await self.session.execute(
            select(
                Variant.id,
                (Variant.active & Product.active).label("active"),
                Inventory.on_hand,
                Inventory.reserved,
            )
            .select_from(Variant)
            .join(Product, Product.id == Variant.product_id)
            .outerjoin(Inventory, Inventory.variant_id == Variant.id)
            .where(Variant.id.in_(variant_ids))
        )
        found = {
            row.id: (row.on_hand - row.reserved if row.active and row.on_hand is not None else 0)
            for row in rows
        }
        return {vid: found.get(vid, 0) for vid in variant_ids}

    async def active_of(self, variant_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bool]:
        """Whether each variant is on sale (False: it or its product is archived); unknown
        variants are absent."""
        if not variant_ids:
            return {}
        rows = await self.session.execute(
            select(Variant.id, (Variant.active & Product.active).label("active"))
            .join(Product, Product.id == Variant.product_id)
            .where(Variant.id.in_(variant_ids))
        )
        return {row.id: row.active for row in rows}

    async def unreserve(self, variant_id: uuid.UUID, quantity: int) -> Stock | None:
        return await self._update(variant_id, reserved=Inventory.reserved - quantity)

    async def sell_reserved(self, variant_id: uuid.UUID, quantity: int) -> Stock | None:
        row = (
            await self.session.execute(_SELL_RESERVED, {"variant": variant_id, "units": quantity})
        ).first()
        return _stock(row)

    async def sell_unreserved(self, variant_id: uuid.UUID, quantity: int) -> Stock | None:
        """Sell units nobody holds (a payment that arrived after its reservation lapsed, a
        subscription delivery), or None when they are not there."""
        return await self._update(
            variant_id,
            Inventory.on_hand - Inventory.reserved >= quantity,
            on_hand=Inventory.on_hand - quantity,
        )

    def _admin_columns(self) -> Any:
        return (
            select(
                Product.id.label("product_id"),
                Product.slug,
                Product.name,
                Product.active,
                Variant.id.label("variant_id"),
                Variant.sku,
                Variant.option_values,
                Variant.active.label("variant_active"),
                Inventory.on_hand,
                Inventory.reserved,
                Inventory.updated_at,
            )
            .select_from(Inventory)
            .join(Product, Product.id == Inventory.product_id)
            .join(Variant, Variant.id == Inventory.variant_id)
        )

    async def admin_page(
        self, *, limit: int, offset: int, low_stock_at: int | None, q: str | None
    ) -> tuple[Sequence[Row[Any]], int]:
        """Stock of every variant on sale (and of the default variant of a product sold
        without options), lowest first."""
        conditions: list[Any] = [Variant.active.is_(True)]
        if low_stock_at is not None:
            conditions.append(Inventory.on_hand - Inventory.reserved <= low_stock_at)
        if q:
            pattern = (
                "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            conditions.append(
                func.lower(Product.name).like(pattern, escape="\\")
                | func.lower(Product.slug).like(pattern, escape="\\")
                | func.lower(Variant.sku).like(pattern, escape="\\")
            )
        total = await self.session.scalar(
            select(func.count())
            .select_from(Inventory)
            .join(Product, Product.id == Inventory.product_id)
            .join(Variant, Variant.id == Inventory.variant_id)
            .where(*conditions)
        )
        rows: Sequence[Any] = (
            await self.session.execute(
                self._admin_columns()
                .where(*conditions)
                .order_by(
                    Inventory.on_hand - Inventory.reserved,
                    func.lower(Product.name),
                    Product.id,
                    Variant.position,
                    Variant.id,
                )
                .limit(limit)
                .offset(offset)
            )
        ).all()
        return rows, int(total or 0)

    async def rows_for(self, variant_ids: Sequence[uuid.UUID]) -> Sequence[Row[Any]]:
        rows: Sequence[Any] = (
            await self.session.execute(
                self._admin_columns()
                .where(Inventory.variant_id.in_(variant_ids))
                .order_by(Inventory.variant_id)
            )
        ).all()
        return rows

    async def lookup(self, variant_ids: Sequence[uuid.UUID]) -> Sequence[Row[Any]]:
        """Price, stock and picture of variants, with their products' names."""
        parameters: dict[str, Any]
        if len(variant_ids) == 1:
            statement, parameters = _LOOKUP_ONE, {"variant": variant_ids[0]}
        else:
            statement, parameters = _LOOKUP, {"variant_ids": list(variant_ids)}
        rows: Sequence[Row[Any]] = (await self.session.execute(statement, parameters)).all()
        return rows


@dataclass(frozen=True)
class ReservationRecord:
    id: uuid.UUID
    order_id: uuid.UUID
    status: str
    expires_at: dt.datetime
    #: (variant id, quantity), in variant-id order.
    lines: list[tuple[uuid.UUID, int]]
    #: The product of each variant held.
    products: dict[uuid.UUID, uuid.UUID]


@dataclass(frozen=True)
class Opened:
    """A reservation that one statement made: what its first line's hold left (None: the
    line was short) and the variants it looked up (the lookup's rows)."""

    first: Stock | None
    looked_up: list[Row[Any]]


class ReservationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def open(
        self,
        reservation_id: uuid.UUID,
        order_id: uuid.UUID,
        expires_at: dt.datetime,
        first: tuple[uuid.UUID, uuid.UUID, int],
        priced_variants: Sequence[uuid.UUID] | None,
    ) -> Opened | None:
        """Claim ``order_id`` and hold ``first`` (variant, product, quantity: the first line in
        the lock order) by one statement, the variants ``priced_variants`` looked up by it
        too; None when a reservation for the order exists (or is being made and then commits:
        the insert waits for the other transaction on the unique index), and nothing is held."""
        variant_id, product_id, quantity = first
        parameters: dict[str, Any] = {
            "reservation": reservation_id,
            "order": order_id,
            "expires": expires_at,
            "variant": variant_id,
            "product": product_id,
            "units": quantity,
        }
        if priced_variants is None:
            rows = (await self.session.execute(_OPEN, parameters)).all()
        elif list(priced_variants) == [variant_id]:
            rows = (await self.session.execute(_OPEN_PRICED_ONE, parameters)).all()
        else:
            parameters["variant_ids"] = list(priced_variants)
            rows = (await self.session.execute(_OPEN_PRICED, parameters)).all()
        if not rows:
            return None
        row = rows[0]
        held = (
            Stock(row.held_on_hand, row.held_reserved, row.held_product_id)
            if row.held_on_hand is not None
            else None
        )
        looked_up = [r for r in rows if r.variant_id is not None] if priced_variants else []
        return Opened(held, looked_up)

    async def by_order(self, order_id: uuid.UUID) -> ReservationRecord | None:
        row = (
            await self.session.execute(
                select(
                    Reservation.id, Reservation.order_id, Reservation.status, Reservation.expires_at
                ).where(Reservation.order_id == order_id)
            )
        ).first()
        if row is None:
            return None
        lines = (await self.lines_of([row.id])).get(row.id, [])
        return ReservationRecord(
            row.id,
            row.order_id,
            row.status,
            row.expires_at,
            [(v, q) for v, _, q in lines],
            {v: p for v, p, _ in lines},
        )

    async def lines_of(
        self, reservation_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[tuple[uuid.UUID, uuid.UUID, int]]]:
        """Each reservation's ``(variant id, product id, quantity)`` lines."""
        rows = await self.session.execute(
            select(
                ReservationLine.reservation_id,
                ReservationLine.variant_id,
                ReservationLine.product_id,
                ReservationLine.quantity,
            )
            .where(ReservationLine.reservation_id.in_(reservation_ids))
            .order_by(ReservationLine.reservation_id, ReservationLine.variant_id)
        )
        found: dict[uuid.UUID, list[tuple[uuid.UUID, uuid.UUID, int]]] = {}
        for row in rows:
            found.setdefault(row.reservation_id, []).append(
                (row.variant_id, row.product_id, row.quantity)
            )
        return found

    async def release(
        self, reservation_ids: Sequence[uuid.UUID], reason: str
    ) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """Move active reservations to released; the (id, order id) of those this call moved.

        The status condition makes each release happen once, however many callers race.
        """
        rows = await self.session.execute(
            update(Reservation)
            .execution_options(synchronize_session=False)
            .where(Reservation.id.in_(reservation_ids), Reservation.status == RESERVATION_ACTIVE)
            .values(
                status=RESERVATION_RELEASED,
                released_at=func.now(),
                release_reason=reason,
                updated_at=func.now(),
            )
            .returning(Reservation.id, Reservation.order_id)
        )
        return [(row.id, row.order_id) for row in rows]

    async def commit_active_sale(
        self, order_id: uuid.UUID
    ) -> tuple[uuid.UUID, list[tuple[uuid.UUID, int]]] | None:
        """Move the order's reservation from active to committed, and answer its id and its
        ``(variant id, quantity)`` lines; None when the order has no active reservation.

        One statement (the update and the read of the lines it moved, as a data-modifying CTE)
        where reading the reservation, then its lines, then updating it took three.
        """
        rows = (await self.session.execute(_SELL_ACTIVE, {"order": order_id})).all()
        if not rows:
            return None
        lines = [(row.variant_id, row.quantity) for row in rows if row.variant_id is not None]
        return rows[0].id, lines

    async def commit_sale(
        self, reservation_id: uuid.UUID, from_status: str = RESERVATION_ACTIVE
    ) -> bool:
        row = (
            await self.session.execute(
                update(Reservation)
                .execution_options(synchronize_session=False)
                .where(Reservation.id == reservation_id, Reservation.status == from_status)
                .values(
                    status=RESERVATION_COMMITTED, committed_at=func.now(), updated_at=func.now()
                )
                .returning(Reservation.id)
            )
        ).first()
        return row is not None

    async def expired(self, now: dt.datetime, limit: int) -> list[uuid.UUID]:
        """Active reservations past their expiry, locked; replicas skip each other's rows."""
        rows = await self.session.scalars(
            select(Reservation.id)
            .where(Reservation.status == RESERVATION_ACTIVE, Reservation.expires_at < now)
            .order_by(Reservation.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(rows)


class DeliveryRepository:
    """Subscription deliveries: one per order and per Stripe invoice."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self, order_id: uuid.UUID, subscription_id: uuid.UUID, stripe_invoice_id: str
    ) -> bool:
        """Claim the delivery of ``order_id``; False when it, or its invoice under another
        order id, was claimed already (a claim being made waits for its transaction on the
        unique index, and then conflicts if that one commits)."""
        row = (
            await self.session.execute(
                insert(SubscriptionDelivery)
                .values(
                    order_id=order_id,
                    subscription_id=subscription_id,
                    stripe_invoice_id=stripe_invoice_id,
                )
                .on_conflict_do_nothing()
                .returning(SubscriptionDelivery.order_id)
            )
        ).first()
        return row is not None

    async def record_short(self, order_id: uuid.UUID, units: int) -> None:
        await self.session.execute(
            update(SubscriptionDelivery)
            .execution_options(synchronize_session=False)
            .where(SubscriptionDelivery.order_id == order_id)
            .values(short=units)
        )
