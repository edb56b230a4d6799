"""The order status machine. An order only ever moves forward.

    pending_payment ──> paid ──> fulfilled ──> shipped ──> delivered
          │   │           │          │            │            │
          │   └─> payment_failed     └────────────┴──> partially_refunded ──> refunded
          └─> cancelled

Payment states (paid, payment_failed, refunded, partially_refunded) change only from verified
payment events; staff move an order through fulfilment. A payment that succeeds after its
checkout failed or expired still makes the order paid: the money was taken, so the order must
say so (staff then ship or refund it).
"""

from __future__ import annotations

import enum


class OrderStatus(enum.StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAYMENT_FAILED = "payment_failed"
    CANCELLED = "cancelled"
    PAID = "paid"
    FULFILLED = "fulfilled"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


S = OrderStatus

#: Every move the machine allows, whoever asks for it.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_PAYMENT: frozenset({S.PAID, S.PAYMENT_FAILED, S.CANCELLED}),
    S.PAYMENT_FAILED: frozenset({S.PAID, S.CANCELLED}),
    S.CANCELLED: frozenset({S.PAID}),
    S.PAID: frozenset({S.FULFILLED, S.SHIPPED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.FULFILLED: frozenset({S.SHIPPED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.SHIPPED: frozenset({S.DELIVERED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.DELIVERED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    # Part of the money went back; the rest of the order may still ship and arrive.
    S.PARTIALLY_REFUNDED: frozenset({S.FULFILLED, S.SHIPPED, S.DELIVERED, S.REFUNDED}),
    S.REFUNDED: frozenset(),
}

#: The moves staff may make by hand (PUT /api/admin/orders/{id}); payment states are not here.
ADMIN_TARGETS: frozenset[OrderStatus] = frozenset({S.FULFILLED, S.DELIVERED, S.CANCELLED})

#: Orders whose money was taken: they count in revenue.
PAID_STATUSES: frozenset[OrderStatus] = frozenset(
    {S.PAID, S.FULFILLED, S.SHIPPED, S.DELIVERED, S.PARTIALLY_REFUNDED, S.REFUNDED}
)

#: Orders that may be handed to a carrier (a shipped one may have its tracking corrected).
SHIPPABLE: frozenset[OrderStatus] = frozenset(
    {S.PAID, S.FULFILLED, S.PARTIALLY_REFUNDED, S.SHIPPED}
)


def can_move(current: OrderStatus, target: OrderStatus) -> bool:
    return target in TRANSITIONS[current]
