"""Stripe Billing's webhooks: the only source of a subscription's state (invariant 2).

Called by :class:`checkout.webhooks.services.WebhookService` after the signature was verified
and the event id claimed UNIQUE, in the same transaction:

- ``checkout.session.completed`` (``mode=subscription``): link Stripe's subscription and
  customer to our row. ``checkout.session.expired``: an unpaid one becomes
  ``incomplete_expired``.
- ``customer.subscription.created/updated/deleted``: status, current period end,
  ``cancel_at_period_end``, pause, and what the item bills (``items.data[0]``: quantity, the
  price's unit amount and cadence, and the variant its metadata names: the shopper changes
  them through Stripe). Never backwards:
  an event created before the last one applied is recorded and ignored, one created in the same
  second applies the subscription as Stripe has it now, and ``canceled`` is final.
- ``invoice.paid`` / ``invoice.payment_failed``: the invoice is recorded (UNIQUE Stripe id);
  the first time one is known paid it gets a new order id and ``SubscriptionInvoicePaid`` goes
  to the outbox, so each paid invoice becomes one order, however often Stripe tells us. The
  first time a failed one is recorded, ``SubscriptionPaymentFailed`` (the notifier mails the
  subscriber a link to update their card).

Every event finds our row by Stripe's subscription id or, before the link exists (Stripe does
not promise an order), by the ``subscription_id`` we put in the subscription's metadata.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import structlog
from ember_shared.ids import new_id
from sqlalchemy.ext.asyncio import AsyncSession

from checkout import events
from checkout.models import Subscription, SubscriptionInvoice
from checkout.models import SubscriptionStatus as S
from checkout.payments import StripeGateway
from checkout.subscriptions.repositories import (
    SubscriptionInvoiceRepository,
    SubscriptionRepository,
)

log = structlog.get_logger("checkout.subscriptions.webhooks")

SUBSCRIPTION_TYPES = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_failed",
    }
)
KNOWN_STATUSES = frozenset(s.value for s in S)
#: What a subscription may be (the table's CHECKs): anything else Stripe reports is noted.
INTERVALS = frozenset({"week", "month"})
MAX_QUANTITY = 10
MAX_INTERVAL_COUNT = 4


def concerns_subscriptions(type_: str, obj: dict[str, Any]) -> bool:
    return type_ in SUBSCRIPTION_TYPES or (
        type_.startswith("checkout.session.") and obj.get("mode") == "subscription"
    )


class SubscriptionWebhooks:
    def __init__(self, db: AsyncSession, gateway: StripeGateway) -> None:
        self.db = db
        self.gateway = gateway
        self.subscriptions = SubscriptionRepository(
            session=db, auto_commit=False, auto_expunge=False
        )
        self.invoices = SubscriptionInvoiceRepository(
            session=db, auto_commit=False, auto_expunge=False
        )

    async def apply(
        self, type_: str, obj: dict[str, Any], created: dt.datetime | None
    ) -> tuple[uuid.UUID | None, str]:
        """The subscription concerned (if ours) and what was done."""
        if type_.startswith("checkout.session."):
            return await self._session(type_, obj)
        if type_.startswith("customer.subscription."):
            return await self._subscription(type_, obj, created)
        return await self._invoice(type_, obj)

    async def _find(self, stripe_id: str | None, metadata: Any) -> Subscription | None:
        row = None
        if stripe_id:
            row = await self.subscriptions.lock_by_stripe_subscription(stripe_id)
        if row is None and isinstance(metadata, dict):
            ours = _uuid(metadata.get("subscription_id"))
            if ours is not None:
                row = await self.subscriptions.lock_by_id(ours)
                if (
                    row is not None
                    and stripe_id
                    and row.stripe_subscription_id
                    not in (
                        None,
                        stripe_id,
                    )
                ):
                    log.error(
                        "subscription_id_conflict",
                        subscription_id=str(row.id),
                        known=row.stripe_subscription_id,
                        claimed=stripe_id,
                    )
                    return None
        if row is not None and stripe_id and row.stripe_subscription_id is None:
            row.stripe_subscription_id = stripe_id
        return row

    # --- checkout.session.* ---------------------------------------------------------------

    async def _session(self, type_: str, obj: dict[str, Any]) -> tuple[uuid.UUID | None, str]:
        row = await self.subscriptions.lock_by_checkout_session(str(obj.get("id", "")))
        if row is None:
            return None, "ignored: not a subscription of ours"
        if type_ == "checkout.session.completed":
            stripe_id = _object_id(obj.get("subscription"))
            if stripe_id and row.stripe_subscription_id not in (None, stripe_id):
                row.attention = _append(
                    row.attention, f"Checkout completed with another subscription {stripe_id}."
                )
                return row.id, "ignored: another Stripe subscription is linked"
            row.stripe_subscription_id = stripe_id or row.stripe_subscription_id
            row.stripe_customer_id = _object_id(obj.get("customer")) or row.stripe_customer_id
            return row.id, f"linked {row.stripe_subscription_id}"
        if type_ == "checkout.session.expired":
            if row.status == S.INCOMPLETE and row.stripe_subscription_id is None:
                row.status = S.INCOMPLETE_EXPIRED.value
                return row.id, S.INCOMPLETE_EXPIRED.value
            return row.id, f"ignored: {row.status} does not expire"
        return row.id, "ignored: not used for subscriptions"

    # --- customer.subscription.* ----------------------------------------------------------

    async def _subscription(
        self, type_: str, obj: dict[str, Any], created: dt.datetime | None
    ) -> tuple[uuid.UUID | None, str]:
        row = await self._find(_object_id(obj.get("id")), obj.get("metadata"))
        if row is None:
            return None, "ignored: not a subscription of ours"
        if row.status == S.CANCELED:
            return row.id, "ignored: canceled is final"
        if (
            created is not None
            and row.last_event_created is not None
            and created < row.last_event_created
        ):
            return row.id, "ignored: older than the last change applied"
        if created is not None and created == row.last_event_created and obj.get("id"):
            # Two changes in one second (Stripe's ``created`` has no finer grain), arriving in
            # either order: which is newer cannot be told from them, so apply what Stripe says
            # the subscription is now (what both led to), not this event's snapshot.
            obj = await self.gateway.retrieve_subscription(str(obj["id"]))
            if obj.get("status") == S.CANCELED:
                type_ = "customer.subscription.deleted"
        status = S.CANCELED.value if type_ == "customer.subscription.deleted" else obj.get("status")
        if status not in KNOWN_STATUSES:
            row.attention = _append(row.attention, f"Stripe reported status {status!r}.")
            return row.id, f"ignored: unknown status {status!r}"
        row.stripe_customer_id = _object_id(obj.get("customer")) or row.stripe_customer_id
        row.status = str(status)
        row.cancel_at_period_end = bool(obj.get("cancel_at_period_end"))
        pause = obj.get("pause_collection") or None
        row.paused = isinstance(pause, dict)
        row.paused_until = _time(pause.get("resumes_at")) if isinstance(pause, dict) else None
        period_end = _period_end(obj)
        if period_end is not None:
            row.current_period_end = period_end
        _follow_item(row, obj)
        if status == S.CANCELED:
            row.canceled_at = _time(obj.get("ended_at")) or _time(obj.get("canceled_at")) or _now()
        else:
            row.canceled_at = _time(obj.get("canceled_at"))
        if created is not None:
            row.last_event_created = created
        return row.id, str(status) + (
            " (cancels at period end)" if row.cancel_at_period_end else ""
        )

    # --- invoice.* ------------------------------------------------------------------------

    async def _invoice(self, type_: str, obj: dict[str, Any]) -> tuple[uuid.UUID | None, str]:
        details = (obj.get("parent") or {}).get("subscription_details") or {}
        stripe_id = _object_id(details.get("subscription")) or _object_id(obj.get("subscription"))
        if not stripe_id:
            return None, "ignored: not a subscription invoice"
        row = await self._find(stripe_id, details.get("metadata"))
        if row is None:
            return None, "ignored: not a subscription of ours"
        invoice_id = str(obj.get("id", ""))
        invoice = await self.invoices.lock_by_stripe_id(invoice_id)
        paid = type_ == "invoice.paid"
        amount_due = _int(obj.get("amount_due"))
        amount_paid = _int(obj.get("amount_paid"))
        currency = str(obj.get("currency") or row.currency).upper()
        if invoice is not None and invoice.status == "paid":
            return row.id, f"ignored: invoice {invoice_id} already paid"
        if invoice is None:
            start, end = _invoice_period(obj)
            invoice = SubscriptionInvoice(
                id=new_id(),
                subscription_id=row.id,
                stripe_invoice_id=invoice_id,
                status="payment_failed",
                amount_due=amount_due,
                amount_paid=0,
                currency=currency,
                billing_reason=str(obj.get("billing_reason") or "")[:60],
                period_start=start,
                period_end=end,
            )
            await self.invoices.add(invoice)
            if not paid:
                # Once per invoice: Stripe's retries of the same invoice mail nobody again.
                await events.subscription_payment_failed(self.db, row, invoice)
        invoice.amount_due = amount_due
        if not paid:
            return row.id, f"invoice {invoice_id} payment_failed"
        invoice.status = "paid"
        invoice.amount_paid = amount_paid
        invoice.order_id = new_id()
        invoice.paid_at = _time((obj.get("status_transitions") or {}).get("paid_at")) or _now()
        quantity = _invoice_quantity(obj) or row.quantity
        expected = row.unit_price * quantity
        if amount_paid != expected or currency != row.currency:
            note = (
                f"Invoice {invoice_id} charged {amount_paid} {currency}; the subscription costs "
                f"{expected} {row.currency}."
            )
            row.attention = _append(row.attention, note)
            log.error("invoice_amount_differs", subscription_id=str(row.id), invoice=invoice_id)
        await events.subscription_invoice_paid(self.db, row, invoice, quantity)
        return row.id, f"invoice {invoice_id} paid: order {invoice.order_id}"


def _follow_item(row: Subscription, obj: dict[str, Any]) -> None:
    """The quantity, unit price and cadence Stripe bills (its first item), when they are ones
    we sell; anything else is left as it was and noted for staff."""
    items = ((obj.get("items") or {}).get("data")) or []
    item = items[0] if items and isinstance(items[0], dict) else None
    if item is None:
        return
    price: Any = item.get("price") if isinstance(item.get("price"), dict) else {}
    recurring: Any = price.get("recurring") if isinstance(price.get("recurring"), dict) else {}
    quantity: Any = item.get("quantity")
    interval: Any = recurring.get("interval")
    count: Any = recurring.get("interval_count")
    unit_amount: Any = price.get("unit_amount")
    if (
        not _is_int(quantity, 1, MAX_QUANTITY)
        or interval not in INTERVALS
        or not _is_int(count, 1, MAX_INTERVAL_COUNT)
        or not _is_int(unit_amount, 0, None)
    ):
        note = (
            f"Stripe bills {quantity!r} x {unit_amount!r} every {count!r} {interval!r}, "
            "which this shop does not sell; the subscription was left as it was."
        )
        if note not in row.attention:
            row.attention = _append(row.attention, note)
        log.error("subscription_item_unexpected", subscription_id=str(row.id))
        return
    row.quantity = int(quantity)
    row.unit_price = int(unit_amount)
    row.interval = str(interval)
    row.interval_count = int(count)
    _follow_variant(row, price.get("metadata"))


def _follow_variant(row: Subscription, metadata: Any) -> None:
    """The variant a price made for a change names in its metadata (see
    :func:`checkout.subscriptions.services.variant_metadata`). The first price (Checkout's
    ``price_data``) carries none: the row's variant is the one subscribed to."""
    if not isinstance(metadata, dict):
        return
    variant_id = _uuid(metadata.get("variant_id"))
    if variant_id is None or variant_id == row.variant_id:
        return
    if _uuid(metadata.get("product_id")) != row.product_id:
        note = f"Stripe bills variant {variant_id} of another product; the variant was kept."
        if note not in row.attention:
            row.attention = _append(row.attention, note)
        log.error("subscription_variant_unexpected", subscription_id=str(row.id))
        return
    try:
        values = json.loads(str(metadata.get("option_values") or "[]"))
    except ValueError:
        values = []
    row.variant_id = variant_id
    row.sku = str(metadata.get("sku") or "")[:120]
    row.variant_title = str(metadata.get("variant_title") or "")[:300]
    row.option_values = [str(v)[:100] for v in values][:10] if isinstance(values, list) else []


