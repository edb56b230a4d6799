"""The rules of an order's life: created and paid from payment events, moved by staff, never
backwards. Services never commit; the event handler or the request owns the transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import structlog
from ember_shared.auth import Principal
from ember_shared.events import Envelope, EventData
from ember_shared.events.contracts import (
    Address,
    CheckoutExpired,
    CheckoutStarted,
    OrderLine,
    OrderPaid,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    SubscriptionInvoicePaid,
)
from ember_shared.pagination import window
from ember_shared.problems import Problem, not_found
from sqlalchemy.ext.asyncio import AsyncSession

from orders.events import outbox
from orders.models import DeferredEvent, Order, OrderStatusChange
from orders.ordering.links import issue_guest_link, redirect_opens, token_opens
from orders.ordering.repositories import (
    PAYMENT_COLUMNS,
    DeferredEventRepository,
    OrderItemRepository,
    OrderRepository,
    StatusChange,
    StatusChangeRepository,
)
from orders.ordering.schemas import AdminOrderUpdate
from orders.ordering.status import (
    ADMIN_TARGETS,
    PAID_STATUSES,
    OrderStatus,
    can_move,
)

log = structlog.get_logger("orders.ordering")

S = OrderStatus
#: The length of ``orders.attention``.
ATTENTION_MAX = 1000


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def event_actor(event: Envelope) -> str:
    return f"event:{event.type}"


def fulfilment_rank(order: Order) -> int:
    """How far the parcel has got, from the timestamps (they survive a partial refund)."""
    if order.delivered_at is not None:
        return 3
    if order.shipped_at is not None:
        return 2
    if order.fulfilled_at is not None:
        return 1
    return 0


_TARGET_RANK = {S.FULFILLED: 1, S.SHIPPED: 2, S.DELIVERED: 3}

#: The events that carry a whole order: its lines, totals and shipping address.
Placed = CheckoutStarted | PaymentSucceeded | SubscriptionInvoicePaid


class OrderIdTakenError(RuntimeError):
    """A subscription's invoice names an order id that another order already has. The event is
    left to fail (and, after its retries, to be dead-lettered) rather than dropped."""


class OrderService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.orders = OrderRepository(session=session, auto_expunge=False)
        self.items = OrderItemRepository(session)
        self.history = StatusChangeRepository(session)
        self.deferred = DeferredEventRepository(session)

    # --- the machine ------------------------------------------------------------------

    def allowed_targets(self, order: Order) -> list[OrderStatus]:
        current = S(order.status)
        return [t for t in TRANSITION_ORDER if self._may_move(order, current, t)]

    def _may_move(self, order: Order, current: OrderStatus, target: OrderStatus) -> bool:
        if not can_move(current, target):
            return False
        rank = _TARGET_RANK.get(target)
        # After a partial refund the status no longer says how far the parcel got; the
        # timestamps do, and the order must not go back to an earlier stage.
        return rank is None or rank > fulfilment_rank(order)

    def move(
        self,
        order: Order,
        target: OrderStatus,
        *,
        actor: str,
        reason: str = "",
        at: dt.datetime | None = None,
    ) -> None:
        """Move the order to ``target`` or raise 409; records the change in its history."""
        self.history.write(self.moved(order, target, actor=actor, reason=reason, at=at))

    def moved(
        self,
        order: Order,
        target: OrderStatus,
        *,
        actor: str,
        reason: str = "",
        at: dt.datetime | None = None,
    ) -> StatusChange:
        """:meth:`move`, its history row given back, to be written in one statement with the
        order's other changes."""
        current = S(order.status)
        if not self._may_move(order, current, target):
            raise Problem(
                409,
                "invalid-transition",
                f"An order that is {current.value} cannot become {target.value}.",
                current=current.value,
                requested=target.value,
                allowed=[t.value for t in self.allowed_targets(order)],
            )
        moment = at or utcnow()
        order.status = target.value
        stamp = {
            S.PAID: "paid_at",
            S.CANCELLED: "cancelled_at",
            S.FULFILLED: "fulfilled_at",
            S.SHIPPED: "shipped_at",
            S.DELIVERED: "delivered_at",
            S.REFUNDED: "refunded_at",
        }.get(target)
        if stamp and getattr(order, stamp) is None:
            setattr(order, stamp, moment)
        log.info("order_status_changed", order_id=str(order.id), to=target.value, actor=actor)
        return self.history.change(
            order.id, current.value, target.value, actor=actor, reason=reason
        )

    # --- events -----------------------------------------------------------------------

    async def on_checkout_started(self, event: Envelope, data: CheckoutStarted) -> None:
        expires_at = _parse_time(data.expires_at)
        if await self._insert(event, data, payment_expires_at=expires_at):
            # Made here, with everything checkout.started carries: the row is needed again only
            # for events that came before it and waited (rarely any).
            deferred = await self.deferred.take(data.order_id)
            if deferred:
                await self._apply_deferred(await self._locked(data.order_id), deferred)
            return
        # payment.succeeded got here first; fill in what only checkout.started carries.
        order = await self._locked(data.order_id)
        if order.payment_expires_at is None:
            order.payment_expires_at = expires_at

    async def on_payment_succeeded(self, event: Envelope, data: PaymentSucceeded) -> None:
        # The order as a model the session does not track (read with its lock and items in one
        # statement); what the payment changes is written below in one statement, with the
        # history row and the taking of deferred events, instead of by the ORM's flush.
        order = await self._lock_or_create(event, data)
        before = _payment_columns(order)
        if order.stripe_session_id is None:
            order.stripe_session_id = data.stripe_session_id
        elif order.stripe_session_id != data.stripe_session_id:
            log.warning(
                "order_paid_by_second_session",
                order_id=str(order.id),
                first=order.stripe_session_id,
                second=data.stripe_session_id,
            )
        if data.tax != order.tax_total and data.total == (
            order.subtotal - order.discount_total + order.shipping_total + data.tax
        ):
            # Stripe Tax's final figure, when it differs from the one known at the start.
            order.tax_total, order.total = data.tax, data.total
        if not order.payment_intent_id and data.payment_intent_id:
            order.payment_intent_id = data.payment_intent_id
        if order.user_id is None and data.user_id is not None:
            order.user_id = data.user_id
        if data.attention:
            # Flagged on the order itself (not only in its history), for staff's list and filter;
            # a second flagged payment of an order adds its note to the first.
            note = data.attention.strip()
            if not order.attention:
                order.attention = note[:ATTENTION_MAX]
            elif note not in order.attention:
                order.attention = f"{order.attention}; {note}"[:ATTENTION_MAX]
        paid = self._confirm_payment(order, event, data)
        deferred = await self.orders.settle_payment(
            order, changed=_payment_columns(order) != before, history=paid
        )
        if paid is not None:
            await self._announce_paid(order)
        await self._apply_deferred(order, deferred)

    def _confirm_payment(
        self, order: Order, event: Envelope, data: PaymentSucceeded
    ) -> StatusChange | None:
        """Move an unpaid order to paid; its history row, or None when it was paid already."""
        current = S(order.status)
        if current in PAID_STATUSES:
            return None
        reason = "payment confirmed by Stripe"
        if current in (S.CANCELLED, S.PAYMENT_FAILED):
            # The money was taken after all: the order must say so; staff ship or refund.
            reason = f"payment confirmed after the order was {current.value}"
            log.warning("order_paid_after_close", order_id=str(order.id), was=current.value)
        if data.attention:
            # Checkout saw something off (another amount, paid after closing): the order's
            # history, which staff read before shipping, says so.
            reason = f"{reason}; needs attention: {data.attention}"[:300]
        paid = self.moved(
            order, S.PAID, actor=event_actor(event), reason=reason, at=event.occurred_at
        )
        # Before the payment's write: the link's hash and sealed copy are stored with it.
        issue_guest_link(order)
        return paid

    async def on_subscription_invoice_paid(
        self, event: Envelope, data: SubscriptionInvoicePaid
    ) -> None:
        """A subscription's paid invoice becomes an order that is paid already and ready to
        ship, like a paid one-off order. One per invoice, however often the event comes."""
        created = await self.orders.insert_unless_invoiced(_subscription_order_values(event, data))
        if not created:
            existing = await self.orders.get_by_invoice(data.stripe_invoice_id)
            if existing is None:
                raise OrderIdTakenError(
                    f"order {data.order_id} exists and is not invoice {data.stripe_invoice_id}"
                )
            if existing.id != data.order_id:
                log.info(
                    "subscription_invoice_already_ordered",
                    order_id=str(existing.id),
                    redelivered_as=str(data.order_id),
                    stripe_invoice_id=data.stripe_invoice_id,
                )
            return
        items, left_out = _item_rows(data)
        await self.items.add_snapshots(items)
        _check_lines(data, left_out)
        self.history.record(
            data.order_id,
            None,
            S.PAID.value,
            actor=event_actor(event),
            reason=f"subscription invoice {data.stripe_invoice_id} paid",
        )
        _check_totals(data)
        order = await self.orders.get_for_update(data.order_id)
        assert order is not None, "the order was just inserted"
        log.info(
            "subscription_order_created",
            order_id=str(order.id),
            subscription_id=str(data.subscription_id),
            stripe_invoice_id=data.stripe_invoice_id,
        )
        await self._announce_paid(order)
        await self._apply_deferred(order)

    async def _announce_paid(self, order: Order) -> None:
        """What every newly paid order publishes, however it was paid. It carries what the
        confirmation mail shows: the notifier mails the order, never the raw payment."""
        address = order.shipping_address or {}
        issue_guest_link(order)
        await outbox.add(
            self.session,
            OrderPaid(
                order_id=order.id,
                user_id=order.user_id,
                email=order.email,
                total=order.total,
                currency=order.currency,
                lines=[
                    OrderLine(
                        product_id=item.product_id,
                        slug=item.slug,
                        name=item.name,
                        unit_price=item.unit_price,
                        quantity=item.quantity,
                        image_url=item.image_url,
                        discount=item.discount,
                        variant_id=item.variant_id,
                        sku=item.sku or "",
                        variant_title=item.variant_title or "",
                        option_values=list(item.option_values or []),
                    )
                    # Loaded with the order's lock (ordered by position), not read again.
                    for item in order.items
                ],
                subtotal=order.subtotal,
                shipping=order.shipping_total,
                discount=order.discount_total,
                discount_code=order.discount_code,
                tax=order.tax_total,
                shipping_name=order.shipping_method,
                shipping_address=Address(
                    name=order.shipping_name,
                    phone=order.shipping_phone,
                    line1=str(address.get("line1", "")),
                    line2=str(address.get("line2", "")),
                    city=str(address.get("city", "")),
                    state=str(address.get("state", "")),
                    postal_code=str(address.get("postal_code", "")),
                    country=str(address.get("country", "")),
                ),
                sealed_order_url=order.sealed_order_url or "",
            ),
        )

    async def on_payment_failed(self, event: Envelope, data: PaymentFailed) -> None:
        order = await self._locked_once_placed(data.order_id)
        if order is None:
            await self._defer(event, data.order_id, data)
            return
        if S(order.status) == S.PENDING_PAYMENT:
            self.move(
                order,
                S.PAYMENT_FAILED,
                actor=event_actor(event),
                reason=(data.reason or "payment failed")[:300],
                at=event.occurred_at,
            )

    async def on_checkout_expired(self, event: Envelope, data: CheckoutExpired) -> None:
        order = await self._locked_once_placed(data.order_id)
        if order is None:
            await self._defer(event, data.order_id, data)
            return
        if S(order.status) in (S.PENDING_PAYMENT, S.PAYMENT_FAILED):
            self.move(
                order,
                S.CANCELLED,
                actor=event_actor(event),
                reason="checkout expired without payment",
                at=event.occurred_at,
            )

    async def on_payment_refunded(self, event: Envelope, data: PaymentRefunded) -> None:
        order = await self._locked_once_placed(data.order_id)
        if order is None or S(order.status) not in PAID_STATUSES:
            # A refund needs a paid order; the payment event is still on its way.
            await self._defer(event, data.order_id, data)
            return
        if data.currency.upper() != order.currency:
            log.error(
                "refund_currency_mismatch",
                order_id=str(order.id),
                order_currency=order.currency,
                refund_currency=data.currency,
            )
            return
        # amount_refunded is the running total Stripe reports: the largest one seen wins, so
        # replays and reordering of refund events cannot lower it or count it twice.
        before = order.amount_refunded
        refunded = max(before, min(max(data.amount_refunded, 0), order.total))
        order.amount_refunded = refunded
        full = data.fully_refunded or refunded >= order.total
        target = S.REFUNDED if full else S.PARTIALLY_REFUNDED
        current = S(order.status)
        if current not in {target, S.REFUNDED}:
            self.move(
                order,
                target,
                actor=event_actor(event),
                reason=f"refunded {refunded} of {order.total} {order.currency}",
                at=event.occurred_at,
            )
        if refunded > before:
            # Imported here: refunds builds the order's link with tracking, which needs this
            # module first.
            from orders.refunds.services import announce_refund

            await announce_refund(self.session, order, refunded - before, event.occurred_at)

    async def _insert(
        self, event: Envelope, data: CheckoutStarted | PaymentSucceeded, **extra: Any
    ) -> bool:
        """Insert the order, its item snapshots and its first history row, unless it exists
        (one statement); True when this call made it."""
        items, left_out = _item_rows(data)
        created = await self.orders.place(
            _order_values(event, data) | extra,
            items,
            self.history.change(
                data.order_id,
                None,
                S.PENDING_PAYMENT.value,
                actor=event_actor(event),
                reason="order placed",
            ),
        )
        if created:
            _check_lines(data, left_out)
            _check_totals(data)
        return created

    async def _lock_or_create(self, event: Envelope, data: PaymentSucceeded) -> Order:
        # checkout.started has nearly always made the order by now: lock it first, and insert
        # only when it is not there (the insert still settles a race with checkout.started).
        order = await self.orders.lock_for_payment(data.order_id)
        if order is None:
            await self._insert(event, data)
            order = await self.orders.lock_for_payment(data.order_id)
            assert order is not None, "the order was just inserted or already existed"
        return order

    async def _locked_once_placed(self, order_id: uuid.UUID) -> Order | None:
        """The order, locked; if it is not there, looked for again once no transaction is
        placing it (``OrderRepository.wait_for_placing``), so that an outcome is not parked
        while its order is being placed. The placing lock is taken only when the order is
        missing, holding no row lock: taken after the order's row lock (a payment applying a
        parked refund) it would wait in the other order from an outcome's, and deadlock."""
        order = await self.orders.get_for_update(order_id)
        if order is None:
            await self.orders.wait_for_placing(order_id)
            order = await self.orders.get_for_update(order_id)
        return order

    async def _locked(self, order_id: uuid.UUID) -> Order:
        order = await self.orders.get_for_update(order_id)
        assert order is not None, "the order was just inserted or already existed"
        return order

    async def _defer(self, event: Envelope, order_id: uuid.UUID, data: EventData) -> None:
        log.info("order_event_deferred", order_id=str(order_id), event_type=event.type)
        await self.deferred.defer(
            uuid.UUID(event.id),
            order_id,
            event.type,
            {"envelope": _envelope_meta(event), "data": msgspec.to_builtins(data)},
        )

    async def _apply_deferred(self, order: Order, rows: list[DeferredEvent] | None = None) -> None:
        for row in await self.deferred.take(order.id) if rows is None else rows:
            entry = _DEFERRABLE.get(row.event_type)
            if entry is None:
                log.error("deferred_event_unknown", event_type=row.event_type)
                continue
            data_type, method = entry
            data = msgspec.convert(row.payload["data"], type=data_type, strict=False)
            envelope = _envelope_from_meta(row.payload["envelope"], row.event_id, row.event_type)
            await method(self, envelope, data)

    # --- shopper ----------------------------------------------------------------------

    async def get_for_shopper(
        self,
        order_id: uuid.UUID,
        principal: Principal | None,
        session_id: str | None,
        token: str | None = None,
    ) -> Order:
        """The order if this shopper may read it: its owner, the guest holding the mailed
        link's token, or (briefly) whoever came back from the Stripe session that paid for it.
        Anyone else learns nothing: 404."""
        order = await self.orders.get_with_items(order_id)
        if order is None or not may_read(order, principal, session_id, token):
            raise not_found("order")
        return order

    async def page_for_customer(
        self, principal: Principal, *, page: int, page_size: int
    ) -> tuple[Sequence[Order], int]:
        return await self.orders.page_for_user(
            principal.user_id,
            verified_email=verified_email(principal),
            **window(page, page_size),
        )

    # --- staff ------------------------------------------------------------------------

    async def admin_page(
        self,
        *,
        status: str | None,
        query: str | None,
        attention: bool | None = None,
        page: int,
        page_size: int,
        customer: tuple[uuid.UUID, str | None] | None = None,
    ) -> tuple[Sequence[Order], int]:
        return await self.orders.search(
            status=status,
            query=query,
            attention=attention,
            **window(page, page_size),
            customer=customer,
        )

    async def admin_get(self, order_id: uuid.UUID) -> tuple[Order, Sequence[OrderStatusChange]]:
        order = await self.orders.get_with_items(order_id)
        if order is None:
            raise not_found("order")
        return order, await self.history.for_order(order_id)

    async def admin_update(
        self, order_id: uuid.UUID, change: AdminOrderUpdate, *, actor: str
    ) -> Order:
        order = await self.orders.get_for_update(order_id)
        if order is None:
            raise not_found("order")
        if change.notes is not None:
            order.notes = change.notes
        if change.status is not None:
            target = S(change.status)
            if target not in ADMIN_TARGETS:  # pragma: no cover - the schema allows only these
                raise Problem(409, "status-not-settable", f"{target.value} cannot be set by hand.")
            if S(order.status) != target:
                self.move(order, target, actor=actor, reason=change.reason or "changed by staff")
        return order

    async def lock(self, order_id: uuid.UUID) -> Order:
        order = await self.orders.get_for_update(order_id)
        if order is None:
            raise not_found("order")
        return order

    async def reload(self, order_id: uuid.UUID) -> Order:
        order = await self.orders.get_with_items(order_id)
        if order is None:  # pragma: no cover - callers hold the row lock
            raise not_found("order")
        return order


