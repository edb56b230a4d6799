"""Stripe webhooks, the only source of payment state (invariant 2).

The signature on the raw body is verified first, with the stripe SDK and the timestamp
tolerance; an unsigned, wrongly signed or stale delivery is refused with 400 before anything is
read or written. Then, in the request's one transaction: the event id is inserted UNIQUE (a
redelivery finds it and does nothing), the checkout session moves (forward only: see
:mod:`checkout.webhooks.machine`) and the domain event goes to the outbox.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
import stripe
import structlog
from ember_shared.problems import Problem
from ember_shared.tracing import linked_root
from sqlalchemy.ext.asyncio import AsyncSession

from checkout import events
from checkout.models import CheckoutSession
from checkout.models import CheckoutStatus as S
from checkout.offers.services import settle_use
from checkout.payments import StripeGateway
from checkout.sessions.changes import CheckoutChanges
from checkout.sessions.repositories import CheckoutSessionRepository, movable_state
from checkout.subscriptions.webhooks import SubscriptionWebhooks, concerns_subscriptions
from checkout.webhooks.machine import may_move
from checkout.webhooks.repositories import ProviderEventRepository

log = structlog.get_logger("checkout.webhooks")

HANDLED_TYPES = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "charge.refunded",
    }
)


#: A Checkout Session's own events: the row they move is found by the session's id.
SESSION_TYPES = frozenset(t for t in HANDLED_TYPES if t.startswith("checkout.session."))


class EventData(msgspec.Struct):
    object: dict[str, Any]


class StripeEvent(msgspec.Struct):
    id: str
    type: str
    data: EventData
    created: int | None = None


@dataclass(frozen=True)
class Received:
    event_id: str
    duplicate: bool
    outcome: str


class WebhookService:
    def __init__(
        self, db: AsyncSession, gateway: StripeGateway, changes: CheckoutChanges | None = None
    ) -> None:
        """``changes``: this process's waiting status reads, handed each checkout a payment
        moves once ``db``'s transaction commits."""
        self.db = db
        self.gateway = gateway
        self.changes = changes
        self.sessions = CheckoutSessionRepository(db)
        self.provider_events = ProviderEventRepository(db)

    async def receive(self, payload: bytes, signature: str | None) -> Received:
        try:
            self.gateway.verify(payload, signature)
        except (stripe.SignatureVerificationError, ValueError) as exc:  # ValueError: not UTF-8
            log.warning("webhook_refused", reason=type(exc).__name__, message=str(exc)[:200])
            raise Problem(
                400,
                "invalid-signature",
                "The Stripe-Signature header does not verify for this body.",
            ) from None
        try:
            event = msgspec.json.decode(payload, type=StripeEvent)
        except msgspec.DecodeError:
            raise Problem(400, "invalid-event", "The body is not a Stripe event.") from None
        obj = event.data.object
        # A new trace, linked to the checkout's (its traceparent rode in the Stripe metadata):
        # what the payment sets off (relay, consumers, mail) hangs under it.
        metadata = obj.get("metadata")
        traceparent = metadata.get("traceparent", "") if isinstance(metadata, dict) else ""
        with linked_root(
            str(traceparent)[:100],
            f"stripe {event.type}",
            attributes={"stripe.event_id": event.id, "stripe.event_type": event.type},
        ):
            return await self._receive(event, obj)

    async def reconcile(self, session: dict[str, Any], current_status: str) -> Received | None:
        """Apply what Stripe says of a Checkout Session whose webhook never came, as the webhook
        would have: through the same claim (under an id of its own) and the same forward-only
        moves, so the webhook arriving later, or another pass, changes nothing."""
        type_ = reconciled_type(session, current_status)
        if type_ is None:
            return None
        paid = session.get("payment_status") or ""
        event_id = f"reconciled_{type_}_{paid}_{session.get('id', '')}"[:255]
        event = StripeEvent(id=event_id, type=type_, data=EventData(object=session))
        return await self._receive(event, session)

    async def _receive(self, event: StripeEvent, obj: dict[str, Any]) -> Received:
        created = dt.datetime.fromtimestamp(event.created, dt.UTC) if event.created else None
        if event.type in SESSION_TYPES and not concerns_subscriptions(event.type, obj):
            return await self._receive_for_session(event, obj, created)
        if not await self.provider_events.claim(
            event.id, event.type, str(obj.get("id", ""))[:255], created
        ):
            log.info("webhook_duplicate", event_id=event.id, type=event.type)
            return Received(event.id, duplicate=True, outcome="duplicate")
        if concerns_subscriptions(event.type, obj):
            subscription_id, outcome = await SubscriptionWebhooks(self.db, self.gateway).apply(
                event.type, obj, created
            )
            await self.provider_events.record_outcome(event.id, outcome, None)
            log.info(
                "webhook_handled",
                event_id=event.id,
                type=event.type,
                outcome=outcome,
                subscription_id=str(subscription_id) if subscription_id else None,
            )
            return Received(event.id, duplicate=False, outcome=outcome)
        row, outcome = await self._apply(event.type, obj)
        await self.provider_events.record_outcome(event.id, outcome, row.id if row else None)
        return self._handled(event, row, outcome)

    async def _receive_for_session(
        self, event: StripeEvent, obj: dict[str, Any], created: dt.datetime | None
    ) -> Received:
        """A Checkout Session's event (every payment's): the session's row is locked first, so
        the move it makes is known before the event is claimed, and the claim is written with
        its outcome and the row's move, by one statement: nothing of the row is written unless
        the event is claimed. A redelivery waits for the row's lock held by the first delivery,
        then finds the event claimed and changes nothing. The move's effects (the discount
        use, the outbox event) follow only a claim."""
        row = await self.sessions.lock_for_event(str(obj.get("id", "")))
        target = _target(event.type, obj)
        before = movable_state(row) if row is not None else None
        # The row is no ORM session's: the move is made on it here, and written with the claim.
        outcome = self._change(target, row, obj) if row is not None else NOT_OURS
        moved = row if row is not None and movable_state(row) != before else None
        if not await self.provider_events.claim(
            event.id,
            event.type,
            str(obj.get("id", ""))[:255],
            created,
            outcome=outcome,
            checkout_session_id=row.id if row is not None else None,
            moved=moved,
        ):
            log.info("webhook_duplicate", event_id=event.id, type=event.type)
            return Received(event.id, duplicate=True, outcome="duplicate")
        if row is not None and outcome == target.value:
            await self._effects(target, row)
            self._hand_over(row)
        return self._handled(event, row, outcome)

    def _hand_over(self, row: CheckoutSession) -> None:
        """The reads waiting here for ``row``'s change get it once this transaction commits:
        they answer with it instead of reading it again (the NOTIFY wakes those of other
        replicas, which read)."""
        if self.changes is not None:
            self.changes.hand_over(self.db, row)

    def _handled(self, event: StripeEvent, row: CheckoutSession | None, outcome: str) -> Received:
        log.info(
            "webhook_handled",
            event_id=event.id,
            type=event.type,
            outcome=outcome,
            order_id=str(row.order_id) if row else None,
        )
        return Received(event.id, duplicate=False, outcome=outcome)

    async def _apply(self, type_: str, obj: dict[str, Any]) -> tuple[CheckoutSession | None, str]:
        if type_ not in HANDLED_TYPES:
            return None, "unhandled type"
        if type_ == "charge.refunded":
            return await self._refunded(obj)
        row = await self.sessions.lock_by_stripe_session(str(obj.get("id", "")))
        if row is None:
            return None, NOT_OURS
        return row, await self._move(type_, row, obj)

    async def _move(self, type_: str, row: CheckoutSession, obj: dict[str, Any]) -> str:
        """Move ``row`` (tracked by the ORM session, which writes it) and make its effects."""
        target = _target(type_, obj)
        outcome = self._change(target, row, obj)
        if outcome == target.value:
            await self._effects(target, row)
        return outcome

    # --- transitions ----------------------------------------------------------------------

    def _change(self, target: S, row: CheckoutSession, obj: dict[str, Any]) -> str:
        """What moving to ``target`` changes of ``row``, made on it (nothing written): the
        outcome, ``target``'s value when it moved."""
        if not may_move(row.status, target):
            return _ignored(row, target)
        if target is S.PAID:
            _paid(row, obj)
        elif target is S.PAYMENT_PENDING:
            _pending(row, obj)
        elif target is S.PAYMENT_FAILED:
            _failed(row, obj)
        else:
            _expired(row)
        return target.value

    async def _effects(self, target: S, row: CheckoutSession) -> None:
        """What a move to ``target`` sets off besides the row: the discount code's use moves with
        it, and its domain event goes to the outbox (a delayed payment's wait has neither)."""
        if target is S.PAYMENT_PENDING:
            return
        await _settle_use(self.db, row, paid=target is S.PAID)
        if target is S.PAID:
            await events.payment_succeeded(self.db, row)
        elif target is S.PAYMENT_FAILED:
            await events.payment_failed(self.db, row, reason="async_payment_failed")
        else:
            await events.checkout_expired(self.db, row)

    async def _refunded(self, charge: dict[str, Any]) -> tuple[CheckoutSession | None, str]:
        row = None
        intent_id = _object_id(charge.get("payment_intent"))
        if intent_id:
            row = await self.sessions.lock_by_payment_intent(intent_id)
        if row is None:
            metadata = charge.get("metadata") or {}
            checkout_session_id = _uuid(metadata.get("checkout_session_id"))
            if checkout_session_id is not None:
                row = await self.sessions.lock_by_id(checkout_session_id)
        if row is None:
            return None, "ignored: not a payment of ours"
        if row.status in (S.OPEN, S.PAYMENT_PENDING):
            # The refund overtook its payment: refuse it unrecorded, so Stripe sends it again.
            raise Problem(
                409,
                "event-out-of-order",
                "This refund is for a payment not yet confirmed here; deliver it again later.",
                headers={"Retry-After": "30"},
            )
        if row.status not in (S.PAID, S.PARTIALLY_REFUNDED):
            return row, _ignored(row, S.REFUNDED)
        refunded = int(charge.get("amount_refunded") or 0)
        if refunded <= row.amount_refunded:
            return row, f"ignored: already know of {row.amount_refunded} refunded"
        row.amount_refunded = min(refunded, row.total)
        target = (
            S.REFUNDED
            if row.amount_refunded >= row.total or charge.get("refunded") is True
            else S.PARTIALLY_REFUNDED
        )
        if not may_move(row.status, target):
            return row, _ignored(row, target)
        row.status = target.value
        row.status_reason = f"{row.amount_refunded} of {row.total} refunded"
        await events.payment_refunded(self.db, row)
        return row, target.value


