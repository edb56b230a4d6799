"""Stock rules: reservations (all lines or none, once per order), sales, releases, the sweeper,
subscription deliveries, and the admin's on-hand counts.

Stock is kept per variant (a product sold without options has one, with the product's id).
Every change to ``inventory`` is one conditional UPDATE per variant, in variant-id order, so
two transactions never wait on each other's rows in opposite orders (no deadlocks); an admin
count and a subscription delivery first lock the row (in the same order) to learn what is
there. A change that moves a product between "in stock", "low stock" and "sold out"
invalidates what the shopper read path has cached for it, once the transaction commits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import structlog
from ember_shared.auth import Principal
from ember_shared.contracts.catalog import (
    INSUFFICIENT_STOCK,
    InsufficientStock,
    LookupProduct,
    ReservationLineOut,
    ReservationOut,
    ReservationRequest,
    UnavailableLine,
)
from ember_shared.events.contracts import StockReleased
from ember_shared.events.handlers import Provider
from ember_shared.ids import new_id
from ember_shared.pagination import window
from ember_shared.problems import Problem, not_found
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.audit.recorder import AuditedAdmin, AuditLog
from catalog.cache import CatalogCache
from catalog.events import outbox
from catalog.fields import availability_of, variant_title
from catalog.inventory.repositories import (
    DeliveryRepository,
    InventoryRepository,
    ReservationRecord,
    ReservationRepository,
    Stock,
)
from catalog.inventory.schemas import InventoryRow
from catalog.models import RESERVATION_ACTIVE, RESERVATION_COMMITTED, RESERVATION_RELEASED
from catalog.settings import CatalogSettings

log = structlog.get_logger("catalog.stock")


def reservation_out(record: ReservationRecord) -> ReservationOut:
    return ReservationOut(
        reservation_id=record.id,
        order_id=record.order_id,
        status=record.status,  # type: ignore[arg-type]
        expires_at=record.expires_at,
        lines=[
            ReservationLineOut(product_id=record.products.get(v, v), variant_id=v, quantity=q)
            for v, q in record.lines
        ],
    )


def _merged(lines: Iterable[tuple[uuid.UUID, int]]) -> list[tuple[uuid.UUID, int]]:
    """One entry per variant (quantities summed), in variant-id order: the lock order."""
    totals: dict[uuid.UUID, int] = defaultdict(int)
    for variant_id, quantity in lines:
        totals[variant_id] += quantity
    return sorted(totals.items())


def _requested(request: ReservationRequest) -> list[tuple[uuid.UUID, uuid.UUID, int]]:
    """``(variant id, product id, quantity)`` per variant asked, in the lock order; a line
    without a variant names its product's default variant, which has the product's id."""
    totals: dict[tuple[uuid.UUID, uuid.UUID], int] = defaultdict(int)
    for line in request.lines:
        totals[(line.variant_id or line.product_id, line.product_id)] += line.quantity
    return [(v, p, q) for (v, p), q in sorted(totals.items())]


def keeper_provider(cache: CatalogCache, settings: CatalogSettings) -> Provider:
    """The ``keeper`` the event handlers declare: the app's cache and settings, on the call's
    session (the app hands it over as ``ServiceSpec.event_dependencies``)."""

    def provide_keeper(session: AsyncSession) -> StockKeeper:
        return StockKeeper(session, cache, settings)

    return provide_keeper


class StockKeeper:
    def __init__(
        self, session: AsyncSession, cache: CatalogCache, settings: CatalogSettings
    ) -> None:
        self.session = session
        self.cache = cache
        self.settings = settings
        self.inventory = InventoryRepository(session)
        self.reservations = ReservationRepository(session)
        self.deliveries = DeliveryRepository(session)
        self.audit = AuditLog(session)

    def _flipped(self, before_available: int, after: Stock) -> bool:
        low = self.settings.low_stock
        return availability_of(before_available, low) != availability_of(after.available, low)

    def _stale(self, product_ids: Iterable[uuid.UUID]) -> None:
        ids = set(product_ids)
        if ids:
            self.cache.invalidate_on_commit(self.session, product_ids=ids, lists=True)

    # --- reserve -------------------------------------------------------------------------

    async def reserve(
        self, request: ReservationRequest, *, now: dt.datetime | None = None
    ) -> tuple[ReservationOut, bool]:
        """Hold every line of an order, or none. Answers the reservation and whether this call
        made it (False: it existed already, and is answered unchanged)."""
        low, high = self.settings.reservation_min_ttl, self.settings.reservation_max_ttl
        if not low <= request.ttl_seconds <= high:
            raise Problem(400, "invalid-ttl", f"ttl_seconds must be between {low} and {high}.")
        now = now or dt.datetime.now(dt.UTC)
        reservation_id = new_id()
        expires_at = now + dt.timedelta(seconds=request.ttl_seconds)
        lines = _requested(request)
        asked = [v for v, _, _ in lines]
        # One statement claims the order (ON CONFLICT DO NOTHING finds a reservation of it,
        # waiting for one still being written: no read first), holds the first line and, when
        # priced, looks the lines up (from the snapshot it began with: before the hold). A held
        # row stays locked until the request's transaction commits, and every checkout of a
        # product wants it: for a one-line order nothing but the COMMIT follows the hold, and
        # no other round trip (each a turn of this process's event loop, long under load) is
        # made while it is locked.
        opened = await self.reservations.open(
            reservation_id,
            request.order_id,
            expires_at,
            lines[0],
            asked if request.priced else None,
        )
        if opened is None:
            # This order's reservation exists (a retry, or another request committed first):
            # answer it unchanged.
            existing = await self.reservations.by_order(request.order_id)
            assert existing is not None
            return await self._answered(request, reservation_out(existing)), False
        looked_up = self._variants(opened.looked_up, asked) if request.priced else []
        short: list[tuple[uuid.UUID, uuid.UUID, int]] = []
        flipped: list[uuid.UUID] = []
        held: dict[uuid.UUID, Stock] = {}
        for index, (variant_id, product_id, quantity) in enumerate(lines):
            if index == 0:
                stock = opened.first
            else:
                stock = await self.inventory.reserve(
                    variant_id, product_id, quantity, reservation_id
                )
            if stock is None:
                short.append((variant_id, product_id, quantity))
                continue
            held[variant_id] = stock
            if self._flipped(stock.available + quantity, stock):
                flipped.append(product_id)
        if short:
            available = await self.inventory.sellable([v for v, _, _ in short])
            short_ids = {v for v, _, _ in short}
            known = [variant for variant in looked_up if variant.variant_id in short_ids]
            # The request's transaction is rolled back on this answer: nothing stays held.
            raise Problem(
                409,
                INSUFFICIENT_STOCK,
                "Some lines cannot be had in the quantity asked; nothing was reserved.",
                **msgspec.to_builtins(
                    InsufficientStock(
                        unavailable=[
                            UnavailableLine(
                                product_id=p,
                                variant_id=v,
                                requested=q,
                                available=max(available[v], 0),
                            )
                            for v, p, q in short
                        ],
                        variants=known,
                    )
                ),
            )
        self._stale(flipped)
        return ReservationOut(
            reservation_id=reservation_id,
            order_id=request.order_id,
            status="active",
            expires_at=expires_at,
            lines=[ReservationLineOut(product_id=p, variant_id=v, quantity=q) for v, p, q in lines],
            variants=[self._after_hold(variant, held) for variant in looked_up],
        ), True

    def _after_hold(self, variant: LookupProduct, held: dict[uuid.UUID, Stock]) -> LookupProduct:
        """A variant looked up before the hold, with what its hold left (read by the hold)."""
        stock = held.get(variant.variant_id) if variant.variant_id else None
        if stock is None:
            return variant
        return msgspec.structs.replace(
            variant,
            available=max(stock.available, 0),
            availability=availability_of(stock.available, self.settings.low_stock),
        )

    async def _answered(self, request: ReservationRequest, out: ReservationOut) -> ReservationOut:
        """With ``priced``, the reservation's lines as the lookup answers them, read in the same
        transaction (one call prices and holds a checkout's lines)."""
        if not request.priced:
            return out
        _, variants = await self.lookup(
            (), [line.variant_id or line.product_id for line in out.lines]
        )
        return msgspec.structs.replace(out, variants=variants)

    async def get(self, order_id: uuid.UUID) -> ReservationRecord | None:
        return await self.reservations.by_order(order_id)

    # --- release -------------------------------------------------------------------------

    async def _return_to_stock(self, lines: Iterable[tuple[uuid.UUID, int]]) -> None:
        flipped = []
        for variant_id, quantity in _merged(lines):
            stock = await self.inventory.unreserve(variant_id, quantity)
            if stock is not None and self._flipped(stock.available - quantity, stock):
                flipped.append(stock.product_id)
        self._stale(flipped)

    async def _released(self, released: Sequence[tuple[uuid.UUID, uuid.UUID]], reason: str) -> None:
        if not released:
            return
        lines = await self.reservations.lines_of([rid for rid, _ in released])
        await self._return_to_stock((v, q) for rid, _ in released for v, _, q in lines.get(rid, []))
        for reservation_id, order_id in released:
            await outbox.add(
                self.session,
                StockReleased(order_id=order_id, reservation_id=reservation_id, reason=reason),
            )
        log.info("reservations_released", count=len(released), reason=reason)

    async def release(self, order_id: uuid.UUID, reason: str) -> ReservationRecord | None:
        """Give an order's held stock back. Idempotent: a released or sold reservation is
        answered as it is. None when the order never had a reservation."""
        record = await self.reservations.by_order(order_id)
        if record is None or record.status != RESERVATION_ACTIVE:
            return record
        released = await self.reservations.release([record.id], reason)
        await self._released(released, reason)
        return await self.reservations.by_order(order_id)

    async def sweep(self, *, now: dt.datetime | None = None, limit: int | None = None) -> int:
        """Release active reservations past their expiry; the number released."""
        now = now or dt.datetime.now(dt.UTC)
        expired = await self.reservations.expired(now, limit or self.settings.sweep_batch)
        if not expired:
            return 0
        released = await self.reservations.release(expired, "expired")
        await self._released(released, "expired")
        return len(released)

    # --- sell ----------------------------------------------------------------------------

    async def sell(self, order_id: uuid.UUID) -> str:
        """Turn an order's reservation into a sale (payment succeeded). Idempotent.

        Answers ``sold``, ``already-sold``, ``sold-late`` (the reservation had lapsed but the
        stock was still there), ``short`` (it lapsed and the stock is gone: logged for staff)
        or ``unknown``.
        """
        # The usual case first: an active reservation becomes a sale in one statement.
        sold = await self.reservations.commit_active_sale(order_id)
        if sold is not None:
            # on_hand and reserved drop together: what shoppers can buy does not change.
            for variant_id, quantity in _merged(sold[1]):
                await self.inventory.sell_reserved(variant_id, quantity)
            return "sold"
        record = await self.reservations.by_order(order_id)
        if record is None:
            log.warning("sale_without_reservation", order_id=str(order_id))
            return "unknown"
        if record.status == RESERVATION_COMMITTED:
            return "already-sold"
        if record.status == RESERVATION_ACTIVE and await self.reservations.commit_sale(record.id):
            # Made between the two statements: not expected (checkout publishes nothing of an
            # order before its reservation exists), handled as before all the same.
            for variant_id, quantity in _merged(record.lines):
                await self.inventory.sell_reserved(variant_id, quantity)
            return "sold"
        record = await self.reservations.by_order(order_id)
        assert record is not None
        if record.status == RESERVATION_COMMITTED:
            return "already-sold"
        return await self._sell_lapsed(record)

    async def _sell_lapsed(self, record: ReservationRecord) -> str:
        flipped: list[uuid.UUID] = []
        short = False
        async with self.session.begin_nested() as savepoint:
            for variant_id, quantity in _merged(record.lines):
                stock = await self.inventory.sell_unreserved(variant_id, quantity)
                if stock is None:
                    short = True
                    break
                if self._flipped(stock.available + quantity, stock):
                    flipped.append(stock.product_id)
            if short:
                await savepoint.rollback()
        if short:
            log.error(
                "paid_order_short_of_stock",
                order_id=str(record.order_id),
                reservation_id=str(record.id),
                detail="payment arrived after the reservation lapsed and the stock was sold",
            )
            return "short"
        await self.reservations.commit_sale(record.id, from_status=RESERVATION_RELEASED)
        self._stale(flipped)
        return "sold-late"

    # --- subscription deliveries ---------------------------------------------------------

    async def deliver(
        self,
        order_id: uuid.UUID,
        subscription_id: uuid.UUID,
        stripe_invoice_id: str,
        lines: Iterable[tuple[uuid.UUID, int]],
    ) -> str:
        """Take a paid subscription invoice's delivery (``(variant id, quantity)`` lines; a
        product's id names its default variant) out of stock. Once per order and per
        invoice, however often (and under whatever event id) it arrives.

        The subscriber has paid, so nothing is refused: each line takes what is sellable (never
        what checkouts hold, never below zero) and the rest is short; a line naming an archived
        or unknown product takes nothing. Both are logged and put in the audit log, so staff
        know what to roast. Answers ``delivered``, ``short`` or ``already-delivered``.
        """
        if not await self.deliveries.claim(order_id, subscription_id, stripe_invoice_id):
            return "already-delivered"
        about = {
            "order_id": str(order_id),
            "subscription_id": str(subscription_id),
            "stripe_invoice_id": stripe_invoice_id,
        }
        merged = [(v, q) for v, q in _merged(lines) if q > 0]
        active = await self.inventory.active_of([v for v, _ in merged])
        missing = 0
        flipped: list[uuid.UUID] = []
        for product_id, quantity in merged:
            before = await self.inventory.lock(product_id) if active.get(product_id) else None
            if before is None:
                missing += quantity
                reason = "archived" if product_id in active else "unknown"
                log.warning(
                    "subscription_delivery_skipped",
                    product_id=str(product_id),
                    quantity=quantity,
                    reason=reason,
                    **about,
                )
                await self.audit.record(
                    None,
                    "inventory.subscription_skipped",
                    "inventory",
                    product_id,
                    after={"quantity": quantity, "reason": reason, **about},
                )
                continue
            taken = min(quantity, max(before.available, 0))
            after = before
            if taken:
                # The row is locked: the units read as sellable are still there.
                sold = await self.inventory.sell_unreserved(product_id, taken)
                assert sold is not None
                after = sold
            if self._flipped(before.available, after):
                flipped.append(after.product_id)
            if taken < quantity:
                missing += quantity - taken
                log.warning(
                    "subscription_delivery_short",
                    product_id=str(product_id),
                    quantity=quantity,
                    taken=taken,
                    short=quantity - taken,
                    **about,
                )
                await self.audit.record(
                    None,
                    "inventory.subscription_short",
                    "inventory",
                    product_id,
                    before={"on_hand": before.on_hand, "reserved": before.reserved},
                    after={
                        "on_hand": after.on_hand,
                        "reserved": after.reserved,
                        "quantity": quantity,
                        "taken": taken,
                        "short": quantity - taken,
                        **about,
                    },
                )
        self._stale(flipped)
        if missing:
            await self.deliveries.record_short(order_id, missing)
            return "short"
        return "delivered"

    # --- returns -------------------------------------------------------------------------

    async def restock(self, order_id: uuid.UUID, lines: Iterable[tuple[uuid.UUID, int]]) -> int:
        """Put a refunded order's returned units (``(variant id, quantity)``) back in stock (staff chose to, with the
        refund); the units put back. Orders announces a restock once per order and the event
        runtime handles each event once. A product without stock is logged and skipped."""
        flipped: list[uuid.UUID] = []
        restocked = 0
        for product_id, quantity in _merged(lines):
            if quantity <= 0:
                continue
            before = await self.inventory.lock(product_id)
            after = await self.inventory.restock(product_id, quantity) if before else None
            if before is None or after is None:
                log.warning("restock_skipped", order_id=str(order_id), product_id=str(product_id))
                continue
            restocked += quantity
            if self._flipped(before.available, after):
                flipped.append(after.product_id)
            await self.audit.record(
                None,
                "inventory.restocked",
                "inventory",
                product_id,
                before={"on_hand": before.on_hand, "reserved": before.reserved},
                after={
                    "on_hand": after.on_hand,
                    "reserved": after.reserved,
                    "quantity": quantity,
                    "order_id": str(order_id),
                },
            )
        self._stale(flipped)
        return restocked

    # --- reads for services --------------------------------------------------------------

    async def lookup(
        self, product_ids: Sequence[uuid.UUID], variant_ids: Sequence[uuid.UUID] = ()
    ) -> tuple[list[LookupProduct], list[LookupProduct]]:
        """Products (as their default variants, which have their ids) and variants."""
        products = list(dict.fromkeys(product_ids))
        variants = list(dict.fromkeys(variant_ids))
        if not products and not variants:
            return [], []
        rows = {row.variant_id: row for row in await self.inventory.lookup(products + variants)}
        return (
            [self._looked_up(rows[p]) for p in products if p in rows and rows[p].id == p],
            [self._looked_up(rows[v]) for v in variants if v in rows],
        )

    def _variants(
        self, rows: Iterable[Any], variant_ids: Sequence[uuid.UUID]
    ) -> list[LookupProduct]:
        """The lookup's rows as ``lookup`` answers variants: in the order asked, once each."""
        found = {row.variant_id: row for row in rows}
        return [self._looked_up(found[v]) for v in dict.fromkeys(variant_ids) if v in found]

    def _looked_up(self, row: Any) -> LookupProduct:
        return LookupProduct(
            id=row.id,
            slug=row.slug,
            name=row.name,
            price=row.price,
            currency=row.currency,
            active=row.active,
            availability=availability_of(
                row.available if row.active else 0, self.settings.low_stock
            ),
            available=max(row.available, 0) if row.active else 0,
            image_url=row.image_url,
            variant_id=row.variant_id,
            sku=row.sku,
            option_values=list(row.option_values),
            variant_title=variant_title(row.option_values),
            weight_grams=row.weight_grams,
            category_id=row.category_id,
        )


async def set_counted(
    inventory: InventoryRepository,
    audit: AuditLog,
    actor: Principal | None,
    variant_id: uuid.UUID,
    before: Stock,
    on_hand: int,
    *,
    held: str,
    product_id: uuid.UUID | None = None,
) -> Stock:
    """Set a variant's on-hand count (``before``: its stock row, locked), audited in the same
    transaction; refused (409) below what checkouts hold. ``held`` is what the refusal calls the
    variant ("product" or "variant"); ``product_id``, when given, is named in it too."""
    after = await inventory.set_on_hand(variant_id, on_hand)
    if after is None:
        names: dict[str, Any] = {"product_id": str(product_id)} if product_id else {}
        raise Problem(
            409,
            "stock-reserved",
            f"{before.reserved} unit(s) of this {held} are held by checkouts; on_hand cannot go "
            "below that.",
            **names,
            variant_id=str(variant_id),
            reserved=before.reserved,
        )
    await audit.record(
        actor,
        "inventory.set",
        "inventory",
        variant_id,
        before={"on_hand": before.on_hand, "reserved": before.reserved},
        after={"on_hand": after.on_hand, "reserved": after.reserved},
    )
    return after


class InventoryAdmin(AuditedAdmin):
    def __init__(
        self,
        session: AsyncSession,
        cache: CatalogCache,
        settings: CatalogSettings,
        actor: Principal | None,
    ) -> None:
        super().__init__(session, cache, settings, actor)
        self.inventory = InventoryRepository(session)

    def row(self, row: Any) -> InventoryRow:
        on_hand: int = row.on_hand
        reserved: int = row.reserved
        return InventoryRow(
            product_id=row.product_id,
            slug=row.slug,
            name=row.name,
            active=row.active,
            on_hand=on_hand,
            reserved=reserved,
            available=on_hand - reserved,
            availability=availability_of(on_hand - reserved, self.settings.low_stock),
            updated_at=row.updated_at,
            variant_id=row.variant_id,
            sku=row.sku,
            option_values=list(row.option_values),
            variant_title=variant_title(row.option_values),
            variant_active=row.variant_active,
        )

    async def page(
        self, *, page: int, page_size: int, low_only: bool, q: str | None
    ) -> tuple[list[InventoryRow], int]:
        rows, total = await self.inventory.admin_page(
            **window(page, page_size),
            low_stock_at=self.settings.low_stock if low_only else None,
            q=q,
        )
        return [self.row(r) for r in rows], total

    async def set_on_hand(
        self,
        items: Sequence[tuple[uuid.UUID, int]],
        products: dict[uuid.UUID, uuid.UUID] | None = None,
    ) -> list[InventoryRow]:
        """Set on-hand counts of variants, all or none (the request's transaction); a
        product's id names its default variant. ``products``: the product each variant was
        named with, which it must be of."""
        variant_ids = [v for v, _ in items]
        if len(set(variant_ids)) != len(variant_ids):
            raise Problem(400, "duplicate-product", "Name each product or variant once.")
        flipped: list[uuid.UUID] = []
        for variant_id, on_hand in sorted(items):
            before = await self.inventory.lock(variant_id)
            expected = (products or {}).get(variant_id, before.product_id if before else None)
            if before is None or before.product_id != expected:
                raise not_found("product", f"There is no product or variant {variant_id}.")
            if before.on_hand == on_hand:
                continue
            after = await set_counted(
                self.inventory,
                self.audit,
                self.actor,
                variant_id,
                before,
                on_hand,
                held="product",
                product_id=before.product_id,
            )
            low = self.settings.low_stock
            if availability_of(before.available, low) != availability_of(after.available, low):
                flipped.append(after.product_id)
        if flipped:
            self.cache.invalidate_on_commit(self.session, product_ids=flipped, lists=True)
        return [self.row(r) for r in await self.inventory.rows_for(variant_ids)]