TRANSITION_ORDER: tuple[OrderStatus, ...] = tuple(OrderStatus)

_Handler = Callable[["OrderService", Envelope, Any], Awaitable[None]]

_DEFERRABLE: dict[str, tuple[type[EventData], _Handler]] = {
    PaymentFailed.TYPE: (PaymentFailed, OrderService.on_payment_failed),
    CheckoutExpired.TYPE: (CheckoutExpired, OrderService.on_checkout_expired),
    PaymentRefunded.TYPE: (PaymentRefunded, OrderService.on_payment_refunded),
}


def verified_email(principal: Principal) -> str | None:
    """The address a guest order must carry to be this person's: only one identity proved."""
    return principal.email if principal.email_verified and principal.email else None


def may_read(
    order: Order, principal: Principal | None, session_id: str | None, token: str | None = None
) -> bool:
    if principal is not None:
        if order.user_id is not None and order.user_id == principal.user_id:
            return True
        email = verified_email(principal)
        if order.user_id is None and email and order.email.lower() == email.strip().lower():
            return True
    return token_opens(order, token) or redirect_opens(order, session_id, utcnow())


def _envelope_meta(event: Envelope) -> dict[str, Any]:
    return {
        "occurred_at": event.occurred_at.isoformat(),
        "producer": event.producer,
        "correlation_id": event.correlation_id,
    }