NOT_OURS = "ignored: not a session of ours"


def _paid(row: CheckoutSession, obj: dict[str, Any]) -> None:
    if row.status in (S.EXPIRED, S.PAYMENT_FAILED):
        # Its stock was given back: catalog sells it again if it can; staff ship or refund.
        note = (
            f"Paid after the checkout was recorded {row.status}: check the stock, ship or refund."
        )
        row.attention = _append(row.attention, note)
        log.error("payment_after_close", order_id=str(row.order_id), status=row.status)
    now = dt.datetime.now(dt.UTC)
    row.status = S.PAID.value
    row.stripe_payment_intent_id = (
        _object_id(obj.get("payment_intent")) or row.stripe_payment_intent_id
    )
    row.paid_at = now
    row.closed_at = now
    row.status_reason = ""
    _tax_as_charged(row, obj)
    amount, currency = obj.get("amount_total"), str(obj.get("currency") or "").upper()
    if amount != row.total or currency != row.currency:
        note = (
            f"Stripe charged {amount} {currency}; the checkout expected {row.total} {row.currency}."
        )
        row.attention = _append(row.attention, note)
        log.error(
            "paid_amount_differs",
            order_id=str(row.order_id),
            charged=amount,
            expected=row.total,
        )


def _pending(row: CheckoutSession, obj: dict[str, Any]) -> None:
    row.status = S.PAYMENT_PENDING.value
    row.stripe_payment_intent_id = (
        _object_id(obj.get("payment_intent")) or row.stripe_payment_intent_id
    )
    row.status_reason = "waiting for a delayed payment to settle"