def _invoice_quantity(obj: dict[str, Any]) -> int | None:
    """The bags a paid invoice billed (its subscription line): what the order ships, even when
    the invoice's webhook arrives before the subscription's own update."""
    lines = ((obj.get("lines") or {}).get("data")) or []
    quantities: list[Any] = [
        line.get("quantity")
        for line in lines
        if isinstance(line, dict) and _is_int(line.get("quantity"), 1, MAX_QUANTITY)
    ]
    return int(quantities[0]) if quantities else None


def _is_int(value: Any, low: int, high: int | None) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def _period_end(obj: dict[str, Any]) -> dt.datetime | None:
    # Since API version 2025-03-31 the period is on the items; older versions had it on top.
    items = ((obj.get("items") or {}).get("data")) or []
    ends = [_time(item.get("current_period_end")) for item in items if isinstance(item, dict)]
    found = [end for end in ends if end is not None]
    return max(found) if found else _time(obj.get("current_period_end"))


def _invoice_period(obj: dict[str, Any]) -> tuple[dt.datetime | None, dt.datetime | None]:
    # A subscription invoice's own period_start/end is the period *before* it; the lines carry
    # the period the invoice pays for.
    lines = ((obj.get("lines") or {}).get("data")) or []
    for line in lines:
        period = line.get("period") if isinstance(line, dict) else None
        if isinstance(period, dict):
            return _time(period.get("start")), _time(period.get("end"))
    return _time(obj.get("period_start")), _time(obj.get("period_end"))


def _time(value: Any) -> dt.datetime | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _object_id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return str(value)[:255] if value else None


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _append(existing: str, note: str) -> str:
    return f"{existing}\n{note}".strip()