def _envelope_from_meta(meta: dict[str, Any], event_id: uuid.UUID, event_type: str) -> Envelope:
    return Envelope(
        id=str(event_id),
        type=event_type,
        occurred_at=dt.datetime.fromisoformat(meta["occurred_at"]),
        producer=str(meta.get("producer", "")),
        correlation_id=str(meta.get("correlation_id", "")),
    )


def _parse_time(raw: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _placed_values(event: Envelope, data: Placed) -> dict[str, Any]:
    """The columns every order takes from the event that carries it."""
    address = data.shipping_address
    return {
        "id": data.order_id,
        "created_at": event.occurred_at,
        "user_id": data.user_id,
        "email": data.email.strip()[:320],
        "currency": data.currency.upper(),
        "subtotal": data.subtotal,
        "shipping_total": data.shipping,
        "total": data.total,
        "amount_refunded": 0,
        # Subscription invoices carry none of these.
        "discount_total": getattr(data, "discount", 0),
        "discount_code": getattr(data, "discount_code", "")[:40],
        "tax_total": getattr(data, "tax", 0),
        "shipping_method": getattr(data, "shipping_name", "")[:100],
        "shipping_name": address.name[:200],
        "shipping_phone": address.phone[:40],
        "shipping_address": {
            "line1": address.line1,
            "line2": address.line2,
            "city": address.city,
            "state": address.state,
            "postal_code": address.postal_code,
            "country": address.country,
        },
        "notes": "",
    }


def _order_values(event: Envelope, data: CheckoutStarted | PaymentSucceeded) -> dict[str, Any]:
    # The order was placed when checkout started (or, failing that, when it was paid).
    return _placed_values(event, data) | {
        "status": S.PENDING_PAYMENT.value,
        "checkout_session_id": data.checkout_session_id,
        "reservation_id": data.reservation_id,
        "cart_id": data.cart_id,
        # checkout.started's deadline, when it is the one placing the order.
        "payment_expires_at": None,
    }


def _payment_columns(order: Order) -> tuple[Any, ...]:
    return tuple(getattr(order, name) for name in PAYMENT_COLUMNS)


def _subscription_order_values(event: Envelope, data: SubscriptionInvoicePaid) -> dict[str, Any]:
    # Placed and paid at once, when Stripe confirmed the invoice: there was no checkout.
    return _placed_values(event, data) | {
        "status": S.PAID.value,
        "paid_at": event.occurred_at,
        "subscription_id": data.subscription_id,
        "stripe_invoice_id": data.stripe_invoice_id,
    }


def _item_rows(data: Placed) -> tuple[list[dict[str, Any]], bool]:
    """The item snapshots of the lines, and whether a line was left out (its product and
    variant on another line at another price): said by :func:`_check_lines` once the items
    are written, not each time an event about the order is replayed."""
    rows: dict[tuple[uuid.UUID, uuid.UUID | None], dict[str, Any]] = {}
    left_out = False
    for position, line in enumerate(data.lines):
        key = (line.product_id, line.variant_id)
        existing = rows.get(key)
        if existing is not None and existing["unit_price"] == line.unit_price:
            # One product on two lines at one price is one line of the combined quantity.
            existing["quantity"] += line.quantity
            existing["line_total"] = existing["unit_price"] * existing["quantity"]
            existing["discount"] += line.discount
            continue
        if existing is not None:
            left_out = True
            continue
        rows[key] = {
            "order_id": data.order_id,
            "position": position,
            "product_id": line.product_id,
            "slug": line.slug[:200],
            "name": line.name[:300],
            "image_url": line.image_url[:1000],
            "unit_price": line.unit_price,
            "quantity": line.quantity,
            "line_total": line.unit_price * line.quantity,
            "discount": line.discount,
            "currency": data.currency.upper(),
            # An event from before variants names none: NULL, the product's default variant.
            "variant_id": line.variant_id,
            "sku": line.sku[:120] if line.variant_id else None,
            "variant_title": line.variant_title[:300] if line.variant_id else None,
            "option_values": [v[:100] for v in line.option_values] if line.variant_id else None,
        }
    return list(rows.values()), left_out


def _check_lines(data: Placed, left_out: bool) -> None:
    if left_out:
        log.error("order_line_duplicate_price", order_id=str(data.order_id))


def _check_totals(data: Placed) -> None:
    lines = sum(line.unit_price * line.quantity for line in data.lines)
    before_tax = data.subtotal - getattr(data, "discount", 0) + data.shipping
    if lines != data.subtotal or before_tax + getattr(data, "tax", 0) != data.total:
        # Recorded as paid all the same (the payment is the truth), but staff must look.
        log.warning(
            "order_totals_inconsistent",
            order_id=str(data.order_id),
            lines=lines,
            subtotal=data.subtotal,
            shipping=data.shipping,
            total=data.total,
        )
