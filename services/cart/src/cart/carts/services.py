"""The cart's rules: whose cart a request reaches, what may go in it, and the merge at sign-in.

A request reaches exactly one cart: the signed-in shopper's (found by user id), or else the guest
cart its signed ``ember_cart`` cookie names. Nothing else selects a cart, so no request can reach
another shopper's. Every write locks the cart row first; quantities are checked against the
per-line limit and against what catalog can sell now. Prices are never stored: a cart is priced
from catalog each time it is shown. Nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import structlog
from ember_shared.contracts.cart import ResolvedCart, ResolvedLine
from ember_shared.contracts.catalog import LookupProduct
from ember_shared.ids import new_id
from ember_shared.problems import Problem
from sqlalchemy.ext.asyncio import AsyncSession

from cart.carts.cookies import CookieSigner, token_hash
from cart.carts.repositories import CartItemRepository, CartRepository
from cart.carts.schemas import (
    CartLimits,
    CartLine,
    CartView,
    MergeAdjustment,
    MergeSummary,
    SetLine,
)
from cart.catalog import CatalogClient, CatalogUnavailable
from cart.models import Cart, CartItem, CartStatus
from cart.settings import CartSettings

log = structlog.get_logger("cart")

MergeReason = Literal["quantity-limit", "stock", "unavailable", "cart-full"]


@dataclass(frozen=True)
class Shopper:
    """Who is asking: a signed-in shopper's id (from a verified token), and the raw guest
    cookie the request carried, if any."""

    user_id: uuid.UUID | None
    cart_cookie: str | None


@dataclass
class Opened:
    """The cart a request reached, and what to tell the browser about the guest cookie."""

    cart: Cart | None
    set_cookie: str | None = None
    clear_cookie: bool = False
    created: bool = False
    merge: MergeSummary | None = None
    #: Made by this request's own transaction (a new guest cart): no other transaction can
    #: reach it before the commit, so it needs no lock, has no lines yet and was active now.
    fresh: bool = False
    #: The cart's lines as the request's write left them, when it knows them (the answer
    #: need not read them again).
    lines: list[CartItem] | None = None


def catalog_down() -> Problem:
    return Problem(
        503,
        "catalog-unavailable",
        "Prices and stock cannot be checked right now. Try again in a moment.",
        title="Catalog unavailable",
        headers={"Retry-After": "5"},
    )


def product_not_found(product_id: uuid.UUID) -> Problem:
    return Problem(
        404,
        "product-not-found",
        "No product with this id is sold here.",
        title="Not found",
        product_id=str(product_id),
    )


def not_in_cart(product_id: uuid.UUID) -> Problem:
    return Problem(
        404,
        "not-in-cart",
        "This product is not in your cart.",
        title="Not found",
        product_id=str(product_id),
    )


class CartService:
    def __init__(
        self,
        session: AsyncSession,
        catalog: CatalogClient,
        settings: CartSettings,
        signer: CookieSigner,
    ) -> None:
        self.carts = CartRepository(session=session)
        self.items = CartItemRepository(session=session)
        self.catalog = catalog
        self.settings = settings
        self.signer = signer
        #: What catalog said of each variant during this request (the service is per request).
        self._looked_up: dict[uuid.UUID, LookupProduct] = {}

    @property
    def limit(self) -> int:
        return self.settings.max_quantity_per_line

    # --- finding the cart -----------------------------------------------------------------

    async def guest_cart(self, cookie: str | None) -> Cart | None:
        """The active guest cart a genuine cookie names; a forged, stale or foreign one is none."""
        cart_id = self.signer.verify(cookie)
        if cookie is None or cart_id is None:
            return None
        return await self.carts.active_guest(cart_id, token_hash(cookie))

    async def open(self, shopper: Shopper, *, create: bool, strict_merge: bool = False) -> Opened:
        """The cart this shopper reaches; with ``create``, one is made when there is none.

        A signed-in shopper who still carries a guest cookie gets the guest cart merged into
        theirs (or, when catalog cannot be asked, later; ``strict_merge`` refuses instead).
        """
        guest = await self.guest_cart(shopper.cart_cookie)
        stale_cookie = shopper.cart_cookie is not None and guest is None
        if shopper.user_id is not None:
            opened = Opened(cart=None, clear_cookie=stale_cookie)
            if guest is not None:
                summary = await self._merge(shopper.user_id, guest, strict=strict_merge)
                if summary is not None:
                    opened.merge = summary
                    opened.clear_cookie = True
            opened.cart = await self.carts.active_for_user(shopper.user_id)
            if opened.cart is None and create:
                opened.cart = await self.carts.lock_or_create_for_user(shopper.user_id)
                opened.created = True
            return opened
        if guest is not None:
            return Opened(cart=guest)
        opened = Opened(cart=None, clear_cookie=stale_cookie)
        if create:
            cart_id = new_id()
            value = self.signer.sign(cart_id)
            opened.cart = await self.carts.create_guest(cart_id, token_hash(value))
            self._made_for_guest(opened, value)
        return opened

    @staticmethod
    def _made_for_guest(opened: Opened, cookie: str) -> None:
        opened.set_cookie = cookie
        opened.clear_cookie = False
        opened.created = True
        opened.fresh = True

    async def _open_with_first_line(
        self, opened: Opened, product_id: uuid.UUID, variant_id: uuid.UUID, quantity: int
    ) -> None:
        """A guest without a cart adding: the cart is made with its first line."""
        cart_id = new_id()
        value = self.signer.sign(cart_id)
        opened.cart, line = await self.carts.create_guest_with_line(
            cart_id, token_hash(value), product_id, variant_id, quantity
        )
        opened.lines = [line]
        self._made_for_guest(opened, value)

    async def _lock(self, opened: Opened) -> Cart:
        assert opened.cart is not None
        cart = await self.carts.lock(opened.cart.id)
        if cart is None or cart.status != CartStatus.ACTIVE:
            # Merged or paid for between our read and our lock: the shopper should look again.
            raise Problem(
                409, "cart-changed", "Your cart changed while this ran. Look at it and try again."
            )
        opened.cart = cart
        return cart

    async def _written(self, opened: Opened, shopper: Shopper) -> None:
        assert opened.cart is not None
        if not opened.fresh:
            # A fresh cart's last_activity_at is its insert's now() already.
            await self.carts.touch(opened.cart.id)
        if opened.cart.user_id is None and opened.set_cookie is None and shopper.cart_cookie:
            # Each guest write renews the cookie, so an active guest keeps their cart.
            opened.set_cookie = shopper.cart_cookie

    # --- merge ----------------------------------------------------------------------------

    async def merge(self, shopper: Shopper) -> Opened:
        """``POST /api/cart/merge``: merge now, or say why nothing was merged."""
        assert shopper.user_id is not None
        opened = await self.open(shopper, create=False, strict_merge=True)
        if opened.merge is None:
            opened.merge = MergeSummary(merged=False)
        return opened

    async def _merge(self, user_id: uuid.UUID, guest: Cart, *, strict: bool) -> MergeSummary | None:
        """Move a guest cart's lines into the shopper's cart, once.

        Quantities add up, capped by the per-line limit and by what catalog can sell now (a line
        already in the shopper's cart is never lowered). A line catalog does not sell now moves
        over as it is, to be shown flagged, unless the shopper has it already. Two requests
        merging at once merge once: the shopper's cart is locked, then the guest cart, and only
        the request that still finds the guest cart active moves its lines.
        """
        preview = await self.items.lines(guest.id)
        products: dict[uuid.UUID, LookupProduct] = {}
        if preview:
            try:
                products = await self._lookup(
                    (line.product_id, line.variant_id) for line in preview
                )
            except CatalogUnavailable as exc:
                if strict:
                    raise catalog_down() from exc
                log.info("cart_merge_deferred", guest_cart_id=str(guest.id))
                return None
        target = await self.carts.lock_or_create_for_user(user_id)
        assert guest.guest_token_hash is not None
        if await self.carts.active_guest(guest.id, guest.guest_token_hash, lock=True) is None:
            return MergeSummary(merged=False, from_cart_id=guest.id)
        guest_lines = await self.items.lines(guest.id)
        have = {line.variant_id: line.quantity for line in await self.items.lines(target.id)}
        line_count = len(have)
        adjustments: list[MergeAdjustment] = []
        moved = 0
        for line in guest_lines:
            before = have.get(line.variant_id, 0)
            quantity, reason = self._merged_quantity(
                before, line.quantity, products.get(line.variant_id)
            )
            if before == 0 and quantity > 0 and line_count >= self.settings.max_lines:
                quantity, reason = 0, "cart-full"
            if quantity > before:
                await self.items.set_quantity(target.id, line.product_id, line.variant_id, quantity)
                line_count += before == 0
                have[line.variant_id] = quantity
                moved += 1
            added = max(quantity - before, 0)
            if added < line.quantity:
                adjustments.append(
                    MergeAdjustment(
                        product_id=line.product_id,
                        variant_id=line.variant_id,
                        requested=line.quantity,
                        added=added,
                        quantity=max(quantity, before),
                        reason=reason,
                    )
                )
        await self.items.remove_all(guest.id)
        await self.carts.mark_merged(guest.id, target.id)
        await self.carts.touch(target.id)
        log.info(
            "cart_merged",
            guest_cart_id=str(guest.id),
            cart_id=str(target.id),
            lines=moved,
            adjusted=len(adjustments),
        )
        return MergeSummary(
            merged=True, from_cart_id=guest.id, lines_merged=moved, adjustments=adjustments
        )

    def _merged_quantity(
        self, before: int, incoming: int, product: LookupProduct | None
    ) -> tuple[int, MergeReason]:
        if product is None or product.sellable_now == 0:
            return (before if before else min(incoming, self.limit)), "unavailable"
        sellable = product.sellable_now
        cap = max(min(self.limit, sellable), before)
        reason: MergeReason = (
            "quantity-limit" if sellable >= self.limit or before >= self.limit else "stock"
        )
        return min(before + incoming, cap), reason

    # --- writes ---------------------------------------------------------------------------

    def _check_limit(self, quantity: int, in_cart: int = 0) -> None:
        if quantity > self.limit:
            raise Problem(
                422,
                "quantity-limit",
                f"A cart line holds at most {self.limit} of a product.",
                title="Quantity over the limit",
                max_quantity=self.limit,
                in_cart=in_cart,
            )

    async def _products(
        self, lines: list[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[uuid.UUID, LookupProduct]:
        """What catalog sells now of each ``(product id, variant id)``, by variant id."""
        try:
            return await self._lookup(lines)
        except CatalogUnavailable as exc:
            raise catalog_down() from exc

    async def _lookup(
        self, lines: Iterable[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[uuid.UUID, LookupProduct]:
        """Catalog asked once per variant and request: the cart a write answers with shows what
        that write checked, so adding a line costs one lookup, not two."""
        wanted = list(lines)
        missing = [(p, v) for p, v in wanted if v not in self._looked_up]
        if missing:
            self._looked_up.update(await self.catalog.lookup(missing))
        return {v: self._looked_up[v] for _, v in wanted if v in self._looked_up}

    def _check_sellable(self, product: LookupProduct, wanted: int, in_cart: int) -> None:
        if not product.active:
            raise Problem(
                409,
                "product-archived",
                "This product is no longer sold.",
                product_id=str(product.id),
            )
        if product.sellable_now == 0:
            raise Problem(409, "sold-out", "This product is sold out.", product_id=str(product.id))
        if wanted > product.sellable_now:
            raise Problem(
                409,
                "insufficient-stock",
                f"Only {product.sellable_now} can be bought now.",
                title="Not enough in stock",
                product_id=str(product.id),
                available=product.sellable_now,
                in_cart=in_cart,
                requested=wanted,
            )

    def _check_room(self, line_count: int) -> None:
        if line_count >= self.settings.max_lines:
            raise Problem(
                409,
                "cart-full",
                f"A cart holds at most {self.settings.max_lines} different products.",
                title="Cart full",
                max_lines=self.settings.max_lines,
            )

    async def ensure(self, shopper: Shopper) -> Opened:
        """``POST /api/cart``: the shopper's cart, made now if there is none."""
        opened = await self.open(shopper, create=True)
        await self._lock(opened)
        await self._written(opened, shopper)
        return opened

    async def add_item(
        self,
        shopper: Shopper,
        product_id: uuid.UUID,
        quantity: int,
        variant_id: uuid.UUID | None = None,
    ) -> Opened:
        """Add ``quantity`` of a variant of a product (none named: its default variant, which
        has the product's id)."""
        self._check_limit(quantity)
        variant_id = variant_id or product_id
        product = (await self._products([(product_id, variant_id)])).get(variant_id)
        if product is None or product.id != product_id:
            raise product_not_found(product_id)
        self._check_sellable(product, quantity, 0)
        # A guest without a cart gets it made below, with the line, in one statement.
        opened = await self.open(shopper, create=shopper.user_id is not None)
        if opened.cart is None:
            self._check_room(0)
            await self._open_with_first_line(opened, product_id, variant_id, quantity)
            await self._written(opened, shopper)
            return opened
        cart = await self._lock(opened)
        # One read of the lines serves the room check, the line's quantity and the answer.
        lines = await self.items.lines(cart.id)
        line = next((item for item in lines if item.variant_id == variant_id), None)
        in_cart = line.quantity if line else 0
        if line is None:
            self._check_room(len(lines))
        self._check_limit(in_cart + quantity, in_cart)
        self._check_sellable(product, in_cart + quantity, in_cart)
        written = await self.items.set_quantity(cart.id, product_id, variant_id, in_cart + quantity)
        opened.lines = (
            [written if item.variant_id == variant_id else item for item in lines]
            if line is not None
            else [*lines, written]
        )
        await self._written(opened, shopper)
        return opened

    async def set_quantity(self, shopper: Shopper, variant_id: uuid.UUID, quantity: int) -> Opened:
        """Set the quantity of the line of ``variant_id`` (a product's id: its default)."""
        self._check_limit(quantity)
        opened = await self.open(shopper, create=False)
        if opened.cart is None:
            raise not_in_cart(variant_id)
        cart = await self._lock(opened)
        line = await self.items.line(cart.id, variant_id)
        if line is None:
            raise not_in_cart(variant_id)
        if quantity == 0:
            await self.items.remove(cart.id, variant_id)
        else:
            if quantity > line.quantity:
                # Only more of something needs catalog; less is always allowed.
                product = (await self._products([(line.product_id, variant_id)])).get(variant_id)
                if product is None:
                    raise product_not_found(line.product_id)
                self._check_sellable(product, quantity, line.quantity)
            await self.items.set_quantity(cart.id, line.product_id, variant_id, quantity)
        await self._written(opened, shopper)
        return opened

    def _check_entries(self, lines: list[SetLine]) -> None:
        seen: set[uuid.UUID] = set()
        for entry in lines:
            if _key(entry) in seen:
                raise Problem(
                    422,
                    "duplicate-line",
                    "Each product (or variant) may appear once.",
                    product_id=str(entry.product_id),
                )
            seen.add(_key(entry))
            self._check_limit(entry.quantity)

    async def set_lines(self, shopper: Shopper, lines: list[SetLine]) -> Opened:
        """Set many quantities at once, all or nothing (0 removes; new products are added)."""
        self._check_entries(lines)
        opened = await self.open(shopper, create=any(entry.quantity for entry in lines))
        if opened.cart is None:
            return opened
        cart = await self._lock(opened)
        items = await self.items.lines(cart.id)
        have = {line.variant_id: line.quantity for line in items}
        of_product = {line.variant_id: line.product_id for line in items}
        if any(of_product.get(_key(e), e.product_id) != e.product_id for e in lines):
            raise Problem(422, "duplicate-line", "A variant is named with a product it is not of.")
        growing = [e for e in lines if e.quantity > have.get(_key(e), 0)]
        products = (
            await self._products([(e.product_id, _key(e)) for e in growing]) if growing else {}
        )
        refused: list[dict[str, object]] = []
        for entry in growing:
            product = products.get(_key(entry))
            if product is not None and product.id != entry.product_id:
                product = None
            sellable = product.sellable_now if product else 0
            if entry.quantity > sellable:
                refused.append(
                    {
                        "product_id": str(entry.product_id),
                        "variant_id": str(_key(entry)),
                        "requested": entry.quantity,
                        "available": sellable,
                        "reason": _refusal(product),
                    }
                )
        if refused:
            raise Problem(
                409,
                "insufficient-stock",
                "Some quantities cannot be bought now; nothing was changed.",
                title="Not enough in stock",
                unavailable=refused,
            )
        after = {**have, **{_key(e): e.quantity for e in lines}}
        new_lines = sum(1 for pid, q in after.items() if q > 0 and pid not in have)
        if new_lines and sum(1 for q in after.values() if q > 0) > self.settings.max_lines:
            self._check_room(self.settings.max_lines)
        for entry in lines:
            if entry.quantity == 0:
                await self.items.remove(cart.id, _key(entry))
            elif entry.quantity != have.get(_key(entry)):
                await self.items.set_quantity(
                    cart.id, entry.product_id, _key(entry), entry.quantity
                )
        await self._written(opened, shopper)
        return opened

    async def remove_item(self, shopper: Shopper, variant_id: uuid.UUID) -> Opened:
        """Remove the line of ``variant_id`` (a product's id: its default variant)."""
        opened = await self.open(shopper, create=False)
        if opened.cart is None:
            raise not_in_cart(variant_id)
        cart = await self._lock(opened)
        if not await self.items.remove(cart.id, variant_id):
            raise not_in_cart(variant_id)
        await self._written(opened, shopper)
        return opened

    async def clear(self, shopper: Shopper) -> Opened:
        opened = await self.open(shopper, create=False)
        if opened.cart is not None:
            cart = await self._lock(opened)
            await self.items.remove_all(cart.id)
            await self._written(opened, shopper)
        return opened

    # --- reading --------------------------------------------------------------------------

    async def view(self, opened: Opened) -> CartView:
        limits = CartLimits(max_quantity_per_line=self.limit, max_lines=self.settings.max_lines)
        if opened.cart is None:
            return CartView(
                id=None,
                lines=[],
                line_count=0,
                item_count=0,
                subtotal=0,
                currency=None,
                pricing_unavailable=False,
                checkout_ready=False,
                limits=limits,
                merge=opened.merge,
            )
        items = opened.lines if opened.lines is not None else await self.items.lines(opened.cart.id)
        products: dict[uuid.UUID, LookupProduct] | None = {}
        if items:
            try:
                products = await self._lookup((item.product_id, item.variant_id) for item in items)
            except CatalogUnavailable:
                products = None
        lines = [self._line(item, products) for item in items]
        currency = next((line.currency for line in lines if line.purchasable), None)
        if products is not None and currency is None:
            currency = next((line.currency for line in lines if line.currency), None)
        subtotal = (
            sum(
                line.line_total or 0
                for line in lines
                if line.purchasable and line.currency == currency
            )
            if products is not None
            else None
        )
        return CartView(
            id=opened.cart.id,
            lines=lines,
            line_count=len(lines),
            item_count=sum(line.quantity for line in lines),
            subtotal=subtotal,
            currency=currency,
            pricing_unavailable=products is None,
            checkout_ready=bool(lines)
            and all(line.purchasable and line.currency == currency for line in lines),
            limits=limits,
            merge=opened.merge,
        )

    def _line(self, item: CartItem, products: dict[uuid.UUID, LookupProduct] | None) -> CartLine:
        product = products.get(item.variant_id) if products is not None else None
        if product is not None and product.id != item.product_id:
            product = None
        if product is None:
            return CartLine(
                product_id=item.product_id,
                quantity=item.quantity,
                name=None,
                slug=None,
                image_url=None,
                unit_price=None,
                price=None,
                currency=None,
                line_total=None,
                availability=None,
                max_quantity=None,
                purchasable=False,
                # Without catalog's answer we cannot say; with it, an unknown id is not for sale.
                unavailable=products is not None,
                archived=False,
                sold_out=False,
                quantity_exceeds_stock=False,
                added_at=item.created_at,
                variant_id=item.variant_id,
            )
        archived = not product.active
        sold_out = product.availability == "sold_out" or product.available <= 0
        sellable = product.sellable_now
        exceeds = not archived and not sold_out and item.quantity > sellable
        return CartLine(
            product_id=item.product_id,
            quantity=item.quantity,
            name=product.name,
            slug=product.slug,
            image_url=product.image_url,
            unit_price=product.price,
            price=product.price,
            currency=product.currency,
            line_total=product.price * item.quantity,
            availability=product.availability,
            max_quantity=min(self.limit, sellable),
            purchasable=not (archived or sold_out or exceeds),
            unavailable=archived or sold_out,
            archived=archived,
            sold_out=sold_out,
            quantity_exceeds_stock=exceeds,
            added_at=item.created_at,
            variant_id=item.variant_id,
            sku=product.sku or None,
            variant_title=product.variant_title,
            option_values=list(product.option_values),
        )

    # --- for other services -----------------------------------------------------------------

    async def resolve(self, user_id: uuid.UUID | None, cart_token: str | None) -> ResolvedCart:
        """``POST /internal/cart/resolve``: the lines checkout would sell this shopper."""
        if user_id is None:
            # A guest's: the cart and its lines in one read (nothing to merge, nothing made).
            cart_id = self.signer.verify(cart_token)
            found = (
                await self.carts.active_guest_lines(cart_id, token_hash(cart_token))
                if cart_token is not None and cart_id is not None
                else None
            )
            if found is None:
                return ResolvedCart(cart_id=None, lines=[])
            return ResolvedCart(
                cart_id=found[0],
                lines=[
                    ResolvedLine(product_id=product_id, variant_id=variant_id, quantity=quantity)
                    for product_id, variant_id, quantity in found[1]
                ],
            )
        opened = await self.open(Shopper(user_id=user_id, cart_cookie=cart_token), create=False)
        if opened.cart is None:
            return ResolvedCart(cart_id=None, lines=[])
        lines = await self.items.lines(opened.cart.id)
        return ResolvedCart(
            cart_id=opened.cart.id,
            lines=[
                ResolvedLine(
                    product_id=line.product_id, variant_id=line.variant_id, quantity=line.quantity
                )
                for line in lines
            ],
        )


async def convert_cart(session: AsyncSession, cart_id: uuid.UUID, order_id: uuid.UUID) -> bool:
    """The cart was paid for: empty it and mark it converted. Only an active cart converts, so
    a second call (a redelivered event) changes nothing."""
    # The conditional update takes the cart's row lock as the lock-then-check did, in one
    # statement instead of two.
    if not await CartRepository(session=session).mark_converted(cart_id, order_id):
        return False
    await CartItemRepository(session=session).remove_all(cart_id)
    return True


def _key(entry: SetLine) -> uuid.UUID:
    """The variant a requested line is of (none named: the product's default)."""
    return entry.variant_id or entry.product_id


def _refusal(product: LookupProduct | None) -> str:
    if product is None:
        return "unknown"
    if not product.active:
        return "archived"
    if product.sellable_now == 0:
        return "sold-out"
    return "stock"