def _failed(row: CheckoutSession, obj: dict[str, Any]) -> None:
    row.status = S.PAYMENT_FAILED.value
    row.closed_at = dt.datetime.now(dt.UTC)
    row.status_reason = "the delayed payment failed"
    row.stripe_payment_intent_id = (
        _object_id(obj.get("payment_intent")) or row.stripe_payment_intent_id
    )


def _expired(row: CheckoutSession) -> None:
    row.status = S.EXPIRED.value
    row.closed_at = dt.datetime.now(dt.UTC)
    row.status_reason = "the payment page expired unpaid"


def _target(type_: str, obj: dict[str, Any]) -> S:
    """Where a Checkout Session's event moves its checkout (``type_`` one of SESSION_TYPES)."""
    if type_ == "checkout.session.completed":
        paid = obj.get("payment_status") in ("paid", "no_payment_required")
        return S.PAID if paid else S.PAYMENT_PENDING
    if type_ == "checkout.session.async_payment_succeeded":
        return S.PAID
    if type_ == "checkout.session.async_payment_failed":
        return S.PAYMENT_FAILED
    return S.EXPIRED


def _ignored(row: CheckoutSession, target: S) -> str:
    return f"ignored: {row.status} does not move to {target.value}"


def _tax_as_charged(row: CheckoutSession, obj: dict[str, Any]) -> None:
    """Stripe Tax's final amount (the completed session's ``total_details.amount_tax``), when
    it differs from the one known at the start and Stripe's total agrees with it."""
    details = obj.get("total_details")
    tax = details.get("amount_tax") if isinstance(details, dict) else None
    if not isinstance(tax, int) or tax < 0 or tax == row.tax:
        return
    total = row.subtotal - row.discount + row.shipping + tax
    if obj.get("amount_total") == total and row.amount_refunded <= total:
        row.tax, row.total = tax, total


def reconciled_type(session: dict[str, Any], current_status: str) -> str | None:
    """The webhook a Checkout Session in this state would have sent us; None: no news."""
    status, paid = session.get("status"), session.get("payment_status")
    if status == "expired":
        return "checkout.session.expired"
    if status != "complete":
        return None
    if paid in ("paid", "no_payment_required"):
        return "checkout.session.completed"
    intent = session.get("payment_intent")
    failed = isinstance(intent, dict) and intent.get("status") == "requires_payment_method"
    if current_status == S.PAYMENT_PENDING and failed:
        return "checkout.session.async_payment_failed"
    if current_status == S.OPEN:
        return "checkout.session.completed"  # completed, the money still on its way
    return None


def _object_id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


async def _settle_use(db: AsyncSession, row: CheckoutSession, *, paid: bool) -> None:
    """A discount code's use moves with its checkout; a checkout started without a code holds
    none (the hold is taken only for a code, and the code is recorded on the row), so its
    webhook skips the hold's lookup: one statement less in every plain payment's transaction."""
    if row.discount_code:
        await settle_use(db, row.order_id, paid=paid)


def _append(existing: str, note: str) -> str:
    return f"{existing}\n{note}".strip()
