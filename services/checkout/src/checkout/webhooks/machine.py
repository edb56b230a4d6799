"""The checkout session's status machine: statuses only move forward.

::

    open ──▶ payment_pending ──▶ payment_failed ─┐
      │             │                            ├──▶ paid ──▶ partially_refunded ──▶ refunded
      ├──▶ expired ─┼────────────────────────────┘      └─────────────────────────────▲
      ├──▶ payment_failed                               (payment_pending ──▶ paid too)
      └──▶ paid

Each status has a rank (open 0, payment_pending 1, expired and payment_failed 2, paid 3,
partially_refunded 4, refunded 5) and an event moves a session only to a higher one (a partial
refund may follow a smaller one). Webhooks arrive late, twice or out of order; one whose move
is not on the chart is recorded and ignored, so nothing goes backwards:

- ``paid`` then a late ``completed`` (unpaid, a delayed method): ignored.
- ``paid`` then ``expired``: ignored; the sale stands.
- ``expired`` (or ``payment_failed``) then a payment: the session becomes ``paid``. Stripe never
  completes an expired session, so this only comes from contradictory deliveries; but money
  Stripe says it took is a fact the shop must honour: orders shows the order paid, catalog sells
  the stock if it is still there (never below zero, a shortfall is logged for staff) and the
  session is flagged for staff, who ship or refund.
- a refund for a session not yet known as paid: not recorded, answered 409 so that Stripe
  delivers it again later, after the payment.
"""

from __future__ import annotations

from checkout.models import CheckoutStatus as S

RANK: dict[S, int] = {
    S.OPEN: 0,
    S.PAYMENT_PENDING: 1,
    S.EXPIRED: 2,
    S.PAYMENT_FAILED: 2,
    S.PAID: 3,
    S.PARTIALLY_REFUNDED: 4,
    S.REFUNDED: 5,
}

ALLOWED: dict[S, frozenset[S]] = {
    S.OPEN: frozenset({S.PAYMENT_PENDING, S.PAID, S.PAYMENT_FAILED, S.EXPIRED}),
    # A completed session (even unpaid) is never expired by Stripe.
    S.PAYMENT_PENDING: frozenset({S.PAID, S.PAYMENT_FAILED}),
    S.EXPIRED: frozenset({S.PAID}),
    S.PAYMENT_FAILED: frozenset({S.PAID}),
    S.PAID: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.REFUNDED: frozenset(),
}

#: Statuses in which money has been taken.
PAID_STATUSES = frozenset({S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED})

# The chart never leads to a lower rank (checked once, at import).
assert all(
    RANK[target] >= RANK[source] for source, targets in ALLOWED.items() for target in targets
)


def may_move(current: str, target: S) -> bool:
    return target in ALLOWED[S(current)]
