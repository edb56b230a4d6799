"""Every query the cart service makes. Nothing here commits: the request or handler does."""

from __future__ import annotations

import datetime as dt
import uuid

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from ember_shared.ids import new_id
from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert

from cart.models import Cart, CartItem, CartStatus

#: The predicate of ``uq_carts_active_user``; ON CONFLICT must name it to use that index.
ACTIVE_USER_CART = text("user_id IS NOT NULL AND status = 'active'")


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
                select(Cart.id, CartItem.product_id, CartItem.variant_id, CartItem.quantity)
                .outerjoin(CartItem, CartItem.cart_id == Cart.id)
                .where(
                    Cart.id == cart_id,
                    Cart.user_id.is_(None),
                    Cart.guest_token_hash == guest_token_hash,
                    Cart.status == CartStatus.ACTIVE,
                )
                .order_by(CartItem.created_at, CartItem.id)
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
        statement = (
            insert(Cart)
            .values(
                id=cart_id,
                user_id=None,
                status=CartStatus.ACTIVE,
                guest_token_hash=guest_token_hash,
            )
            .returning(Cart)
        )
        return (await self.session.scalars(statement)).one()

    async def touch(self, cart_id: uuid.UUID) -> None:
        await self.session.execute(
            update(Cart).where(Cart.id == cart_id).values(last_activity_at=func.now())
        )

    async def mark_merged(self, guest_id: uuid.UUID, into_id: uuid.UUID) -> bool:
        """Conditional: only an active guest cart becomes merged, so a merge happens once."""
        result = await self.session.execute(
            update(Cart)
            .where(Cart.id == guest_id, Cart.status == CartStatus.ACTIVE, Cart.user_id.is_(None))
            .values(status=CartStatus.MERGED, merged_into_id=into_id, last_activity_at=func.now())
            .returning(Cart.id)
        )
        return result.scalar_one_or_none() is not None

    async def mark_converted(self, cart_id: uuid.UUID, order_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            update(Cart)
            .where(Cart.id == cart_id, Cart.status == CartStatus.ACTIVE)
            .values(
                status=CartStatus.CONVERTED,
                converted_order_id=order_id,
                last_activity_at=func.now(),
            )
            .returning(Cart.id)
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
        statement = insert(CartItem).values(
            id=new_id(),
            cart_id=cart_id,
            product_id=product_id,
            variant_id=variant_id,
            quantity=quantity,
        )
        upsert = (
            statement.on_conflict_do_update(
                constraint="uq_cart_items_cart_variant",
                set_={"quantity": statement.excluded.quantity, "updated_at": func.now()},
            )
            .returning(CartItem)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(upsert)).one()

    async def remove(self, cart_id: uuid.UUID, variant_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            delete(CartItem)
            .where(CartItem.cart_id == cart_id, CartItem.variant_id == variant_id)
            .returning(CartItem.id)
        )
        return result.scalar_one_or_none() is not None

    async def remove_all(self, cart_id: uuid.UUID) -> int:
        result = await self.session.execute(
            delete(CartItem).where(CartItem.cart_id == cart_id).returning(CartItem.id)
        )
        return len(result.all())
