"""What checkout publishes (always through its outbox, in the transaction of the change).

``checkout.started`` when a session opens; from verified Stripe webhooks ``payment.succeeded``,
``payment.failed``, ``checkout.expired`` and ``payment.refunded``, and from Stripe Billing's
``subscription.invoice_paid`` and ``subscription.payment_failed``, each carrying what its
consumers need (orders, catalog, cart, notifier) so none of them has to call back. Every one
leaves through a function here (the row in, the event out); checkout handles no domain events.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from ember_shared.events import EventData, Outbox
from ember_shared.events.contracts import (
    Address,
    CheckoutExpired,
    CheckoutStarted,
    OrderLine,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    SubscriptionInvoicePaid,
    SubscriptionPaymentFailed,
)
from sqlalchemy.ext.asyncio import AsyncSession

from checkout.models import Base, CheckoutSession, Subscription, SubscriptionInvoice

#: Every event type checkout publishes (each names ``PRODUCER = "checkout"``).
PUBLISHES: tuple[type[EventData], ...] = (
    CheckoutStarted,
    PaymentSucceeded,
    PaymentFailed,
    CheckoutExpired,
    PaymentRefunded,
    SubscriptionInvoicePaid,
    SubscriptionPaymentFailed,
)

outbox = Outbox("checkout", Base.metadata)


def _lines(row: CheckoutSession) -> list[OrderLine]:
    return [
        OrderLine(
            product_id=line["product_id"],
            slug=line["slug"],
            name=line["name"],
            unit_price=line["unit_price"],
            quantity=line["quantity"],
            image_url=line.get("image_url") or "",
            discount=int(line.get("discount") or 0),
            variant_id=line.get("variant_id") or line["product_id"],
            sku=line.get("sku") or "",
            variant_title=line.get("variant_title") or "",
            option_values=list(line.get("option_values") or []),
        )
        for line in row.lines
    ]


def offer_totals(row: CheckoutSession) -> dict[str, Any]:
    """A session's discount, tax and shipping choice: the same fields in its events and in the
    shopper's views of it."""
    return {
        "discount": row.discount,
        "discount_code": row.discount_code,
        "tax": row.tax,
        "shipping_rate": row.shipping_rate,
        "shipping_name": row.shipping_name,
    }


def _address(row: CheckoutSession) -> Address:
    return msgspec.convert(row.shipping_address, Address)


def _checkout_fields(row: CheckoutSession) -> dict[str, Any]:
    """What ``checkout.started`` and ``payment.succeeded`` both say of the checkout."""
    return {
        "order_id": row.order_id,
        "checkout_session_id": row.id,
        "user_id": row.user_id,
        "cart_id": row.cart_id,
        "email": row.email,
        "lines": _lines(row),
        "subtotal": row.subtotal,
        "shipping": row.shipping,
        "total": row.total,
        "currency": row.currency,
        "shipping_address": _address(row),
        "reservation_id": row.reservation_id,
        **offer_totals(row),
    }


def checkout_started(row: CheckoutSession) -> CheckoutStarted:
    """``checkout.started``, written by the statement that writes the session's row
    (``CheckoutSessionRepository.insert_new``): both in one round trip."""
    return CheckoutStarted(
        **_checkout_fields(row), expires_at=row.expires_at.astimezone(dt.UTC).isoformat()
    )


async def payment_succeeded(session: AsyncSession, row: CheckoutSession) -> None:
    await outbox.add(
        session,
        PaymentSucceeded(
            **_checkout_fields(row),
            stripe_session_id=row.stripe_session_id,
            payment_intent_id=row.stripe_payment_intent_id or "",
            attention=row.attention,
        ),
    )


async def payment_failed(session: AsyncSession, row: CheckoutSession, reason: str) -> None:
    await outbox.add(
        session,
        PaymentFailed(
            order_id=row.order_id,
            checkout_session_id=row.id,
            reservation_id=row.reservation_id,
            email=row.email,
            reason=reason,
        ),
    )


async def checkout_expired(session: AsyncSession, row: CheckoutSession) -> None:
    await outbox.add(
        session,
        CheckoutExpired(
            order_id=row.order_id,
            checkout_session_id=row.id,
            reservation_id=row.reservation_id,
            cart_id=row.cart_id,
        ),
    )


async def payment_refunded(session: AsyncSession, row: CheckoutSession) -> None:
    await outbox.add(
        session,
        PaymentRefunded(
            order_id=row.order_id,
            checkout_session_id=row.id,
            amount_refunded=row.amount_refunded,
            currency=row.currency,
            fully_refunded=row.amount_refunded >= row.total,
            email=row.email,
        ),
    )


async def subscription_invoice_paid(
    session: AsyncSession, row: Subscription, invoice: SubscriptionInvoice, quantity: int
) -> None:
    assert invoice.order_id is not None
    assert row.stripe_subscription_id is not None
    await outbox.add(
        session,
        SubscriptionInvoicePaid(
            order_id=invoice.order_id,
            subscription_id=row.id,
            user_id=row.user_id,
            email=row.email,
            lines=[
                OrderLine(
                    product_id=row.product_id,
                    slug=row.product_slug,
                    name=row.product_name,
                    unit_price=row.unit_price,
                    quantity=quantity,
                    image_url=row.image_url,
                    variant_id=row.variant_id,
                    sku=row.sku,
                    variant_title=row.variant_title,
                    option_values=list(row.option_values),
                )
            ],
            # Subscriptions ship free: what Stripe took is the whole of it.
            subtotal=invoice.amount_paid,
            shipping=0,
            total=invoice.amount_paid,
            currency=invoice.currency,
            shipping_address=msgspec.convert(row.shipping_address, Address),
            stripe_invoice_id=invoice.stripe_invoice_id,
            stripe_subscription_id=row.stripe_subscription_id,
            period_start=_iso(invoice.period_start),
            period_end=_iso(invoice.period_end),
        ),
    )


async def subscription_payment_failed(
    session: AsyncSession, row: Subscription, invoice: SubscriptionInvoice
) -> None:
    await outbox.add(
        session,
        SubscriptionPaymentFailed(
            subscription_id=row.id,
            user_id=row.user_id,
            email=row.email,
            product_name=row.product_name,
            amount_due=invoice.amount_due,
            currency=invoice.currency,
            stripe_invoice_id=invoice.stripe_invoice_id,
            variant_title=row.variant_title,
        ),
    )


def _iso(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat() if value else ""
