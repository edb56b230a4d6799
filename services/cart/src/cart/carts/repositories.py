"""Every query the cart service makes. Nothing here commits: the request or handler does.

The statements of a purchase (a guest's first add, checkout's resolve, the conversion after
payment) are built once, on the tables, with bound parameters: each call then skips building
the statement, computing its cache key and the ORM's bulk-DML and loading machinery, which were
most of the cart's CPU per paid order (``bench/notes/cart-cpu.md``). What they return is the
same model the ORM would have loaded (not attached to the session: nothing here writes through
the session's unit of work).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from ember_shared.ids import new_id
from sqlalchemy import Table, bindparam, delete, func, or_, select, text, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import CursorResult

from cart.models import Cart, CartItem, CartStatus

#: The predicate of ``uq_carts_active_user``; ON CONFLICT must name it to use that index.
ACTIVE_USER_CART = text("user_id IS NOT NULL AND status = 'active'")

CARTS = cast(Table, Cart.__table__)
LINES = cast(Table, CartItem.__table__)

_CREATE_GUEST = (
    insert(CARTS)
    .values(
        id=bindparam("cart_id"),
        user_id=None,
        status=CartStatus.ACTIVE,
        guest_token_hash=bindparam("token_hash"),
    )
    .returning(*CARTS.c)
)
_new_guest_cart = _CREATE_GUEST.cte("new_cart")
_first_line = (
    insert(LINES)
    .values(
        id=bindparam("line_id"),
        cart_id=select(_new_guest_cart.c.id).scalar_subquery(),
        product_id=bindparam("product_id"),
        variant_id=bindparam("variant_id"),
        quantity=bindparam("quantity"),
    )
    .returning(*LINES.c)
    .cte("first_line")
)
#: The cart's columns, then its first line's.
_CREATE_GUEST_WITH_LINE = select(
    *(column.label(f"cart_{column.key}") for column in _new_guest_cart.c),
    *(column.label(f"line_{column.key}") for column in _first_line.c),
).select_from(_new_guest_cart.join(_first_line, true()))
_CART_KEYS = [column.key for column in CARTS.c]
_LINE_KEYS = [column.key for column in LINES.c]
_ACTIVE_GUEST_LINES = (
    select(CARTS.c.id, LINES.c.product_id, LINES.c.variant_id, LINES.c.quantity)
    .select_from(CARTS.outerjoin(LINES, LINES.c.cart_id == CARTS.c.id))
    .where(
        CARTS.c.id == bindparam("cart_id"),
        CARTS.c.user_id.is_(None),
        CARTS.c.guest_token_hash == bindparam("token_hash"),
        CARTS.c.status == CartStatus.ACTIVE,
    )
    .order_by(LINES.c.created_at, LINES.c.id)
)
_TOUCH = update(CARTS).where(CARTS.c.id == bindparam("cart_id")).values(last_activity_at=func.now())
_MARK_MERGED = (
    update(CARTS)
    .where(
        CARTS.c.id == bindparam("cart_id"),
        CARTS.c.status == CartStatus.ACTIVE,
        CARTS.c.user_id.is_(None),
    )
    .values(
        status=CartStatus.MERGED,
        merged_into_id=bindparam("into_id"),
        last_activity_at=func.now(),
    )
    .returning(CARTS.c.id)
)
_MARK_CONVERTED = (
    update(CARTS)
    .where(CARTS.c.id == bindparam("cart_id"), CARTS.c.status == CartStatus.ACTIVE)
    .values(
        status=CartStatus.CONVERTED,
        converted_order_id=bindparam("order_id"),
        last_activity_at=func.now(),
    )
    .returning(CARTS.c.id)
)
_new_line = insert(LINES).values(
    id=bindparam("line_id"),
    cart_id=bindparam("cart_id"),
    product_id=bindparam("product_id"),
    variant_id=bindparam("variant_id"),
    quantity=bindparam("quantity"),
)
_SET_QUANTITY = _new_line.on_conflict_do_update(
    constraint="uq_cart_items_cart_variant",
    set_={"quantity": _new_line.excluded.quantity, "updated_at": func.now()},
).returning(*LINES.c)
_REMOVE_LINE = (
    delete(LINES)
    .where(LINES.c.cart_id == bindparam("cart_id"), LINES.c.variant_id == bindparam("variant_id"))
    .returning(LINES.c.id)
)
_REMOVE_ALL_LINES = delete(LINES).where(LINES.c.cart_id == bindparam("cart_id"))


def _changed(result: Any) -> int:
    """How many rows an UPDATE or DELETE changed (the driver's count, no rows sent back)."""
    return cast(CursorResult[Any], result).rowcount


class CartRepository(SQLAlchemyAsyncRepository[Cart]):
    model_type = Cart

    async def active_for_user(self, user_id: uuid.UUID, *, lock: bool = False) -> Cart | None:
        statement = select(Cart).where(Cart.user_id == user_id, Cart.status == CartStatus.ACTIVE)
        if lock:
            statement = statement.with_for_update()
        statement = statement.execution_options(populate_existing=True)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def active_guest(
        self, cart_id: uuid.UUID, guest_token_hash: str, *, lock: bool = False
    ) -> Cart | None:
        statement = select(Cart).where(
            Cart.id == cart_id,
            Cart.user_id.is_(None),
            Cart.guest_token_hash == guest_token_hash,
            Cart.status == CartStatus.ACTIVE,
        )
        if lock:
            statement = statement.with_for_update()
        statement = statement.execution_options(populate_existing=True)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def active_guest_lines(
        self, cart_id: uuid.UUID, guest_token_hash: str
    ) -> tuple[uuid.UUID, list[tuple[uuid.UUID, uuid.UUID, int]]] | None:
        """The active guest cart's id and its ``(product id, variant id, quantity)`` lines in
        cart order, in one statement (the cart, then its lines, took two); None when the token
        names no active guest cart."""
        rows = (
            await self.session.execute(
                _ACTIVE_GUEST_LINES, {"cart_id": cart_id, "token_hash": guest_token_hash}
            )
        ).all()
        if not rows:
            return None
        lines = [(r.product_id, r.variant_id, r.quantity) for r in rows if r.variant_id is not None]
        return rows[0].id, lines

    async def lock(self, cart_id: uuid.UUID) -> Cart | None:
        """The cart, row-locked until the transaction ends: every write to a cart takes this
        first, so concurrent writes (and a merge, and a payment) apply one after another."""
        statement = (
            select(Cart)
            .where(Cart.id == cart_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def lock_or_create_for_user(self, user_id: uuid.UUID) -> Cart:
        """The shopper's active cart, made if missing, row-locked. Safe against a concurrent
        request making it too: the partial unique index decides and the loser reads the winner's."""
        await self.session.execute(
            insert(Cart)
            .values(id=new_id(), user_id=user_id, status=CartStatus.ACTIVE)
            .on_conflict_do_nothing(index_elements=["user_id"], index_where=ACTIVE_USER_CART)
        )
        cart = await self.active_for_user(user_id, lock=True)
        assert cart is not None, "the insert or the conflicting row makes it exist"
        return cart

    async def create_guest(self, cart_id: uuid.UUID, guest_token_hash: str) -> Cart:
        # One INSERT ... RETURNING: the row with its server defaults, not a flush then a refresh.
        row = (
            await self.session.execute(
                _CREATE_GUEST, {"cart_id": cart_id, "token_hash": guest_token_hash}
            )
        ).one()
        return Cart(**row._mapping)

    async def create_guest_with_line(
        self,
        cart_id: uuid.UUID,
        guest_token_hash: str,
        product_id: uuid.UUID,
        variant_id: uuid.UUID,
        quantity: int,
    ) -> tuple[Cart, CartItem]:
        """A new guest cart and its first line, in one statement (two INSERTs took two round
        trips). Nothing else can reach the cart before the commit, so nothing to lock."""
        row = (
            await self.session.execute(
                _CREATE_GUEST_WITH_LINE,
                {
                    "cart_id": cart_id,
                    "token_hash": guest_token_hash,
                    "line_id": new_id(),
                    "product_id": product_id,
                    "variant_id": variant_id,
                    "quantity": quantity,
                },
            )
        ).one()
        cart = Cart(**dict(zip(_CART_KEYS, row[: len(_CART_KEYS)], strict=True)))
        line = CartItem(**dict(zip(_LINE_KEYS, row[len(_CART_KEYS) :], strict=True)))
        return cart, line

    async def touch(self, cart_id: uuid.UUID) -> None:
        await self.session.execute(_TOUCH, {"cart_id": cart_id})

    async def mark_merged(self, guest_id: uuid.UUID, into_id: uuid.UUID) -> bool:
        """Conditional: only an active guest cart becomes merged, so a merge happens once."""
        result = await self.session.execute(_MARK_MERGED, {"cart_id": guest_id, "into_id": into_id})
        return result.scalar_one_or_none() is not None

    async def mark_converted(self, cart_id: uuid.UUID, order_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            _MARK_CONVERTED, {"cart_id": cart_id, "order_id": order_id}
        )
        return result.scalar_one_or_none() is not None

    async def delete_stale(self, older_than: dt.datetime, limit: int) -> int:
        """Guest carts nobody touched since ``older_than`` (their cookie has expired), and
        merged or converted carts as old: nothing can reach them any more."""
        stale = (
            select(Cart.id)
            .where(
                Cart.last_activity_at < older_than,
                or_(Cart.user_id.is_(None), Cart.status != CartStatus.ACTIVE),
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        result = await self.session.execute(
            delete(Cart).where(Cart.id.in_(stale)).returning(Cart.id)
        )
        return len(result.all())


class CartItemRepository(SQLAlchemyAsyncRepository[CartItem]):
    model_type = CartItem

    async def lines(self, cart_id: uuid.UUID) -> list[CartItem]:
        statement = (
            select(CartItem)
            .where(CartItem.cart_id == cart_id)
            .order_by(CartItem.created_at, CartItem.id)
            .execution_options(populate_existing=True)
        )
        return list((await self.session.execute(statement)).scalars())

    async def line(self, cart_id: uuid.UUID, variant_id: uuid.UUID) -> CartItem | None:
        statement = (
            select(CartItem)
            .where(CartItem.cart_id == cart_id, CartItem.variant_id == variant_id)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def set_quantity(
        self, cart_id: uuid.UUID, product_id: uuid.UUID, variant_id: uuid.UUID, quantity: int
    ) -> CartItem:
        """Insert the line of a variant or set its quantity (the caller holds the cart's lock);
        the line as it is now."""
        row = (
            await self.session.execute(
                _SET_QUANTITY,
                {
                    "line_id": new_id(),
                    "cart_id": cart_id,
                    "product_id": product_id,
                    "variant_id": variant_id,
                    "quantity": quantity,
                },
            )
        ).one()
        return CartItem(**row._mapping)

    async def remove(self, cart_id: uuid.UUID, variant_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            _REMOVE_LINE, {"cart_id": cart_id, "variant_id": variant_id}
        )
        return result.scalar_one_or_none() is not None

    async def remove_all(self, cart_id: uuid.UUID) -> int:
        return _changed(await self.session.execute(_REMOVE_ALL_LINES, {"cart_id": cart_id}))
